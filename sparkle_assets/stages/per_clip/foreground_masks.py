"""Stage 4, `foreground_masks`: BAIT tracking of every static clip, once for all themes.

Per clip: a `foreground_mask` artifact (the paper's bit-packed `.npz`, (T, H, W) bool) from
sparkle_model.bait with the configured backend, and a `mask_preview` mp4 (mask tinted over the
source, at most 480 px wide) for the UI, written by the same computation from the same decoded frames.
Masks that are empty, cover almost the whole frame, or jump between frames are marked `dropped` with
the reason; later stages read only the usable ones (role `mask`), and the asset check
`foreground_masks_quality` reports them.

With `mask_backend.grounding` set to `vlm` or `detector`, a `foreground_grounding` artifact comes
first (JSON: round 1 on frame 0, round 2 on the frames sampled at `sample_hz`, with the prompts and raw
replies; sparkle_model.grounding), and it is a parent of the mask, whose tracker then follows its
boxes. Its id does not depend on the vote, so re-voting asks the VLM nothing; a clip whose replies
never parse fails with that reason and the others go on. The default (`classical`) has no grounding
artifact and the masks' ids of before.
"""

import json
from pathlib import Path

import cv2
import dagster as dg
import numpy as np

from sparkle_model import backends
from sparkle_model.bait import bait_track, sample_indices
from sparkle_model.grounding import RecordedGrounder
from sparkle_model.masks import overlay, save_mask_npz, temporal_iou
from sparkle_model.video import read_frames, read_video, write_video

from ...core.clipstep import ClipInput, Companion
from ...core.config import Range, StageConfig
from ...core.reports import histogram_md
from ...core.resources import (ArtifactStoreResource, ClipExecutorResource, LineageResource, MaskBackendResource,
                               VlmResource)
from ...core.stage import Stage

CODE_VERSION = "foreground_masks-1"
GROUNDING_VERSION = "foreground_grounding-1"
STAGE = Stage("foreground_masks", CODE_VERSION, reads=("clip",))
PREVIEW = Companion("mask_preview", "mp4", "mask_preview-1", main_role="mask", roles=("clip",))
MIN_COVERAGE = 0.002  # below: an empty mask
MAX_COVERAGE = 0.95  # above: the mask is the whole frame
MIN_TEMPORAL_IOU = 0.3  # below (between consecutive frames): the mask jumps
MIN_JUMP_COVERAGE = 0.01  # ...judged only where both frames hold at least this much (tiny masks are noisy)
PREVIEW_WIDTH = 480


class ForegroundMasksConfig(StageConfig):
    """BAIT settings: `n_passes` tracking passes anchored on different sampled frames, a pixel is
    foreground when more than `vote_threshold` of the passes covering its frame say so; grounding
    on frames sampled at `sample_hz`."""

    RANGES = {"n_passes": Range(1, 16), "vote_threshold": Range(0, 1, hi_open=True), "sample_hz": Range(0.1, 16)}
    n_passes: int = 3
    vote_threshold: float = 0.5
    sample_hz: float = 2.0


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


