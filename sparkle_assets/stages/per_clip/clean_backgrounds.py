"""`clean_backgrounds`: each static clip's empty background, once for all themes.

Per clip with a usable mask: the temporal median of the pixels the (dilated) mask leaves visible,
with the pixels the foreground never uncovers inpainted (`sparkle_model.scene_grade.clean_background`),
as a PNG. The `transform` themes (season, time, style) grade it into their new backgrounds.
The same computation stores the clip's frame 0 as a PNG (`source_frame0`, role `frame0`, the
release's `intermediate_data/{theme}/source_frame0`), so no later stage nor the export decodes a
video for it.
"""

import dagster as dg

from ...core.resources import ArtifactStoreResource, ClipExecutorResource, LineageResource
from ...core.stage import Stage
from ...core.steps import CLEAN_VERSION, FRAME0, compute_clean_background

STAGE = Stage("clean_backgrounds", CLEAN_VERSION, reads=("clip", "mask"))


@STAGE.asset(kinds={"image"},
             description="Each static clip's empty background (masked temporal median, never-seen pixels inpainted), "
                         "and its frame 0 as PNG; shared by every theme.")
def clean_backgrounds(context: dg.AssetExecutionContext, artifact_store: ArtifactStoreResource,
                      lineage: LineageResource, clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    store, db = artifact_store.store(), lineage.lineage()
    report = STAGE.run(context, store, STAGE.inputs(db, None), fn=compute_clean_background, kind="clean_background",
                       ext="png", params={}, executor=clip_executor.executor(), companions=[FRAME0])
    frames0 = report.companions[FRAME0.kind]
    never = [a.info["never_visible"] for a in report.artifacts.values()]
    metadata = {**report.counts, "source_frames0": len(frames0), "failures": dg.MetadataValue.json(report.failures),
                "never_visible_mean": round(sum(never) / len(never), 4) if never else 0.0}
    return STAGE.finish(context, db, report.batch,
                        output_ids=[a.id for a in [*report.artifacts.values(), *frames0.values()]],
                        summary=report.counts, metadata=metadata)
