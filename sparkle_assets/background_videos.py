"""`background_videos` (per theme): each plate animated into a foreground-free video of the clip's length.

Default backend: `sparkle_model.background_animation` moves what the scene's motion cues name,
where it belongs (regions of the procedural render, or estimated from the plate for transformed
backgrounds). `diffusers` backend: the configured image-to-video pipeline (Wan2.2-I2V class) from
the plate and the instruction. Every video gets a measured background-motion score (optical-flow
energy, `sparkle_bench.metrics.background_motion`); videos below `min_background_motion` or made
mostly of still frames are kept on disk but marked `dropped` as static.
"""

import json
from pathlib import Path

import dagster as dg
import numpy as np

from sparkle_bench.metrics import background_motion
from sparkle_model.background_animation import animate
from sparkle_model.contact_sheet import contact_sheet
from sparkle_model.scene_grade import bright_spots, estimate_regions
from sparkle_model.scene_render import render_scene
from sparkle_model.video import first_frame, iter_frames, read_png, write_video

from .background_plates import background_plates
from .clipstep import ClipInput, run_clip_step
from .edited_first_frames import clip_sheet_rows
from .instructions import current_by_clip, theme_clips
from .resources import ArtifactStoreResource, ClipExecutorResource, LineageResource, VideoBackendResource
from .steps import contact_sheet_metadata, finish_step, histogram_md
from .themes import theme_partitions

CODE_VERSION = "background_videos-1"
MAX_STILL_PAIRS = 0.5  # more still frame pairs than this: a still image, whatever the flow says


class BackgroundVideosConfig(dg.Config):
    """`min_background_motion`: background-motion score (% of the diagonal per second) below which
    a video counts as static and is dropped."""

    min_background_motion: float = 0.05