def ground_foreground(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: the grounding record of one clip (both rounds, prompts and replies) as JSON."""
    frames = read_frames(inputs["clip"], sample_indices(params["frames"], params["fps"], params["sample_hz"]))
    record = backends.grounding(params["grounding"]).ground_clip(frames)
    out.write_text(json.dumps(record, ensure_ascii=False))
    found = [bool(o["bbox_2d"]) for objects in record["round2"]["frame_objects"] for o in objects]
    return {"backend": record["backend"], "labels": record["round1"]["labels"], "frames": record["frames"],
            "found_share": round(sum(found) / len(found), 4) if found else 0.0}


def compute_foreground_mask(out: Path, inputs: dict[str, Path], params: dict, extra: dict[str, Path]) -> dict:
    """Per-clip function: BAIT on one clip (following its grounding record, if it has one), written
    as the bit-packed npz, and its preview video (from the same decoded frames)."""
    frames = read_video(inputs["clip"])
    grounder = RecordedGrounder(json.loads(inputs["grounding"].read_text())) if "grounding" in inputs else None
    backend = backends.mask_backend(params["backend"], grounder)
    result = bait_track(frames, params["fps"], backend, params["n_passes"], params["vote_threshold"],
                        params["sample_hz"])
    save_mask_npz(out, result.mask)
    preview = render_mask_preview(extra[PREVIEW.kind], frames, result.mask, params["fps"])
    stats, reason = mask_quality(result.mask)
    labels = sorted({b.label for boxes in result.boxes.values() for b in boxes})
    return {**stats, "drop_reason": reason, "shape": list(result.mask.shape), "anchors": result.anchors,
            "directions": result.directions, "agreement": round(result.agreement, 4), "labels": labels,
            "boxes": {str(i): [[round(v, 1) for v in b.as_list()] + [b.label] for b in bs]
                      for i, bs in result.boxes.items()},
            "companions": {PREVIEW.kind: preview}}


def grounding_summary(settings: dict) -> str:
    """Where the boxes come from, in words (asset metadata; no secrets in the settings)."""
    if settings["name"] == "vlm":
        vlm = settings["vlm"]
        return f"vlm ({vlm['name']}: {vlm.get('model') or vlm.get('model_dir')})"
    if settings["name"] == "detector":
        return f"detector ({settings['model_dir']}, threshold {settings['threshold']:g})"
    return "classical (the backend's own person and motion evidence)"


def render_mask_preview(out: Path, frames: np.ndarray, mask: np.ndarray, fps: float) -> dict:
    """The mask tinted over the clip, small, for the UI."""
    small = []
    for frame, m in zip(frames, mask):
        h, w = frame.shape[:2]
        size = (PREVIEW_WIDTH, int(round(h * PREVIEW_WIDTH / w / 2)) * 2) if w > PREVIEW_WIDTH else (w, h)
        small.append(cv2.resize(overlay(frame, m), size, interpolation=cv2.INTER_AREA))
    write_video(out, small, fps=fps, crf=23)
    return {"frames": len(small)}


@STAGE.asset(kinds={"video"}, pool="gpu",
             description="BAIT foreground masks (grounding at ~2 fps, multi-pass tracking, pixel vote) as bit-packed "
                         "npz, plus preview videos; computed once per static clip and shared by every theme.")
def foreground_masks(context: dg.AssetExecutionContext, config: ForegroundMasksConfig,
                     mask_backend: MaskBackendResource, vlm: VlmResource, artifact_store: ArtifactStoreResource,
                     lineage: LineageResource, clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    params = {**config.model_dump(), "backend": mask_backend.settings()}
    grounding = mask_backend.grounding_settings(vlm.settings())
    store, db, executor = artifact_store.store(), lineage.lineage(), clip_executor.executor()
    clips = STAGE.inputs(db, None, params=lambda rows: {"fps": rows["clip"]["info"]["fps"]})
    grounded = None
    if grounding["name"] != "classical":
        grounded = STAGE.run(context, store, [
            ClipInput(c.clip_id, c.parents, {**c.params, "frames": c.parents["clip"]["info"]["frames"]})
            for c in clips], fn=ground_foreground, kind="foreground_grounding", ext="json",
            code_version=GROUNDING_VERSION, params={"grounding": grounding, "sample_hz": config.sample_hz},
            executor=executor)
        clips = [ClipInput(c.clip_id, {**c.parents, "grounding": {"id": g.id, "uri": g.uri}}, c.params)
                 for c in clips if (g := grounded.artifacts.get(c.clip_id)) is not None]
    masks = STAGE.run(context, store, clips, fn=compute_foreground_mask, kind="foreground_mask", ext="npz",
                      params=params, executor=executor, companions=[PREVIEW])
    previews = masks.companions[PREVIEW.kind]
    batch = masks.batch
    failures = dict(masks.failures)
    if grounded is not None:
        batch.artifacts += grounded.batch.artifacts
        batch.edges += grounded.batch.edges
        failures.update({cid: f"grounding: {reason}" for cid, reason in grounded.failures.items()})
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
    counts = {**masks.counts, "usable": len(usable), "flagged": len(flagged), "previews": len(previews)}
    if grounded is not None:
        counts = {**counts, "clips": masks.counts["clips"] + len(grounded.failures), "failed": len(failures),
                  "grounded": len(grounded.artifacts), "grounding_computed": grounded.computed}
    coverages = [a.info["coverage"] for a in masks.artifacts.values()]
    preview_paths = {cid: str(store.path_of(p)) for cid, p in list(previews.items())[:4]}
    metadata = {
        **counts,
        "coverage_histogram": histogram_md(coverages, bins=[0, 0.002, 0.05, 0.1, 0.2, 0.4, 0.7, 0.95, 1.0]),
        "flagged": dg.MetadataValue.json(flagged),
        "failures": dg.MetadataValue.json(failures),
        "previews": dg.MetadataValue.json(preview_paths),
        "backend": mask_backend.backend,
        "grounding": grounding_summary(grounding),
    }
    return STAGE.finish(context, db, batch, output_ids=usable, summary=counts, metadata=metadata)


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
