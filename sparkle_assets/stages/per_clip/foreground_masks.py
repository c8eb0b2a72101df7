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

import dagster as dg

from ...core.clipstep import ClipInput
from ...core.reports import histogram_md
from ...core.resources import (ArtifactStoreResource, ClipExecutorResource, LineageResource, MaskBackendResource,
                               VlmResource)
from ...core.stage import Stage
from ...core.steps import (GROUNDING_VERSION, MASKS_VERSION, PREVIEW, ForegroundMasksConfig, compute_foreground_mask,
                            ground_foreground)

STAGE = Stage("foreground_masks", MASKS_VERSION, reads=("clip",))


def grounding_summary(settings: dict) -> str:
    """Where the boxes come from, in words (asset metadata; no secrets in the settings)."""
    if settings["name"] == "vlm":
        vlm = settings["vlm"]
        return f"vlm ({vlm['name']}: {vlm.get('model') or vlm.get('model_dir')})"
    if settings["name"] == "detector":
        return f"detector ({settings['model_dir']}, threshold {settings['threshold']:g})"
    return "classical (the backend's own person and motion evidence)"


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
