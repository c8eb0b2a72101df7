"""Stage 4, `foreground_masks`: BAIT tracking of every static clip, once for all themes.

Per clip: a `foreground_mask` artifact (the paper's bit-packed `.npz`, (T, H, W) bool) from
sparkle_model.bait with the configured backend, and a `mask_preview` mp4 (mask tinted over the
source, at most 480 px wide) for the UI, written by the same computation from the same decoded frames. Masks that are empty, cover almost the whole frame, or jump
between frames are marked `dropped` with the reason; later stages read only the usable ones (role
`mask`), and the asset check `foreground_masks_quality` reports them.
"""

import dagster as dg

from ...core.reports import histogram_md
from ...core.resources import ArtifactStoreResource, ClipExecutorResource, LineageResource, MaskBackendResource
from ...core.stage import Stage
from ...core.steps import ForegroundMasksConfig, MASKS_VERSION, PREVIEW, compute_foreground_mask

STAGE = Stage("foreground_masks", MASKS_VERSION, reads=("clip",))


@STAGE.asset(kinds={"video"}, pool="gpu",
             description="BAIT foreground masks (grounding at ~2 fps, multi-pass tracking, pixel vote) as bit-packed "
                         "npz, plus preview videos; computed once per static clip and shared by every theme.")
def foreground_masks(context: dg.AssetExecutionContext, config: ForegroundMasksConfig,
                     mask_backend: MaskBackendResource, artifact_store: ArtifactStoreResource,
                     lineage: LineageResource, clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    params = {**config.model_dump(), "backend": mask_backend.settings()}
    store, db = artifact_store.store(), lineage.lineage()
    clips = STAGE.inputs(db, None, params=lambda rows: {"fps": rows["clip"]["info"]["fps"]})
    masks = STAGE.run(context, store, clips, fn=compute_foreground_mask, kind="foreground_mask", ext="npz",
                      params=params, executor=clip_executor.executor(), companions=[PREVIEW])
    previews = masks.companions[PREVIEW.kind]
    batch = masks.batch
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
    coverages = [a.info["coverage"] for a in masks.artifacts.values()]
    preview_paths = {cid: str(store.path_of(p)) for cid, p in list(previews.items())[:4]}
    metadata = {
        **counts,
        "coverage_histogram": histogram_md(coverages, bins=[0, 0.002, 0.05, 0.1, 0.2, 0.4, 0.7, 0.95, 1.0]),
        "flagged": dg.MetadataValue.json(flagged),
        "failures": dg.MetadataValue.json(masks.failures),
        "previews": dg.MetadataValue.json(preview_paths),
        "backend": mask_backend.backend,
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
