"""Stage 1a, `source_clips`: probe, decode-check and normalise every source video into clips.

Each configured candidate file is ingested by `core.ingest` (hashed, probed, decode-checked and
normalised; an unchanged file is never decoded twice). Files that are empty, unreadable, truncated,
too short or of absurd resolution are quarantined with a reason and never fail the run.
"""

import dagster as dg

from ...core.ingest import CODE_VERSION, IngestJob, IngestResult, failed_ingest_row, ingest_rows, ingest_source
from ...core.lineage import LineageBatch
from ...core.reports import histogram_md
from ...core.resources import ArtifactStoreResource, ClipExecutorResource, LineageResource, SourcesResource
from ...core.source_hashes import hash_dir
from ...core.stage import Stage
from ...core.step_configs import SourceClipsConfig

STAGE = Stage("source_clips", CODE_VERSION)


@STAGE.asset(kinds={"video"},
             description="Probed, decode-checked, normalised source clips (H.264, 16 fps, 4k+1 frames); bad files "
                         "quarantined.")
def source_clips(context: dg.AssetExecutionContext, config: SourceClipsConfig, sources: SourcesResource,
                 artifact_store: ArtifactStoreResource, lineage: LineageResource,
                 clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    params = config.model_dump()
    items = sources.discover()  # a missing folder or malformed CSV is a ConfigError: the step fails naming it
    store = artifact_store.store()
    hashes = str(hash_dir(artifact_store.home))
    jobs = [IngestJob(str(store.root), it.path, it.clip_id, it.origin, it.prompt, params, hashes) for it in items]
    executor = clip_executor.executor()
    outcomes = executor.map(ingest_source, jobs, timeout=executor.time_limit(STAGE.name))

    run_id, batch = context.run_id, LineageBatch()
    counts = {"files": len(jobs), "clips": 0, "computed": 0, "reused": 0, "quarantined": 0, "failed": 0}
    quarantined, clip_ids = [], []
    for job, outcome in zip(jobs, outcomes):
        if not outcome.ok:  # an unexpected error: recorded, counted, retried next run
            counts["failed"] += 1
            quarantined.append((job.clip_id, f"failed: {outcome.error}"))
            batch.artifacts.append(failed_ingest_row(job, outcome.error, "source_clips", run_id, cost=outcome.cost))
            continue
        res: IngestResult = outcome.value
        rows, edges = ingest_rows(job, res, "source_clips", run_id, cost=outcome.cost)
        batch.artifacts += rows
        batch.edges += edges
        if res.status != "ok":
            counts["quarantined"] += 1
            quarantined.append((job.clip_id, res.record.info["reason"]))
            continue
        counts["computed" if res.fresh else "reused"] += len(res.clips)
        counts["clips"] += len(res.clips)
        clip_ids += [clip.id for clip in res.clips]

    table = "\n".join(f"| {cid} | {reason} |" for cid, reason in quarantined)
    metadata = {
        **counts,
        "quarantine": dg.MetadataValue.md("| file | reason |\n|---|---|\n" + table) if quarantined else "none",
        "frames_per_clip": histogram_md([a.info["frames"] for a in batch.artifacts
                                         if a.kind == "source_clip"], bins=[5, 17, 33, 49, 65, 81, 82]),
    }
    return STAGE.finish(context, lineage.lineage(), batch, output_ids=clip_ids, summary=counts, metadata=metadata)
