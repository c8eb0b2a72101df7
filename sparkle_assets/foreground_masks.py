"""Stage 4, `foreground_masks`: BAIT tracking of every static clip, once for all themes.

Per clip: a `foreground_mask` artifact (the paper's bit-packed `.npz`, (T, H, W) bool) from
sparkle_model.bait with the configured backend, and a `mask_preview` mp4 (mask tinted over the
source, at most 480 px wide) for the UI. Masks that are empty, cover almost the whole frame, or jump
between frames are marked `dropped` with the reason; later stages read only `usable_masks`, and the
asset check `foreground_masks_quality` reports them.
"""

from pathlib import Path

import cv2
import dagster as dg
import numpy as np

from sparkle_model.bait import bait_track
from sparkle_model.masks import load_mask_npz, overlay, save_mask_npz, temporal_iou
from sparkle_model.video import iter_frames, read_video, write_video

from .clipstep import ClipInput, run_clip_step
from .resources import ArtifactStoreResource, ClipExecutorResource, LineageResource, MaskBackendResource
from .static_clips import kept_clips, static_clips
from .steps import finish_step, histogram_md

CODE_VERSION = "foreground_masks-1"
PREVIEW_VERSION = "mask_preview-1"
MIN_COVERAGE = 0.002  # below: an empty mask
MAX_COVERAGE = 0.95  # above: the mask is the whole frame
MIN_TEMPORAL_IOU = 0.3  # below (between consecutive frames): the mask jumps
MIN_JUMP_COVERAGE = 0.01  # ...judged only where both frames hold at least this much (tiny masks are noisy)
PREVIEW_WIDTH = 480


class ForegroundMasksConfig(dg.Config):
    """BAIT settings: `n_passes` tracking passes anchored on different sampled frames, a pixel is
    foreground when more than `vote_threshold` of the passes covering its frame say so; grounding
    on frames sampled at `sample_hz`."""

    n_passes: int = 3
    vote_threshold: float = 0.5
    sample_hz: float = 2.0

    def params(self) -> dict:
        if not 1 <= self.n_passes <= 16:
            raise ValueError(f"n_passes must be in [1, 16], got {self.n_passes}")
        if not 0.0 <= self.vote_threshold < 1.0:
            raise ValueError(f"vote_threshold must be in [0, 1), got {self.vote_threshold}")
        if not 0.1 <= self.sample_hz <= 16:
            raise ValueError(f"sample_hz must be in [0.1, 16], got {self.sample_hz}")
        return self.model_dump()


def mask_quality(mask: np.ndarray) -> tuple[dict, str | None]:
    """Coverage and temporal stability of a mask, and the reason to drop it (None if usable)."""
    cover = mask.reshape(len(mask), -1).mean(axis=1)
    tiou = temporal_iou(mask)
    both = (cover[:-1] > MIN_JUMP_COVERAGE) & (cover[1:] > MIN_JUMP_COVERAGE)
    worst = float(tiou[both].min()) if both.any() else 1.0
    stats = {"coverage": round(float(cover.mean()), 4), "coverage_min": round(float(cover.min()), 4),
             "coverage_max": round(float(cover.max()), 4), "temporal_iou_min": round(worst, 4)}
    if cover.mean() < MIN_COVERAGE:
        return stats, f"empty mask: covers {100 * cover.mean():.2f}% of the frame (no foreground found)"
    if cover.mean() > MAX_COVERAGE:
        return stats, f"mask covers almost the whole frame ({100 * cover.mean():.0f}%)"
    if worst < MIN_TEMPORAL_IOU:
        at = int(np.flatnonzero(both & (tiou == worst))[0])
        return stats, f"mask jumps between frames {at} and {at + 1} (temporal IoU {worst:.2f})"
    return stats, None


