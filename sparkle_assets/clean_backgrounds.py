"""`clean_backgrounds`: each static clip's empty background, once for all themes.

Per clip with a usable mask: the temporal median of the pixels the (dilated) mask leaves visible,
with the pixels the foreground never uncovers inpainted (`sparkle_model.scene_grade.clean_background`),
as a PNG. The `transform` themes (season, time, style) grade it into their new backgrounds.
The same step stores each clip's frame 0 as a PNG (`source_frame0`, the release's
`intermediate_data/{theme}/source_frame0`), so the export never has to decode a video.
"""

from pathlib import Path

import dagster as dg

from sparkle_model.masks import load_mask_npz
from sparkle_model.scene_grade import clean_background
from sparkle_model.video import first_frame, read_video, write_png

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


def compute_source_frame0(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    frame = first_frame(inputs["clip"])
    write_png(out, frame)
    return {"height": frame.shape[0], "width": frame.shape[1]}


def clean_background_rows(db) -> dict[str, dict]:
    """clip_id -> the current `clean_background` artifact row."""
    return {r["clip_id"]: r for r in db.current_artifacts("clean_backgrounds", kind="clean_background")}


def source_frame0_rows(db) -> dict[str, dict]:
    """clip_id -> the current `source_frame0` artifact row (frame 0 as PNG)."""
    return {r["clip_id"]: r for r in db.current_artifacts("clean_backgrounds", kind="source_frame0")}


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
    frames0 = run_clip_step(store=store, clips=[ClipInput(c.clip_id, {"clip": c.parents["clip"]}) for c in inputs],
                            fn=compute_source_frame0, kind="source_frame0", ext="png", code_version=CODE_VERSION,
                            params={}, asset_key="clean_backgrounds", run_id=context.run_id,
                            executor=clip_executor.executor())
    report.batch.artifacts.extend(frames0.batch.artifacts)
    report.batch.edges.extend(frames0.batch.edges)
    never = [a.info["never_visible"] for a in report.artifacts.values()]
    counts = {k: report.counts[k] + frames0.counts[k] for k in ("computed", "reused", "failed")}
    counts["clips"] = report.counts["clips"]
    metadata = {**counts, "source_frames0": len(frames0.artifacts),
                "failures": dg.MetadataValue.json({**report.failures, **frames0.failures}),
                "never_visible_mean": round(sum(never) / len(never), 4) if never else 0.0}
    return finish_step(context, db, report.batch, asset_key="clean_backgrounds",
                       output_ids=[a.id for a in [*report.artifacts.values(), *frames0.artifacts.values()]],
                       all_ids=[a.id for a in report.batch.artifacts], code_version=CODE_VERSION,
                       summary=counts, metadata=metadata, input_assets=["foreground_masks"])
