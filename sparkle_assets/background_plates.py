"""`background_plates` (per theme): the edited frame 0 with the foreground erased.

Default backend, by construction: the scene's background layer (rebuilt from the instruction and
the clean background) where the dilated mask was, the edited frame elsewhere. `diffusers` backend:
the edit pipeline inpaints the dilated mask region of the edited frame. Scored like the edits;
plates below `min_plate_score` (paper: 8.5, to guarantee a clean background) are dropped.
"""

import json
from pathlib import Path

import dagster as dg

from sparkle_model.contact_sheet import contact_sheet
from sparkle_model.edit_scores import score_plate
from sparkle_model.first_frame_edit import background_layer, erase_foreground
from sparkle_model.masks import load_mask_npz
from sparkle_model.taxonomy import Scene
from sparkle_model.video import first_frame, read_png, write_png

from .clean_backgrounds import clean_background_rows
from .clipstep import ClipInput, run_clip_step
from .edited_first_frames import (SCORE_BINS, clip_sheet_rows, edited_first_frames, grown, judge_edit_scores,
                                  score_with)
from .instructions import current_by_clip, theme_clips
from .resources import (ArtifactStoreResource, ClipExecutorResource, EditBackendResource, LineageResource,
                        VlmResource)
from .steps import contact_sheet_metadata, finish_step, histogram_md
from .themes import theme_partitions

CODE_VERSION = "background_plates-1"
ERASE_PROMPT = "Remove every person and foreground object; show only the empty background scene: "


class BackgroundPlatesConfig(dg.Config):
    """`min_plate_score`: overall score (0-10) below which a plate is dropped (paper: 8.5)."""

    min_plate_score: float = 8.5


def compute_background_plate(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: the foreground-free plate as PNG, with its score."""
    record = json.loads(inputs["instruction"].read_text())
    edited = read_png(inputs["edited"])
    mask0 = load_mask_npz(inputs["mask"])[0]
    settings = params["backend"]
    editor = EditBackendResource.build(settings)
    if editor is None:
        layer = background_layer(Scene.from_json(record["scene"]), record["render"], read_png(inputs["clean"]), record["seed"])
        plate = erase_foreground(edited, mask0, layer)
    else:
        plate = editor.edit(edited, ERASE_PROMPT + record["scene"]["looks"], record["seed"] + 1, repaint=grown(mask0))
    write_png(out, plate)
    score = score_with(settings, edited, plate, mask0, ERASE_PROMPT + record["scene"]["looks"],
                       "remove the foreground, keep the background", lambda: score_plate(edited, plate, mask0))
    return {"score": score, "chosen_keyword": record["chosen_keyword"]}


@dg.asset(
    deps=[edited_first_frames],
    partitions_def=theme_partitions,
    code_version=CODE_VERSION,
    group_name="theme",
    kinds={"image", "duckdb"},
    pool="gpu",
    description="The edited frame 0 with the foreground erased (a clean background plate); dropped below min_plate_score.",
)
def background_plates(context: dg.AssetExecutionContext, config: BackgroundPlatesConfig,
                      edit_backend: EditBackendResource, vlm: VlmResource, artifact_store: ArtifactStoreResource,
                      lineage: LineageResource, clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    theme = context.partition_key
    try:
        if not 0 <= config.min_plate_score <= 10:
            raise ValueError(f"min_plate_score must be in [0, 10], got {config.min_plate_score}")
        settings = {**edit_backend.settings(), "vlm": vlm.settings()}
    except ValueError as exc:
        raise dg.Failure(description=f"background_plates[{theme}]: {exc}") from exc
    store, db = artifact_store.store(), lineage.lineage()
    found = current_by_clip(db, "instructions", theme, "instruction")
    edits = current_by_clip(db, "edited_first_frames", theme, "edited_first_frame")
    cleans = clean_background_rows(db)
    clips = [ClipInput(c["clip_id"], {"clip": c, "mask": m, "instruction": found[c["clip_id"]],
                                      "edited": edits[c["clip_id"]], "clean": cleans[c["clip_id"]]})
             for c, m in theme_clips(db) if c["clip_id"] in edits and c["clip_id"] in found and c["clip_id"] in cleans]
    report = run_clip_step(store=store, clips=clips, fn=compute_background_plate, kind="background_plate", ext="png",
                           code_version=CODE_VERSION, params={"backend": settings}, asset_key="background_plates",
                           run_id=context.run_id, partition=theme, theme=theme, executor=clip_executor.executor())
    batch = report.batch
    kept, dropped = judge_edit_scores(batch, "plate", config.min_plate_score)
    overall = [a.info["score"]["overall"] for a in report.artifacts.values()]
    counts = {**report.counts, "kept": len(kept), "dropped": len(dropped)}
    by_clip = {c.clip_id: c for c in clips}
    metadata = {**counts, "pass_rate": round(len(kept) / len(overall), 3) if overall else 0.0,
                "threshold": config.min_plate_score, "backend": settings["name"],
                "score_histogram": histogram_md(overall, SCORE_BINS), "dropped_clips": dg.MetadataValue.json(dropped),
                "failures": dg.MetadataValue.json(report.failures)}
    if report.artifacts:
        sheet = {cid: {"clip": by_clip[cid].parents["clip"], "edited": by_clip[cid].parents["edited"], "plate": a,
                       "label": a.info["chosen_keyword"]} for cid, a in report.artifacts.items()}
        columns = ["source frame 0", "edited frame 0", "background plate"]
        rows, labels = clip_sheet_rows(sheet, [
            (columns[0], lambda c: first_frame(store.resolve(c["clip"]["uri"]))),
            (columns[1], lambda c: read_png(store.resolve(c["edited"]["uri"]))),
            (columns[2], lambda c: read_png(store.path_of(c["plate"])))])
        metadata.update(contact_sheet_metadata(artifact_store.home, theme, "background_plates",
                                               contact_sheet(rows, columns, labels)))
    return finish_step(context, db, batch, asset_key="background_plates", output_ids=kept,
                       all_ids=[a.id for a in batch.artifacts], code_version=CODE_VERSION, summary=counts,
                       metadata=metadata, partition=theme, input_assets=[("edited_first_frames", theme)])
