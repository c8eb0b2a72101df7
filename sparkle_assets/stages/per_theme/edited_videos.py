"""`edited_videos` (per theme): the final edited clip of each pair.

Default backend (`composite`, CPU): the source foreground, with a temporally smoothed, feathered
matte and a colour grade that follows the new background's light without flicker, over the
background video (`sparkle_model.edited_video`). `diffusers` backend: a Wan-VACE-class pipeline
regenerates the clip from the decoupled Canny guidance with the edited first frame kept, as the
paper does with Wan2.2-Fun-Control.
"""

import dagster as dg

from ...core.reports import pick_frames, sheet_metadata
from ...core.resources import ArtifactStoreResource, ClipExecutorResource, FinalBackendResource, LineageResource
from ...core.stage import Stage
from ...core.step_configs import EditedVideosConfig
from ...core.steps import FINALS_VERSION, compute_edited_video

STAGE = Stage("edited_videos", FINALS_VERSION, reads=("clip", "mask", "instruction", "edited", "background", "guidance"),
              per_theme=True)


@STAGE.asset(kinds={"video"}, pool="gpu",
             description="The final edited clip per pair: harmonised composite over the background video (CPU), or a "
                         "Wan-VACE-class pipeline driven by the guidance video and the edited first frame.")
def edited_videos(context: dg.AssetExecutionContext, config: EditedVideosConfig, final_backend: FinalBackendResource,
                  artifact_store: ArtifactStoreResource, lineage: LineageResource,
                  clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    theme = context.partition_key
    settings = final_backend.settings()
    store, db = artifact_store.store(), lineage.lineage()
    clips = STAGE.inputs(db, theme, params=lambda r: {"fps": r["clip"]["info"]["fps"]})
    pairs = {c.clip_id: c.parents for c in clips}
    report = STAGE.run(context, store, clips, fn=compute_edited_video, kind="edited_video", ext="mp4",
                       params={"backend": settings, **config.model_dump()}, executor=clip_executor.executor())
    metadata = {**report.counts, "backend": settings["name"], "failures": dg.MetadataValue.json(report.failures)}
    if report.artifacts:
        sheet = {}
        for cid, art in report.artifacts.items():
            n = art.info["frames"]
            sheet[cid] = {"clip": pairs[cid]["clip"], "guidance": pairs[cid]["guidance"], "video": art,
                          "indices": [0, n // 2, n - 1], "label": art.info["chosen_keyword"],
                          "shows": [pairs[cid]["clip"]["id"], pairs[cid]["guidance"]["id"], art.id]}

        def frames(c: dict) -> dict:
            if "picked" not in c:
                c["picked"] = {"source": pick_frames(store.resolve(c["clip"]["uri"]), c["indices"][:2]),
                               "guidance": pick_frames(store.resolve(c["guidance"]["uri"]), c["indices"][1:2]),
                               "edited": pick_frames(store.path_of(c["video"]), c["indices"])}
            return c["picked"]

        metadata.update(sheet_metadata(artifact_store.home, theme, "edited_videos", sheet, [
            ("source t=0", lambda c: frames(c)["source"][0]), ("guidance mid", lambda c: frames(c)["guidance"][0]),
            ("edited t=0", lambda c: frames(c)["edited"][0]), ("source mid", lambda c: frames(c)["source"][1]),
            ("edited mid", lambda c: frames(c)["edited"][1]), ("edited end", lambda c: frames(c)["edited"][2])],
            tile_width=200))
    return STAGE.finish(context, db, report.batch, output_ids=[a.id for a in report.artifacts.values()],
                        summary=report.counts, metadata=metadata)
