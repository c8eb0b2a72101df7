"""`edited_first_frames` (per theme): frame 0 with the background replaced, and its edit score.

Default backend: the scene's new background (`background_layer`: a procedural render for
`procedural` themes, the clip's clean background graded for `transform` themes) with the source
foreground feathered and harmonised over it. `diffusers` backend: the configured edit/inpainting
pipeline repaints everything outside the (dilated) mask from the instruction, and the source
foreground is put back. Scored EditScore-style (automatic checks, or the VLM); frames whose
overall score is below `min_edit_score` (paper: 8) are kept on disk but marked `dropped`.

The scene layer is rendered once per pair and stored beside the edited frame (`background_layer`,
role `layer`: image, animation regions and light spots as npz); the plate and the background video
read it instead of rendering the scene again.
"""

import dagster as dg

from sparkle_model.video import read_png

from ...core.judging import SCORE_BINS, judge_edit_scores
from ...core.reports import histogram_md, sheet_metadata
from ...core.resources import (ArtifactStoreResource, ClipExecutorResource, EditBackendResource, LineageResource, VlmResource)
from ...core.stage import Stage
from ...core.step_configs import EditedFirstFramesConfig
from ...core.steps import EDITS_VERSION, LAYER, compute_edited_first_frame

STAGE = Stage("edited_first_frames", EDITS_VERSION, reads=("clip", "mask", "instruction", "clean"),
              by_products=("frame0",), per_theme=True)


@STAGE.asset(kinds={"image"}, pool="gpu",
             description="Frame 0 with the background replaced by the instruction's scene, the foreground kept; "
                         "EditScore-style score, dropped below min_edit_score.")
def edited_first_frames(context: dg.AssetExecutionContext, config: EditedFirstFramesConfig,
                        edit_backend: EditBackendResource, vlm: VlmResource, artifact_store: ArtifactStoreResource,
                        lineage: LineageResource, clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    theme = context.partition_key
    settings = {**edit_backend.settings(), "vlm": vlm.settings()}
    store, db = artifact_store.store(), lineage.lineage()
    clips = STAGE.inputs(db, theme)
    report = STAGE.run(context, store, clips, fn=compute_edited_first_frame, kind="edited_first_frame", ext="png",
                       params={"backend": settings, "harmony": config.harmony}, executor=clip_executor.executor(),
                       companions=[LAYER])
    batch = report.batch
    kept, dropped = judge_edit_scores(batch, "edited_first_frame", "edit", config.min_edit_score)
    overall = [a.info["score"]["overall"] for a in report.artifacts.values()]
    counts = {**report.counts, "kept": len(kept), "dropped": len(dropped)}
    metadata = {**counts, "pass_rate": round(len(kept) / len(overall), 3) if overall else 0.0,
                "threshold": config.min_edit_score, "scorer": settings["scorer"], "backend": settings["name"],
                "score_histogram": histogram_md(overall, SCORE_BINS), "dropped_clips": dg.MetadataValue.json(dropped),
                "failures": dg.MetadataValue.json(report.failures)}
    if report.artifacts:
        by_clip = {c.clip_id: c for c in clips}
        sheet = {cid: {"frame0": by_clip[cid].by_products["frame0"], "edited": a, "label": a.info["chosen_keyword"],
                      "shows": [by_clip[cid].by_products["frame0"]["id"], a.id]}
                 for cid, a in report.artifacts.items()}
        metadata.update(sheet_metadata(artifact_store.home, theme, "edited_first_frames", sheet, [
            ("source frame 0", lambda c: read_png(store.resolve(c["frame0"]["uri"]))),
            ("edited frame 0", lambda c: read_png(store.path_of(c["edited"])))]))
    # the layers are fixed by the edits' ids, so the kept edits alone version what downstream reads
    return STAGE.finish(context, db, batch, output_ids=kept, summary=counts, metadata=metadata)
