"""`guidance_videos` (per theme): the decoupled Canny guidance for each pair (paper stage 5).

Per clip with a kept background video: Canny edges of the source video inside the foreground
mask, of the background video outside it, fused along a softened boundary
(`sparkle_model.guidance`), written as H.264 mp4 like the release's `edited_video_canny`.
"""

from pathlib import Path

import dagster as dg

from sparkle_model.guidance import guidance_frames
from sparkle_model.masks import load_mask_npz
from sparkle_model.video import iter_frames, write_video

from .background_videos import background_videos
from .clipstep import ClipInput, run_clip_step
from .instructions import current_by_clip, theme_clips
from .resources import ArtifactStoreResource, ClipExecutorResource, LineageResource
from .steps import finish_step
from .themes import theme_partitions

CODE_VERSION = "guidance_videos-1"


class GuidanceVideosConfig(dg.Config):
    """Canny hysteresis thresholds (`canny_low` < `canny_high`, 0-255 gradient units) and the
    boundary `softness` (a multiple of the frame's feather radius)."""

    canny_low: int = 100
    canny_high: int = 200
    softness: float = 2.0

    def validate(self) -> None:
        if not 0 <= self.canny_low < self.canny_high:
            raise ValueError(f"need 0 <= canny_low < canny_high, got {self.canny_low}, {self.canny_high}")
        if self.softness < 0:
            raise ValueError(f"softness must be >= 0, got {self.softness}")


def compute_guidance_video(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    masks = load_mask_npz(inputs["mask"])
    frames = guidance_frames(iter_frames(inputs["clip"]), iter_frames(inputs["background"]), masks,
                             params["canny_low"], params["canny_high"], params["softness"])
    density = []

    def counted():
        for f in frames:
            density.append(float((f[..., 0] > 127).mean()))
            yield f

    write_video(out, counted(), fps=params["fps"])
    return {"frames": len(density), "edge_density": round(sum(density) / max(1, len(density)), 4)}


def current_rows(db, theme: str) -> dict[str, dict[str, dict]]:
    """clip_id -> {role: artifact row} for every clip with a kept background video in the theme:
    the clip, its mask, instruction, edited frame 0, plate, background video, guidance and edited
    video where those exist."""
    found = {"instruction": current_by_clip(db, "instructions", theme, "instruction"),
             "edited": current_by_clip(db, "edited_first_frames", theme, "edited_first_frame"),
             "plate": current_by_clip(db, "background_plates", theme, "background_plate"),
             "background": current_by_clip(db, "background_videos", theme, "background_video"),
             "guidance": current_by_clip(db, "guidance_videos", theme, "guidance_video"),
             "video": current_by_clip(db, "edited_videos", theme, "edited_video")}
    out = {}
    for clip, mask in theme_clips(db):
        cid = clip["clip_id"]
        if cid in found["background"]:
            out[cid] = {"clip": clip, "mask": mask, **{role: rows[cid] for role, rows in found.items() if cid in rows}}
    return out


def pair_clips(db, theme: str, roles: tuple[str, ...]) -> list[ClipInput]:
    """One ClipInput per pair of the theme that has every role in `roles` (params: the clip's fps)."""
    return [ClipInput(cid, {r: rows[r] for r in roles}, {"fps": rows["clip"]["info"]["fps"]})
            for cid, rows in current_rows(db, theme).items() if all(r in rows for r in roles)]


@dg.asset(
    deps=[background_videos],
    partitions_def=theme_partitions,
    code_version=CODE_VERSION,
    group_name="theme",
    kinds={"video", "duckdb"},
    description="Decoupled Canny guidance per pair: source edges inside the mask, background-video edges "
                "outside, fused along a soft boundary (mp4).",
)
def guidance_videos(context: dg.AssetExecutionContext, config: GuidanceVideosConfig,
                    artifact_store: ArtifactStoreResource, lineage: LineageResource,
                    clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    theme = context.partition_key
    try:
        config.validate()
    except ValueError as exc:
        raise dg.Failure(description=f"guidance_videos[{theme}]: {exc}") from exc
    store, db = artifact_store.store(), lineage.lineage()
    clips = pair_clips(db, theme, ("clip", "mask", "background"))
    report = run_clip_step(store=store, clips=clips, fn=compute_guidance_video, kind="guidance_video", ext="mp4",
                           code_version=CODE_VERSION, params=config.model_dump(), asset_key="guidance_videos",
                           run_id=context.run_id, partition=theme, theme=theme, executor=clip_executor.executor())
    density = [a.info["edge_density"] for a in report.artifacts.values()]
    metadata = {**report.counts, "failures": dg.MetadataValue.json(report.failures),
                "mean_edge_density": round(sum(density) / len(density), 4) if density else 0.0}
    return finish_step(context, db, report.batch, asset_key="guidance_videos",
                       output_ids=[a.id for a in report.artifacts.values()],
                       all_ids=[a.id for a in report.batch.artifacts], code_version=CODE_VERSION,
                       summary=report.counts, metadata=metadata, partition=theme,
                       input_assets=[("background_videos", theme)])
