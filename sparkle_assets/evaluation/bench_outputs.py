"""`bench_outputs` (per theme): every system's edited video of every bench sample (see `systems`).

One `bench_output` artifact per (system, sample): an mp4 in the store, whose parents are the
sample's clip and the system, or a record-only row `missing` (a folder without that sample's file,
a pipeline step that failed on it) with the reason. Outputs are content-addressed, so a re-run
reuses all but what changed, and adding a system computes only that system's outputs (the metadata
counts computed / reused / missing per system). The pipeline's intermediate artifacts for external
samples (clean plate, instruction, edited frame, background video, guidance) are recorded here too.
"""

import dagster as dg

from sparkle_bench.sparkle_format import ReleaseFormatError, find_edited_output

from ..core.clipstep import ClipInput, run_clip_step
from ..core.lineage import ArtifactRow, LineageBatch
from ..core.readers import ROLES
from ..core.reports import pick_frames, sheet_metadata
from ..core.resources import (ArtifactStoreResource, ClipExecutorResource, EditBackendResource, FinalBackendResource,
                              LineageResource, VideoBackendResource, VlmResource)
from ..core.stage import Stage
from ..core.step_configs import EditedFirstFramesConfig, EditedVideosConfig, GuidanceVideosConfig
from ..core.store import artifact_id, file_sha256
from .resources import BenchResource
from .systems import (OUTPUT_VERSION, System, copy_output, copy_source, link_output, pipeline_chain, static_composite,
                      systems_for)

STAGE = Stage("bench_outputs", OUTPUT_VERSION, reads=("bench_sample",),
              by_products=("video", "plate", "editor_output"),  # editor_output: the asset systems (SYSTEM_ASSETS)
              per_theme=True, group="bench")


def chain_params(backends: dict) -> dict[str, dict]:
    """Each chain step's parameters: the stages' default configs and the configured backends."""
    return {"clean": {}, "instruction": {}, "edited": {"backend": backends["edit"],
                                                       "harmony": EditedFirstFramesConfig().harmony},
            "plate": {"backend": backends["edit"]}, "background": {"backend": backends["video"]},
            "guidance": GuidanceVideosConfig().model_dump(),
            "video": {"backend": backends["final"], **EditedVideosConfig().model_dump()}}


def sample_inputs(db, theme: str) -> list[dict]:
    """The partition's usable samples, each with its clip and mask rows and the pipeline's own
    edited video and plate (bench_split samples only)."""
    samples = db.current_artifacts("bench_samples", theme, kind="bench_sample")
    rows = db.artifacts_by_id([s["info"][k] for s in samples for k in ("clip_artifact", "mask_artifact")])
    videos, plates = ROLES["video"].rows(db, theme), ROLES["plate"].rows(db, theme)
    out = []
    for s in samples:
        info = s["info"]
        item = {"sample": info["sample_id"], "row": s, "clip": rows[info["clip_artifact"]],
                "mask": rows[info["mask_artifact"]]}
        if info["origin"] == "bench_split":
            cid = item["clip"]["clip_id"]
            item.update({k: v[cid] for k, v in (("video", videos), ("plate", plates)) if cid in v})
        else:
            item["instruction"] = {"sample": info["sample_id"], "theme": info["theme"], "edit_type": info["edit_type"],
                                   "render": info["render"], "scene": info["scene"], "motion": info["motion"],
                                   "seed": 0, "prompt": info["prompt"]}
        out.append(item)
    return out


def missing_row(system: System, item: dict, reason: str, run_id: str, theme: str) -> ArtifactRow:
    params = {"system": system.name, "sample": item["sample"]}
    return ArtifactRow(id=artifact_id("bench_output", {"clip": item["clip"]["id"], "system": system.id},
                                      OUTPUT_VERSION, {**params, "missing": reason}),
                       kind="bench_output", asset_key="bench_outputs", partition=theme, clip_id=item["sample"],
                       theme=theme, code_version=OUTPUT_VERSION, params=params, run_id=run_id, status="missing",
                       reason=reason)


def plan(system: System, items: list[dict], theme: str, db) -> tuple[object, list[ClipInput], dict[str, str]]:
    """(the output function, the samples it runs on, the samples with no output and why)."""
    fps = lambda it: it["clip"]["info"]["fps"]  # noqa: E731
    base = lambda it: {"system": system.name, "sample": it["sample"]}  # noqa: E731
    sys_row = {"id": system.id}
    clips, missing = [], {}
    if system.kind == "identity":
        return copy_source, [ClipInput(it["sample"], {"clip": it["clip"], "system": sys_row}, base(it))
                             for it in items], {}
    if system.kind == "static_composite":
        grade = EditedVideosConfig().model_dump()
        for it in items:
            if "plate" in it:
                clips.append(ClipInput(it["sample"], {"clip": it["clip"], "mask": it["mask"], "plate": it["plate"],
                                                      "system": sys_row}, {**base(it), **grade, "fps": fps(it),
                                                       "frames": it["clip"]["info"]["frames"]}))
            else:
                missing[it["sample"]] = it.get("failed", "the pipeline made no background plate for this sample")
        return static_composite, clips, missing
    if system.kind == "pipeline":
        for it in items:
            if "video" in it:
                clips.append(ClipInput(it["sample"], {"clip": it["clip"], "video": it["video"], "system": sys_row},
                                       base(it)))
            else:
                missing[it["sample"]] = it.get("failed", "the pipeline made no edited video for this sample")
        return link_output, clips, missing
    if system.kind == "asset":
        found = {r["clip_id"]: r for r in db.current_artifacts(system.params["asset"], theme, kind="bench_output")
                 if r["info"].get("system") == system.name}
        for it in items:
            if it["sample"] in found:
                clips.append(ClipInput(it["sample"], {"clip": it["clip"], "video": found[it["sample"]],
                                                      "system": sys_row}, base(it)))
            else:
                missing[it["sample"]] = f"{system.params['asset']} has no output for this sample"
        return link_output, clips, missing
    for it in items:  # a folder of an editing model's outputs
        try:
            path = find_edited_output(system.params["dir"], theme, it["sample"], it["row"]["info"]["chosen_keyword"])
        except ReleaseFormatError as exc:
            missing[it["sample"]] = str(exc)
            continue
        if path is None:
            missing[it["sample"]] = f"no {it['sample']}_edited.mp4 in {system.params['dir']}"
            continue
        clips.append(ClipInput(it["sample"], {"clip": it["clip"], "system": sys_row},
                               {**base(it), "file": str(path), "sha256": file_sha256(path)}))
    return copy_output, clips, missing


