"""`guidance_videos` (per theme): the decoupled Canny guidance for each pair (paper stage 5).

Per clip with a kept background video: Canny edges of the source video inside the foreground
mask, of the background video outside it, fused along a softened boundary
(`sparkle_model.guidance`), written as H.264 mp4 like the release's `edited_video_canny`.
"""

import dagster as dg

from ...core.resources import ArtifactStoreResource, ClipExecutorResource, LineageResource
from ...core.stage import Stage
from ...core.steps import GUIDANCE_VERSION, GuidanceVideosConfig, compute_guidance_video

STAGE = Stage("guidance_videos", GUIDANCE_VERSION, reads=("clip", "mask", "background"), per_theme=True)


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
