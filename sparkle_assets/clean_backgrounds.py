"""`clean_backgrounds`: each static clip's empty background, once for all themes.

Per clip with a usable mask: the temporal median of the pixels the (dilated) mask leaves visible,
with the pixels the foreground never uncovers inpainted (`sparkle_model.scene_grade.clean_background`),
as a PNG. The `transform` themes (season, time, style) grade it into their new backgrounds.
"""

from pathlib import Path

import dagster as dg

from sparkle_model.masks import load_mask_npz
from sparkle_model.scene_grade import clean_background
from sparkle_model.video import read_video, write_png

from .clipstep import ClipInput, run_clip_step
from .foreground_masks import foreground_masks, usable_masks
from .resources import ArtifactStoreResource, ClipExecutorResource, LineageResource
from .static_clips import kept_clips
from .steps import finish_step

CODE_VERSION = "clean_backgrounds-1"


def compute_clean_background(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    frames = read_video(inputs["clip"])
    mask = load_mask_npz(inputs["mask"])
    plate = clean_background(frames, mask)
    write_png(out, plate)
    never = float((mask[: len(frames)].all(axis=0)).mean())
    return {"height": plate.shape[0], "width": plate.shape[1], "never_visible": round(never, 4)}


def clean_background_rows(db) -> dict[str, dict]:
    """clip_id -> the current `clean_background` artifact row."""
    return {r["clip_id"]: r for r in db.current_artifacts("clean_backgrounds", kind="clean_background")}


@dg.asset(
    deps=[foreground_masks],
    code_version=CODE_VERSION,
    group_name="theme_independent",
    kinds={"image", "duckdb"},
    description="Each static clip's empty background (masked temporal median, never-seen pixels inpainted), "
                "shared by every theme.",
)
def clean_backgrounds(context: dg.AssetExecutionContext, artifact_store: ArtifactStoreResource,
                      lineage: LineageResource, clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    store, db = artifact_store.store(), lineage.lineage()
    clips = {c["clip_id"]: c for c in kept_clips(db)}
    inputs = [ClipInput(cid, {"clip": clips[cid], "mask": m}) for cid, m in usable_masks(db).items() if cid in clips]
    report = run_clip_step(store=store, clips=inputs, fn=compute_clean_background, kind="clean_background",
                           ext="png", code_version=CODE_VERSION, params={}, asset_key="clean_backgrounds",
                           run_id=context.run_id, executor=clip_executor.executor())
    never = [a.info["never_visible"] for a in report.artifacts.values()]
    metadata = {**report.counts, "failures": dg.MetadataValue.json(report.failures),
                "never_visible_mean": round(sum(never) / len(never), 4) if never else 0.0}
    return finish_step(context, db, report.batch, asset_key="clean_backgrounds",
                       output_ids=[a.id for a in report.artifacts.values()],
                       all_ids=[a.id for a in report.batch.artifacts], code_version=CODE_VERSION,
                       summary=report.counts, metadata=metadata, input_assets=["foreground_masks"])