@STAGE.asset(kinds={"video"}, pool="gpu",
             description="Every system's edited video of every bench sample (identity, static composite, the pipeline, "
                         "model output folders); missing outputs recorded, not faked.")
def bench_outputs(context: dg.AssetExecutionContext, bench: BenchResource, edit_backend: EditBackendResource,
                  video_backend: VideoBackendResource, final_backend: FinalBackendResource, vlm: VlmResource,
                  artifact_store: ArtifactStoreResource, lineage: LineageResource,
                  clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    theme = context.partition_key
    settings = bench.settings()
    store, db, run_id = artifact_store.store(), lineage.lineage(), context.run_id
    executor = clip_executor.executor()
    items = sample_inputs(db, theme)
    systems = systems_for(settings, db, theme)
    batch = LineageBatch(artifacts=[s.row(run_id, theme, theme) for s in systems])

    external = [it for it in items if it["row"]["info"]["origin"] != "bench_split"]
    backends = {"edit": {**edit_backend.settings(), "vlm": vlm.settings()}, "video": video_backend.settings(),
                "final": final_backend.settings()}
    chain, chain_failed = pipeline_chain(external, store=store, params=chain_params(backends), executor=executor,
                                         run_id=run_id, theme=theme, batch=batch)
    for it in external:
        it.update({k: chain[it["sample"]][k] for k in ("video", "plate") if k in chain[it["sample"]]})
        if it["sample"] in chain_failed:
            it["failed"] = f"pipeline step failed: {chain_failed[it['sample']]}"

    counts, outputs, missing_all = {}, {}, {}
    for system in systems:
        fn, clips, missing = plan(system, items, theme, db)
        report = run_clip_step(store=store, clips=clips, fn=fn, kind="bench_output", ext="mp4",
                               code_version=OUTPUT_VERSION, params={}, asset_key="bench_outputs", run_id=run_id,
                               partition=theme, theme=theme, executor=executor)
        batch.artifacts += report.batch.artifacts
        batch.edges += report.batch.edges
        by_sample = {it["sample"]: it for it in items}
        for sample, why in missing.items():
            row = missing_row(system, by_sample[sample], why, run_id, theme)
            batch.artifacts.append(row)
            batch.edges += [(row.id, by_sample[sample]["clip"]["id"], "clip"), (row.id, system.id, "system")]
        counts[system.name] = {"outputs": len(report.artifacts), "computed": report.computed, "reused": report.reused,
                               "missing": len(missing), "failed": len(report.failures)}
        outputs[system.name] = report.artifacts
        missing_all.update({f"{system.name}/{s}": why for s, why in {**missing, **report.failures}.items()})

    table = "\n".join(f"| {name} | {c['outputs']} | {c['computed']} | {c['reused']} | {c['missing']} | {c['failed']} |"
                      for name, c in counts.items())
    metadata = {"samples": len(items), "systems": len(systems),
                "per_system": dg.MetadataValue.md("| system | outputs | computed | reused | missing | failed |\n"
                                                  "|---|---|---|---|---|---|\n" + table),
                "missing_or_failed": dg.MetadataValue.json(missing_all)}
    if items:
        sheet = {it["sample"]: {"clip": it["clip"], "label": it["row"]["info"]["chosen_keyword"]} for it in items}
        columns = [("source", lambda c: _mid_frame(store.resolve(c["clip"]["uri"]), c))]
        for name, arts in outputs.items():
            columns.append((name, lambda c, arts=arts: _mid_frame(store.path_of(arts[c["sample"]]), c)
                            if c["sample"] in arts else None))
        for sample in sheet:
            sheet[sample]["sample"] = sample
            sheet[sample]["shows"] = [sheet[sample]["clip"]["id"]] + [
                arts[sample].id if sample in arts else None for arts in outputs.values()]
        metadata.update(sheet_metadata(artifact_store.home, theme, "bench_outputs", sheet, columns, tile_width=200))
    output_ids = [a.id for arts in outputs.values() for a in arts.values()]
    return STAGE.finish(context, db, batch, output_ids=output_ids,
                        summary={"samples": len(items), "per_system": counts}, metadata=metadata)


def _mid_frame(path, clip: dict):
    return pick_frames(path, [clip["clip"]["info"]["frames"] // 2])[0]

