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

import json
from pathlib import Path

import dagster as dg

from sparkle_model import backends
from sparkle_model.edit_scores import score_edit
from sparkle_model.first_frame_edit import (background_layer, composite, edit_first_frame, feather_radius, feathered,
                                            grown, save_layer)
from sparkle_model.masks import load_mask_npz
from sparkle_model.taxonomy import Scene
from sparkle_model.video import read_png, write_png

from ...core.clipstep import Companion
from ...core.config import Range, StageConfig
from ...core.judging import SCORE_BINS, judge_edit_scores
from ...core.reports import histogram_md, sheet_metadata
from ...core.resources import ArtifactStoreResource, ClipExecutorResource, EditBackendResource, LineageResource, VlmResource
from ...core.stage import Stage

CODE_VERSION = "edited_first_frames-1"
STAGE = Stage("edited_first_frames", CODE_VERSION, reads=("clip", "mask", "instruction", "clean"),
              by_products=("frame0",), per_theme=True)
LAYER = Companion("background_layer", "npz", "background_layer-1", main_role="edited")


class EditedFirstFramesConfig(StageConfig):
    """`min_edit_score`: overall score (0-10) below which an edit is dropped (paper: 8).
    `harmony`: how far the default backend moves the subject's colour toward the new background."""

    RANGES = {"min_edit_score": Range(0, 10), "harmony": Range(0, 1)}
    min_edit_score: float = 8.0
    harmony: float = 0.35


def compute_edited_first_frame(out: Path, inputs: dict[str, Path], params: dict, extra: dict[str, Path]) -> dict:
    """Per-clip function: the edited frame 0 as PNG, with its score, and the scene layer."""
    record = json.loads(inputs["instruction"].read_text())
    frame0 = read_png(inputs["frame0"])
    mask0 = load_mask_npz(inputs["mask"])[0]
    settings = params["backend"]
    layer = background_layer(Scene.from_json(record["scene"]), record["render"], read_png(inputs["clean"]),
                             record["seed"])
    save_layer(extra[LAYER.kind], layer)
    editor = backends.editor(settings)
    if editor is None:
        edited = edit_first_frame(frame0, mask0, layer, params["harmony"])
    else:
        raw = editor.edit(frame0, record["instruction"], record["seed"], repaint=~grown(mask0))
        edited = composite(frame0, raw, feathered(mask0, feather_radius(mask0.shape)))
    write_png(out, edited)
    score = backends.score_edit_with(settings, frame0, edited, record["instruction"],
                                     "replace the background, keep the subject", lambda: score_edit(frame0, edited, mask0))
    return {"score": score, "chosen_keyword": record["chosen_keyword"],
            "companions": {LAYER.kind: {"render": record["render"], "lights": len(layer.lights)}}}


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
        sheet = {cid: {"frame0": by_clip[cid].by_products["frame0"], "edited": a, "label": a.info["chosen_keyword"]}
                 for cid, a in report.artifacts.items()}
        metadata.update(sheet_metadata(artifact_store.home, theme, "edited_first_frames", sheet, [
            ("source frame 0", lambda c: read_png(store.resolve(c["frame0"]["uri"]))),
            ("edited frame 0", lambda c: read_png(store.path_of(c["edited"])))]))
    # the layers are fixed by the edits' ids, so the kept edits alone version what downstream reads
    return STAGE.finish(context, db, batch, output_ids=kept, summary=counts, metadata=metadata)
