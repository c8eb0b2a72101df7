"""`background_plates` (per theme): the edited frame 0 with the foreground erased.

Default backend, by construction: the scene's background layer (stored beside the edited frame)
where the dilated mask was, the edited frame elsewhere. `diffusers` backend: the edit pipeline
inpaints the dilated mask region of the edited frame. Scored like the edits; plates below
`min_plate_score` (paper: 8.5, to guarantee a clean background) are dropped.
"""

import dagster as dg

from sparkle_model.video import read_png

from ...core.judging import SCORE_BINS, judge_edit_scores
from ...core.readers import ROLES
from ...core.reports import histogram_md, sheet_metadata
from ...core.resources import (ArtifactStoreResource, ClipExecutorResource, EditBackendResource, LineageResource, VlmResource)
from ...core.stage import Stage
from ...core.step_configs import BackgroundPlatesConfig
from ...core.steps import PLATES_VERSION, compute_background_plate

STAGE = Stage("background_plates", PLATES_VERSION, reads=("clip", "mask", "instruction", "edited", "clean"),
              by_products=("layer",), per_theme=True)


@STAGE.asset(kinds={"image"}, pool="gpu",
             description="The edited frame 0 with the foreground erased (a clean background plate); dropped below "
                         "min_plate_score.")
def background_plates(context: dg.AssetExecutionContext, config: BackgroundPlatesConfig,
                      edit_backend: EditBackendResource, vlm: VlmResource, artifact_store: ArtifactStoreResource,
                      lineage: LineageResource, clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    theme = context.partition_key
    settings = {**edit_backend.settings(), "vlm": vlm.settings()}
    store, db = artifact_store.store(), lineage.lineage()
    clips = STAGE.inputs(db, theme)
    report = STAGE.run(context, store, clips, fn=compute_background_plate, kind="background_plate", ext="png",
                       params={"backend": settings}, executor=clip_executor.executor())
    batch = report.batch
    kept, dropped = judge_edit_scores(batch, "background_plate", "plate", config.min_plate_score)
    overall = [a.info["score"]["overall"] for a in report.artifacts.values()]
    counts = {**report.counts, "kept": len(kept), "dropped": len(dropped)}
    metadata = {**counts, "pass_rate": round(len(kept) / len(overall), 3) if overall else 0.0,
                "threshold": config.min_plate_score, "backend": settings["name"],
                "score_histogram": histogram_md(overall, SCORE_BINS), "dropped_clips": dg.MetadataValue.json(dropped),
                "failures": dg.MetadataValue.json(report.failures)}
    if report.artifacts:
        by_clip, frames0 = {c.clip_id: c for c in clips}, ROLES["frame0"].rows(db, theme)
        sheet = {cid: {"frame0": frames0.get(cid), "edited": by_clip[cid].parents["edited"], "plate": a,
                       "label": a.info["chosen_keyword"],
                       "shows": [(frames0.get(cid) or {}).get("id"), by_clip[cid].parents["edited"]["id"], a.id]}
                 for cid, a in report.artifacts.items()}
        metadata.update(sheet_metadata(artifact_store.home, theme, "background_plates", sheet, [
            ("source frame 0", lambda c: read_png(store.resolve(c["frame0"]["uri"])) if c["frame0"] else None),
            ("edited frame 0", lambda c: read_png(store.resolve(c["edited"]["uri"]))),
            ("background plate", lambda c: read_png(store.path_of(c["plate"])))]))
    return STAGE.finish(context, db, batch, output_ids=kept, summary=counts, metadata=metadata)
