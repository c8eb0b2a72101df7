"""`edited_videos` (per theme): the final edited clip of each pair.

Default backend (`composite`, CPU): the source foreground, with a temporally smoothed, feathered
matte and a colour grade that follows the new background's light without flicker, over the
background video (`sparkle_model.edited_video`). `diffusers` backend: a Wan-VACE-class pipeline
regenerates the clip from the decoupled Canny guidance with the edited first frame kept, as the
paper does with Wan2.2-Fun-Control.
"""

import json
from pathlib import Path

import dagster as dg

from sparkle_model.contact_sheet import contact_sheet
from sparkle_model.edited_video import composite_video
from sparkle_model.masks import load_mask_npz
from sparkle_model.video import iter_frames, read_png, read_video, write_video

from .background_videos import pick_frames
from .clipstep import run_clip_step
from .edited_first_frames import clip_sheet_rows
from .guidance_videos import guidance_videos, pair_clips
from .resources import ArtifactStoreResource, ClipExecutorResource, FinalBackendResource, LineageResource
from .steps import contact_sheet_metadata, finish_step
from .themes import theme_partitions

CODE_VERSION = "edited_videos-2"
ROLES = ("clip", "mask", "instruction", "edited", "background", "guidance")


class EditedVideosConfig(dg.Config):
    """`harmony`: how far the subject's colour moves toward the new background (0-1, composite
    backend); `memory`: weight of the past in the grade's moving average (0-1, higher is steadier)."""

    harmony: float = 0.35
    memory: float = 0.85

    def validate(self) -> None:
        if not 0 <= self.harmony <= 1:
            raise ValueError(f"harmony must be in [0, 1], got {self.harmony}")
        if not 0 <= self.memory < 1:
            raise ValueError(f"memory must be in [0, 1), got {self.memory}")


def compute_edited_video(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    record = json.loads(inputs["instruction"].read_text())
    generator = FinalBackendResource.build(params["backend"])
    if generator is None:
        frames = composite_video(iter_frames(inputs["clip"]), iter_frames(inputs["background"]),
                                 load_mask_npz(inputs["mask"]), params["harmony"], params["memory"])
    else:
        frames = generator.generate(read_video(inputs["guidance"]), read_png(inputs["edited"]),
                                    record["instruction"], record["seed"])
    n = 0

    def counted():
        nonlocal n
        for f in frames:
            n += 1
            yield f

    write_video(out, counted(), fps=params["fps"])
    return {"frames": n, "chosen_keyword": record["chosen_keyword"], "backend": params["backend"]["name"]}


@dg.asset(
    deps=[guidance_videos],
    partitions_def=theme_partitions,
    code_version=CODE_VERSION,
    group_name="theme",
    kinds={"video", "duckdb"},
    pool="gpu",
    description="The final edited clip per pair: harmonised composite over the background video (CPU), or a "
                "Wan-VACE-class pipeline driven by the guidance video and the edited first frame.",
)
def edited_videos(context: dg.AssetExecutionContext, config: EditedVideosConfig, final_backend: FinalBackendResource,
                  artifact_store: ArtifactStoreResource, lineage: LineageResource,
                  clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    theme = context.partition_key
    try:
        config.validate()
        settings = final_backend.settings()
    except ValueError as exc:
        raise dg.Failure(description=f"edited_videos[{theme}]: {exc}") from exc
    store, db = artifact_store.store(), lineage.lineage()
    clips = pair_clips(db, theme, ROLES)
    pairs = {c.clip_id: c.parents for c in clips}
    params = {"backend": settings, **config.model_dump()}
    report = run_clip_step(store=store, clips=clips, fn=compute_edited_video, kind="edited_video", ext="mp4",
                           code_version=CODE_VERSION, params=params, asset_key="edited_videos", run_id=context.run_id,
                           partition=theme, theme=theme, executor=clip_executor.executor())
    metadata = {**report.counts, "backend": settings["name"], "failures": dg.MetadataValue.json(report.failures)}
    if report.artifacts:
        sheet = {}
        for cid, art in report.artifacts.items():
            n = art.info["frames"]
            idx = [0, n // 2, n - 1]
            sheet[cid] = {"source": pick_frames(store.resolve(pairs[cid]["clip"]["uri"]), idx),
                          "guidance": pick_frames(store.resolve(pairs[cid]["guidance"]["uri"]), [n // 2]),
                          "edited": pick_frames(store.path_of(art), idx), "label": art.info["chosen_keyword"]}
        columns = ["source t=0", "guidance mid", "edited t=0", "source mid", "edited mid", "edited end"]
        rows, labels = clip_sheet_rows(sheet, [
            (columns[0], lambda c: c["source"][0]), (columns[1], lambda c: c["guidance"][0]),
            (columns[2], lambda c: c["edited"][0]), (columns[3], lambda c: c["source"][1]),
            (columns[4], lambda c: c["edited"][1]), (columns[5], lambda c: c["edited"][2])])
        metadata.update(contact_sheet_metadata(artifact_store.home, theme, "edited_videos",
                                               contact_sheet(rows, columns, labels, tile_width=200)))
    return finish_step(context, db, report.batch, asset_key="edited_videos",
                       output_ids=[a.id for a in report.artifacts.values()],
                       all_ids=[a.id for a in report.batch.artifacts], code_version=CODE_VERSION,
                       summary=report.counts, metadata=metadata, partition=theme,
                       input_assets=[("guidance_videos", theme)])
