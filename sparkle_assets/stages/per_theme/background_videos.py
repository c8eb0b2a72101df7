"""`background_videos` (per theme): each plate animated into a foreground-free video of the clip's length.

Default backend: `sparkle_model.background_animation` moves what the scene's motion cues name,
where it belongs (the regions of the stored scene layer for procedural themes, or estimated from
the plate for transformed backgrounds). `diffusers` backend: the configured image-to-video pipeline
(Wan2.2-I2V class) from the plate and the instruction. Every video gets a measured
background-motion score (optical-flow energy, `sparkle_bench.metrics.background_motion`); videos
below `min_background_motion` or made mostly of still frames are kept on disk but marked `dropped`.
"""

import dagster as dg
import numpy as np

from sparkle_model.video import read_png

from ...core.judging import judge
from ...core.readers import ROLES
from ...core.reports import histogram_md, pick_frames, sheet_metadata
from ...core.resources import ArtifactStoreResource, ClipExecutorResource, LineageResource, VideoBackendResource
from ...core.stage import Stage
from ...core.step_configs import BackgroundVideosConfig
from ...core.steps import BACKGROUNDS_VERSION, MAX_STILL_PAIRS, compute_background_video

STAGE = Stage("background_videos", BACKGROUNDS_VERSION, reads=("clip", "instruction", "plate"), by_products=("layer",),
              per_theme=True)


@STAGE.asset(kinds={"video"}, pool="gpu",
             description="Each plate animated into a lively, foreground-free video as long as its clip; "
                         "background-motion score per video, static ones dropped.")
def background_videos(context: dg.AssetExecutionContext, config: BackgroundVideosConfig,
                      video_backend: VideoBackendResource, artifact_store: ArtifactStoreResource,
                      lineage: LineageResource, clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    theme = context.partition_key
    settings = video_backend.settings()
    store, db = artifact_store.store(), lineage.lineage()
    clips = STAGE.inputs(db, theme, params=lambda r: {"frames": r["clip"]["info"]["frames"], "fps": r["clip"]["info"]["fps"]})
    report = STAGE.run(context, store, clips, fn=compute_background_video, kind="background_video", ext="mp4",
                       params={"backend": settings}, executor=clip_executor.executor())
    floor = config.min_background_motion

    def static(info: dict) -> str | None:
        motion = info["motion"]
        if motion["score"] < floor or motion["still_pairs"] > MAX_STILL_PAIRS:
            return (f"static background: motion {motion['score']:.3f} %diag/s (min {floor}), "
                    f"{100 * motion['still_pairs']:.0f}% still frame pairs")
        return None

    kept, dropped = judge(report.batch, kind="background_video", reason=static,
                          scores=lambda info: {"background_motion": info["motion"]["score"],
                                               "background_still_pairs": info["motion"]["still_pairs"]})
    scores = [a.info["motion"]["score"] for a in report.artifacts.values()]
    counts = {**report.counts, "kept": len(kept), "static": len(dropped)}
    metadata = {**counts, "pass_rate": round(len(kept) / len(scores), 3) if scores else 0.0,
                "threshold": floor, "backend": settings["name"],
                "median_background_motion": round(float(np.median(scores)), 4) if scores else 0.0,
                "motion_histogram": histogram_md(scores, bins=[0, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2]),
                "static_clips": dg.MetadataValue.json(dropped), "failures": dg.MetadataValue.json(report.failures)}
    if report.artifacts:
        by_clip = {c.clip_id: c for c in clips}
        frames0, edits = ROLES["frame0"].rows(db, theme), ROLES["edited"].rows(db, theme)
        sheet = {}
        for cid, art in report.artifacts.items():
            n = art.info["frames"]
            sheet[cid] = {"frame0": frames0.get(cid), "edited": edits.get(cid), "plate": by_clip[cid].parents["plate"],
                          "video": art, "indices": [0, n // 2, n - 1], "label": art.info["chosen_keyword"],
                          "shows": [(frames0.get(cid) or {}).get("id"), (edits.get(cid) or {}).get("id"), art.id]}

        def frame(k):
            def get(c: dict):
                if "picked" not in c:
                    c["picked"] = pick_frames(store.path_of(c["video"]), c["indices"])
                return c["picked"][k]
            return get

        png = lambda role: lambda c: read_png(store.resolve(c[role]["uri"])) if c[role] else None  # noqa: E731
        metadata.update(sheet_metadata(artifact_store.home, theme, "background_videos", sheet, [
            ("source frame 0", png("frame0")), ("edited frame 0", png("edited")), ("plate", png("plate")),
            ("background t=0", frame(0)), ("background mid", frame(1)), ("background end", frame(2))],
            tile_width=200))
    return STAGE.finish(context, db, report.batch, output_ids=kept, summary=counts, metadata=metadata)