def compute_background_video(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: the background video as H.264 mp4, with its motion score."""
    record = json.loads(inputs["instruction"].read_text())
    plate = read_png(inputs["plate"])
    n, fps = params["frames"], params["fps"]
    animator = VideoBackendResource.build(params["backend"])
    info: dict = {"chosen_keyword": record["chosen_keyword"]}
    if animator is None:
        if record["render"] == "procedural":
            scene = render_scene(record["scene"]["layout"], plate.shape[0], plate.shape[1], record["seed"])
            regions, lights = scene.regions, scene.lights
        else:
            regions, lights = estimate_regions(plate.astype(np.float32)), bright_spots(plate.astype(np.float32))
        anim, frames = animate(plate, regions, lights, record["motion"], n, fps, record["seed"])
        frames = list(frames)
        info.update(cues_applied=anim.applied, cues_skipped=anim.skipped)
    else:
        frames = list(animator.animate(plate, record["instruction"], n, record["seed"]))
    write_video(out, frames, fps=fps)
    info["motion"] = background_motion(frames, fps)
    info["frames"] = len(frames)
    return info


def pick_frames(path: Path, indices: list[int]) -> list[np.ndarray]:
    wanted, out = set(indices), {}
    for t, frame in enumerate(iter_frames(path)):
        if t in wanted:
            out[t] = frame
        if t >= max(indices):
            break
    return [out.get(i) for i in indices]


@dg.asset(
    deps=[background_plates],
    partitions_def=theme_partitions,
    code_version=CODE_VERSION,
    group_name="theme",
    kinds={"video", "duckdb"},
    pool="gpu",
    description="Each plate animated into a lively, foreground-free video as long as its clip; background-motion "
                "score per video, static ones dropped.",
)
def background_videos(context: dg.AssetExecutionContext, config: BackgroundVideosConfig,
                      video_backend: VideoBackendResource, artifact_store: ArtifactStoreResource,
                      lineage: LineageResource, clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    theme = context.partition_key
    try:
        if config.min_background_motion < 0:
            raise ValueError(f"min_background_motion must be >= 0, got {config.min_background_motion}")
        settings = video_backend.settings()
    except ValueError as exc:
        raise dg.Failure(description=f"background_videos[{theme}]: {exc}") from exc
    store, db = artifact_store.store(), lineage.lineage()
    found = current_by_clip(db, "instructions", theme, "instruction")
    plates = current_by_clip(db, "background_plates", theme, "background_plate")
    clips = [ClipInput(c["clip_id"], {"clip": c, "instruction": found[c["clip_id"]], "plate": plates[c["clip_id"]]},
                       {"frames": c["info"]["frames"], "fps": c["info"]["fps"]})
             for c, _ in theme_clips(db) if c["clip_id"] in plates and c["clip_id"] in found]
    report = run_clip_step(store=store, clips=clips, fn=compute_background_video, kind="background_video", ext="mp4",
                           code_version=CODE_VERSION, params={"backend": settings}, asset_key="background_videos",
                           run_id=context.run_id, partition=theme, theme=theme, executor=clip_executor.executor())
    batch, kept, static = report.batch, [], {}
    for row in batch.artifacts:
        if row.status != "ok":
            continue
        motion = row.info["motion"]
        batch.scores.append((row.id, "background_motion", motion["score"]))
        batch.scores.append((row.id, "background_still_pairs", motion["still_pairs"]))
        if motion["score"] < config.min_background_motion or motion["still_pairs"] > MAX_STILL_PAIRS:
            row.status = "dropped"
            row.reason = (f"static background: motion {motion['score']:.3f} %diag/s (min {config.min_background_motion}), "
                          f"{100 * motion['still_pairs']:.0f}% still frame pairs")
            static[row.clip_id] = row.reason
        else:
            kept.append(row.id)
    scores = [a.info["motion"]["score"] for a in report.artifacts.values()]
    counts = {**report.counts, "kept": len(kept), "static": len(static)}
    metadata = {**counts, "pass_rate": round(len(kept) / len(scores), 3) if scores else 0.0,
                "threshold": config.min_background_motion, "backend": settings["name"],
                "median_background_motion": round(float(np.median(scores)), 4) if scores else 0.0,
                "motion_histogram": histogram_md(scores, bins=[0, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2]),
                "static_clips": dg.MetadataValue.json(static), "failures": dg.MetadataValue.json(report.failures)}
    if report.artifacts:
        by_clip = {c.clip_id: c for c in clips}
        sheet = {}
        for cid, art in report.artifacts.items():
            n = art.info["frames"]
            sheet[cid] = {"clip": by_clip[cid].parents["clip"], "plate": by_clip[cid].parents["plate"], "video": art,
                          "picked": pick_frames(store.path_of(art), [0, n // 2, n - 1]), "label": art.info["chosen_keyword"]}
        edits = current_by_clip(db, "edited_first_frames", theme, "edited_first_frame")
        columns = ["source frame 0", "edited frame 0", "plate", "background t=0", "background mid", "background end"]
        rows, labels = clip_sheet_rows(sheet, [
            (columns[0], lambda c: first_frame(store.resolve(c["clip"]["uri"]))),
            (columns[1], lambda c: read_png(store.resolve(edits[c["clip"]["clip_id"]]["uri"]))
             if c["clip"]["clip_id"] in edits else None),
            (columns[2], lambda c: read_png(store.resolve(c["plate"]["uri"]))),
            (columns[3], lambda c: c["picked"][0]), (columns[4], lambda c: c["picked"][1]),
            (columns[5], lambda c: c["picked"][2])])
        metadata.update(contact_sheet_metadata(artifact_store.home, theme, "background_videos",
                                               contact_sheet(rows, columns, labels, tile_width=200)))
    return finish_step(context, db, batch, asset_key="background_videos", output_ids=kept,
                       all_ids=[a.id for a in batch.artifacts], code_version=CODE_VERSION, summary=counts,
                       metadata=metadata, partition=theme, input_assets=[("background_plates", theme)])
