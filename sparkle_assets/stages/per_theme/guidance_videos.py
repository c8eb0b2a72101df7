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

from ...core.config import Range, StageConfig
from ...core.resources import ArtifactStoreResource, ClipExecutorResource, LineageResource
from ...core.stage import Stage

CODE_VERSION = "guidance_videos-1"
STAGE = Stage("guidance_videos", CODE_VERSION, reads=("clip", "mask", "background"), per_theme=True)


class GuidanceVideosConfig(StageConfig):
    """Canny hysteresis thresholds (`canny_low` < `canny_high`, 0-255 gradient units) and the
    boundary `softness` (a multiple of the frame's feather radius)."""

    RANGES = {"canny_low": Range(0, 255), "canny_high": Range(0, 1020), "softness": Range(0, 20)}
    canny_low: int = 100
    canny_high: int = 200
    softness: float = 2.0

    def problems(self) -> list[str]:
        if self.canny_low >= self.canny_high:
            return [f"canny_low ({self.canny_low}) must be below canny_high ({self.canny_high})"]
        return []


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


@STAGE.asset(kinds={"video"},
             description="Decoupled Canny guidance per pair: source edges inside the mask, background-video edges "
                         "outside, fused along a soft boundary (mp4).")
def guidance_videos(context: dg.AssetExecutionContext, config: GuidanceVideosConfig,
                    artifact_store: ArtifactStoreResource, lineage: LineageResource,
                    clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    store, db = artifact_store.store(), lineage.lineage()
    clips = STAGE.inputs(db, context.partition_key, params=lambda r: {"fps": r["clip"]["info"]["fps"]})
    report = STAGE.run(context, store, clips, fn=compute_guidance_video, kind="guidance_video", ext="mp4",
                       params=config.model_dump(), executor=clip_executor.executor())
    density = [a.info["edge_density"] for a in report.artifacts.values()]
    metadata = {**report.counts, "failures": dg.MetadataValue.json(report.failures),
                "mean_edge_density": round(sum(density) / len(density), 4) if density else 0.0}
    return STAGE.finish(context, db, report.batch, output_ids=[a.id for a in report.artifacts.values()],
                        summary=report.counts, metadata=metadata)