def compute_foreground_mask(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: BAIT on one clip, written as the bit-packed npz."""
    frames = read_video(inputs["clip"])
    backend = MaskBackendResource.build(params["backend"])
    result = bait_track(frames, params["fps"], backend, params["n_passes"], params["vote_threshold"],
                        params["sample_hz"])
    save_mask_npz(out, result.mask)
    stats, reason = mask_quality(result.mask)
    labels = sorted({b.label for boxes in result.boxes.values() for b in boxes})
    return {**stats, "drop_reason": reason, "shape": list(result.mask.shape), "anchors": result.anchors,
            "directions": result.directions, "agreement": round(result.agreement, 4), "labels": labels,
            "boxes": {str(i): [[round(v, 1) for v in b.as_list()] + [b.label] for b in bs]
                      for i, bs in result.boxes.items()}}


def render_mask_preview(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: the mask tinted over the source clip, small, for the UI."""
    mask = load_mask_npz(inputs["mask"])
    frames = []
    for t, frame in enumerate(iter_frames(inputs["clip"])):
        if t >= len(mask):
            break
        h, w = frame.shape[:2]
        size = (PREVIEW_WIDTH, int(round(h * PREVIEW_WIDTH / w / 2)) * 2) if w > PREVIEW_WIDTH else (w, h)
        frames.append(cv2.resize(overlay(frame, mask[t]), size, interpolation=cv2.INTER_AREA))
    write_video(out, frames, fps=params["fps"], crf=23)
    return {"frames": len(frames)}


def usable_masks(db) -> dict[str, dict]:
    """clip_id -> the `foreground_mask` row of every clip whose mask passed the quality check."""
    return {m["clip_id"]: m for m in db.current_artifacts("foreground_masks", kind="foreground_mask")}


@dg.asset(
    deps=[static_clips],
    code_version=CODE_VERSION,
    group_name="theme_independent",
    kinds={"video", "duckdb"},
    pool="gpu",
    description="BAIT foreground masks (grounding at ~2 fps, multi-pass tracking, pixel vote) as bit-packed npz, "
                "plus preview videos; computed once per static clip and shared by every theme.",
)
def foreground_masks(context: dg.AssetExecutionContext, config: ForegroundMasksConfig,
                     mask_backend: MaskBackendResource, artifact_store: ArtifactStoreResource,
                     lineage: LineageResource, clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    try:
        params = {**config.params(), "backend": mask_backend.settings()}
    except ValueError as exc:
        raise dg.Failure(description=f"bad foreground_masks configuration: {exc}") from exc
    store, db = artifact_store.store(), lineage.lineage()
    clips = kept_clips(db)
    common = dict(store=store, asset_key="foreground_masks", run_id=context.run_id,
                  executor=clip_executor.executor())
    masks = run_clip_step(clips=[ClipInput(c["clip_id"], {"clip": c}, {"fps": c["info"]["fps"]}) for c in clips],
                          fn=compute_foreground_mask, kind="foreground_mask", ext="npz",
                          code_version=CODE_VERSION, params=params, **common)
    by_clip = {c["clip_id"]: c for c in clips}
    previews = run_clip_step(
        clips=[ClipInput(cid, {"clip": by_clip[cid], "mask": {"id": m.id, "uri": m.uri}},
                         {"fps": by_clip[cid]["info"]["fps"]}) for cid, m in masks.artifacts.items()],
        fn=render_mask_preview, kind="mask_preview", ext="mp4", code_version=PREVIEW_VERSION, params={}, **common)

    batch = masks.batch
    batch.artifacts += previews.batch.artifacts
    batch.edges += previews.batch.edges
    flagged, usable = {}, []
    for row in batch.artifacts:
        if row.kind == "foreground_mask" and row.status == "ok":
            reason = row.info.get("drop_reason")
            batch.scores.append((row.id, "mask_coverage", row.info["coverage"]))
            batch.scores.append((row.id, "mask_temporal_iou_min", row.info["temporal_iou_min"]))
            if reason:
                row.status, row.reason = "dropped", reason
                flagged[row.clip_id] = reason
            else:
                usable.append(row.id)
    counts = {**masks.counts, "usable": len(usable), "flagged": len(flagged),
              "previews_computed": previews.computed}
    coverages = [a.info["coverage"] for a in masks.artifacts.values()]
    preview_paths = {cid: str(store.path_of(p)) for cid, p in list(previews.artifacts.items())[:4]}
    metadata = {
        **counts,
        "coverage_histogram": histogram_md(coverages, bins=[0, 0.002, 0.05, 0.1, 0.2, 0.4, 0.7, 0.95, 1.0]),
        "flagged": dg.MetadataValue.json(flagged),
        "failures": dg.MetadataValue.json(masks.failures),
        "previews": dg.MetadataValue.json(preview_paths),
        "backend": mask_backend.backend,
    }
    return finish_step(context, db, batch, asset_key="foreground_masks", output_ids=usable,
                       all_ids=[a.id for a in batch.artifacts], code_version=CODE_VERSION, summary=counts,
                       metadata=metadata, input_assets=["static_clips"])


@dg.asset_check(asset=foreground_masks, description="No empty, whole-frame or jumping masks among the clips.")
def foreground_masks_quality(lineage: LineageResource) -> dg.AssetCheckResult:
    db = lineage.lineage()
    rows = db.current_artifacts("foreground_masks", status=None, kind="foreground_mask")
    flagged = {r["clip_id"]: r["reason"] for r in rows if r["status"] == "dropped"}
    failed = {r["clip_id"]: r["reason"] for r in rows if r["status"] == "failed"}
    return dg.AssetCheckResult(
        passed=not flagged and not failed, severity=dg.AssetCheckSeverity.WARN,
        metadata={"clips": len(rows), "flagged": len(flagged), "failed": len(failed),
                  "reasons": dg.MetadataValue.json({**flagged, **failed})})
