"""`background_plates` (per theme): the edited frame 0 with the foreground erased.

Default backend, by construction: the scene's background layer (stored beside the edited frame)
where the dilated mask was, the edited frame elsewhere. `diffusers` backend: the edit pipeline
inpaints the dilated mask region of the edited frame. Scored like the edits; plates below
`min_plate_score` (paper: 8.5, to guarantee a clean background) are dropped.
"""

import json
from pathlib import Path

import dagster as dg

from sparkle_model import backends
from sparkle_model.edit_scores import score_plate
from sparkle_model.first_frame_edit import erase_foreground, grown, load_layer
from sparkle_model.masks import load_mask_npz
from sparkle_model.video import read_png, write_png

from ...core.config import Range, StageConfig
from ...core.judging import SCORE_BINS, judge_edit_scores
from ...core.readers import ROLES
from ...core.reports import histogram_md, sheet_metadata
from ...core.resources import ArtifactStoreResource, ClipExecutorResource, EditBackendResource, LineageResource, VlmResource
from ...core.stage import Stage

CODE_VERSION = "background_plates-1"
STAGE = Stage("background_plates", CODE_VERSION, reads=("clip", "mask", "instruction", "edited", "clean"),
              by_products=("layer",), per_theme=True)
ERASE_PROMPT = "Remove every person and foreground object; show only the empty background scene: "


class BackgroundPlatesConfig(StageConfig):
    """`min_plate_score`: overall score (0-10) below which a plate is dropped (paper: 8.5)."""

    RANGES = {"min_plate_score": Range(0, 10)}
    min_plate_score: float = 8.5


def compute_background_plate(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: the foreground-free plate as PNG, with its score."""
    record = json.loads(inputs["instruction"].read_text())
    edited = read_png(inputs["edited"])
    mask0 = load_mask_npz(inputs["mask"])[0]
    settings = params["backend"]
    editor = backends.editor(settings)
    if editor is None:
        plate = erase_foreground(edited, mask0, load_layer(inputs["layer"]))
    else:
        plate = editor.edit(edited, ERASE_PROMPT + record["scene"]["looks"], record["seed"] + 1, repaint=grown(mask0))
    write_png(out, plate)
    score = backends.score_edit_with(settings, edited, plate, ERASE_PROMPT + record["scene"]["looks"],
                                     "remove the foreground, keep the background",
                                     lambda: score_plate(edited, plate, mask0))
    return {"score": score, "chosen_keyword": record["chosen_keyword"]}


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
                       "label": a.info["chosen_keyword"]} for cid, a in report.artifacts.items()}
        metadata.update(sheet_metadata(artifact_store.home, theme, "background_plates", sheet, [
            ("source frame 0", lambda c: read_png(store.resolve(c["frame0"]["uri"])) if c["frame0"] else None),
            ("edited frame 0", lambda c: read_png(store.resolve(c["edited"]["uri"]))),
            ("background plate", lambda c: read_png(store.path_of(c["plate"])))]))
    return STAGE.finish(context, db, batch, output_ids=kept, summary=counts, metadata=metadata)
