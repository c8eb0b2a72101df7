"""`bench_samples` (per theme): the rows to evaluate, each a source video in the store with its prompt.

Three sources, in this order (a sample id seen twice keeps its first origin):

- our own `bench_split`: the pairs that passed stages 1-4 but failed the final filter; their source
  clip and mask are the pipeline's, the prompt is the pair's instruction;
- Sparkle-Bench folders (`bench.bench_dirs`, `sparkle bench --bench DIR`): the rows of
  `{theme}_bench.csv`, with `chosen_keyword` from `{theme}_metadata.jsonl` where present;
- OpenVE-Bench CSVs (`bench.openve_csvs`): the `background_change` rows, each assigned to the theme
  of its nearest taxonomy scene (`sparkle_bench.prompts.nearest_scene` over all themes).

An external sample's source video is ingested like any source (`core.ingest`: hashed, probed,
normalised to H.264 at 16 fps, 4k+1 frames up to 81, the first clip only; a bad file is quarantined
with its reason) and gets a BAIT foreground mask with the pipeline's own step (`core.steps`), since
the judges measure the subject. Each sample is a record-only `bench_sample` artifact (its prompt,
scene, motion intensity, origin) with lineage edges to its clip and mask; a sample without a usable
source or mask is kept on record as `dropped`, with the reason, and counted.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from sparkle_bench.prompts import SceneMatch, motion_intensity, nearest_scene, prompt_cues
from sparkle_bench.sparkle_format import ReleaseFormatError, read_bench, read_openve

from ..core.clipstep import ClipInput, run_clip_step
from ..core.config import ConfigError
from ..core.ingest import IngestJob, failed_ingest_row, ingest_rows, ingest_source
from ..core.lineage import ArtifactRow, LineageBatch
from ..core.readers import ROLES
from ..core.release import task_id
from ..core.resources import (ArtifactStoreResource, ClipExecutorResource, LineageResource, MaskBackendResource,
                              ThemesResource)
from ..core.source_hashes import hash_dir
from ..core.stage import Stage
from ..core.step_configs import ForegroundMasksConfig, SourceClipsConfig
from ..core.steps import MASKS_VERSION, PREVIEW, compute_foreground_mask
from ..core.store import artifact_id
from .resources import BenchResource

SAMPLES_VERSION = "bench_samples-1"
STAGE = Stage("bench_samples", SAMPLES_VERSION, reads=("bench_row",), per_theme=True, group="bench")


@dataclass
class Candidate:
    sample: str
    origin: str
    prompt: str
    path: str | None = None  # an external source video (None: a pipeline clip)
    keyword: str | None = None
    clip: dict | None = None  # the pipeline's rows, for bench_split samples
    mask: dict | None = None
    extra_edges: tuple = ()


def scene_for(candidate: Candidate, theme, match: SceneMatch | None) -> tuple[dict, dict]:
    """(the sample's scene, how it was chosen): its `chosen_keyword` when the theme has that scene,
    else the nearest scene."""
    for scene in theme.scenes:
        if candidate.keyword and scene.keyword == candidate.keyword:
            return scene.to_json(), {"by": "chosen_keyword"}
    match = match or nearest_scene(candidate.prompt, {theme.name: theme})
    return match.scene.to_json(), {"by": "nearest scene", "similarity": match.similarity, "shared": list(match.shared)}


def collect(db, theme_name: str, themes: dict, settings: dict, store) -> tuple[list[Candidate], dict[str, SceneMatch]]:
    """Every candidate sample of the partition, from the three sources."""
    found, matches = [], {}
    if settings["include_bench_split"]:
        clips, masks, instr = (ROLES[r].rows(db, theme_name) for r in ("clip", "mask", "instruction"))
        for row in db.current_artifacts("bench_split", theme_name, kind="bench_row"):
            cid = row["clip_id"]
            if cid in clips and cid in masks and cid in instr:
                record = json.loads(store.resolve(instr[cid]["uri"]).read_text())
                found.append(Candidate(task_id(theme_name, cid), "bench_split", record["instruction"],
                                       keyword=record["chosen_keyword"], clip=clips[cid], mask=masks[cid],
                                       extra_edges=((row["id"], "bench_row"),)))
    try:
        for folder in settings["bench_dirs"]:
            for r in read_bench(folder, [theme_name]) if (Path(folder) / f"{theme_name}_bench.csv").is_file() else []:
                found.append(Candidate(r.task, f"sparkle_bench:{folder}", r.prompt, str(r.original_video),
                                       keyword=r.metadata.get("chosen_keyword")))
        for csv_file in settings["openve_csvs"]:
            for r in read_openve(csv_file):
                match = nearest_scene(r.prompt, themes)
                if match.theme == theme_name:
                    matches[r.task] = match
                    found.append(Candidate(r.task, f"openve:{csv_file}", r.prompt, str(r.original_video)))
    except ReleaseFormatError as exc:
        raise ConfigError(str(exc)) from exc
    seen, unique = set(), []
    for c in found:
        if c.sample not in seen:
            seen.add(c.sample)
            unique.append(c)
    return unique, matches


@STAGE.asset(kinds={"video", "csv"},
             description="The bench samples of a theme (our bench_split, Sparkle-Bench folders, OpenVE-Bench's "
                         "background-change rows): source clips in the store with a foreground mask and a prompt.")
def bench_samples(context: dg.AssetExecutionContext, bench: BenchResource, themes: ThemesResource,
                  mask_backend: MaskBackendResource, artifact_store: ArtifactStoreResource, lineage: LineageResource,
                  clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    theme_name = context.partition_key
    settings = bench.settings()
    theme = themes.theme(theme_name)
    store, db = artifact_store.store(), lineage.lineage()
    candidates, matches = collect(db, theme_name, themes.load()[0], settings, store)
    batch, run_id, dropped = LineageBatch(), context.run_id, {}
    executor = clip_executor.executor()

    external = [c for c in candidates if c.path]
    ingest = SourceClipsConfig(max_clips_per_video=1).model_dump()
    hashes = str(hash_dir(artifact_store.home))
    jobs = [IngestJob(str(store.root), c.path, c.sample, c.origin, c.prompt, ingest, hashes) for c in external]
    for c, job, outcome in zip(external, jobs, executor.map(ingest_source, jobs)):
        if not outcome.ok:
            batch.artifacts.append(failed_ingest_row(job, outcome.error, "bench_samples", run_id, theme_name, theme_name,
                                                     cost=outcome.cost))
            dropped[c.sample] = f"ingest failed: {outcome.error}"
            continue
        rows, edges = ingest_rows(job, outcome.value, "bench_samples", run_id, theme_name, theme_name, cost=outcome.cost)
        batch.artifacts += rows
        batch.edges += edges
        if outcome.value.status != "ok":
            dropped[c.sample] = f"source quarantined: {outcome.value.record.info['reason']}"
            continue
        clip = outcome.value.clips[0]
        c.clip = {"id": clip.id, "uri": clip.uri, "info": clip.info, "content_hash": clip.content_hash}

    to_mask = [c for c in external if c.clip is not None]
    mask_params = {**ForegroundMasksConfig().model_dump(), "backend": mask_backend.settings()}
    masks = run_clip_step(store=store, clips=[ClipInput(c.sample, {"clip": c.clip}, {"fps": c.clip["info"]["fps"]})
                                              for c in to_mask],
                          fn=compute_foreground_mask, kind="foreground_mask", ext="npz", code_version=MASKS_VERSION,
                          params=mask_params, asset_key="bench_samples", run_id=run_id, partition=theme_name,
                          theme=theme_name, executor=executor, companions=[PREVIEW])
    batch.artifacts += masks.batch.artifacts
    batch.edges += masks.batch.edges
    dropped.update({sid: f"mask failed: {why}" for sid, why in masks.failures.items()})
    for c in to_mask:
        art = masks.artifacts.get(c.sample)
        if art is None:
            continue
        if art.info.get("drop_reason"):
            dropped[c.sample] = f"no usable foreground mask: {art.info['drop_reason']}"
        else:
            c.mask = {"id": art.id, "uri": art.uri}

    kept, table = [], []
    for c in candidates:
        if c.clip is None or c.mask is None:
            dropped.setdefault(c.sample, "no source clip or mask")
            continue
        scene, how = scene_for(c, theme, matches.get(c.sample))
        info = {"sample_id": c.sample, "origin": c.origin, "prompt": c.prompt, "edit_type": theme.edit_type,
                "theme": theme_name, "render": theme.render, "scene": scene,
                "chosen_keyword": f"{scene['subtheme']}: {scene['name']}", "scene_choice": how,
                "motion_intensity": motion_intensity(c.prompt), "motion": prompt_cues(c.prompt) or scene["motion"],
                "clip_artifact": c.clip["id"], "mask_artifact": c.mask["id"],
                "fps": c.clip["info"]["fps"], "frames": c.clip["info"]["frames"]}
        sid = artifact_id("bench_sample", {"clip": c.clip["id"], "mask": c.mask["id"]}, SAMPLES_VERSION,
                          {k: info[k] for k in ("sample_id", "origin", "prompt", "theme", "chosen_keyword")})
        batch.artifacts.append(ArtifactRow(id=sid, kind="bench_sample", asset_key="bench_samples", partition=theme_name,
                                           clip_id=c.sample, theme=theme_name, code_version=SAMPLES_VERSION,
                                           params={"origin": c.origin}, run_id=run_id, info=info))
        batch.edges += [(sid, c.clip["id"], "clip"), (sid, c.mask["id"], "mask")]
        batch.edges += [(sid, parent, role) for parent, role in c.extra_edges]
        kept.append(sid)
        table.append(f"| {c.sample} | {c.origin.split(':')[0]} | {info['chosen_keyword']} | "
                     f"{how.get('similarity', '-')} | {info['motion_intensity']} | {c.prompt[:80]} |")
    origins = {}
    for c in candidates:
        origins[c.origin.split(":")[0]] = origins.get(c.origin.split(":")[0], 0) + 1
    summary = {"candidates": len(candidates), "samples": len(kept), "dropped": len(dropped), "by_origin": origins,
               "masks_computed": masks.computed, "masks_reused": masks.reused}
    metadata = {**{k: v for k, v in summary.items() if k != "by_origin"}, "by_origin": dg.MetadataValue.json(origins),
                "dropped_samples": dg.MetadataValue.json(dropped),
                "samples_table": dg.MetadataValue.md("| sample | origin | scene | match | motion | prompt |\n"
                                                     "|---|---|---|---|---|---|\n" + "\n".join(table[:20]))}
    # dropped samples are kept on record with their reason
    for sample, why in dropped.items():
        batch.artifacts.append(ArtifactRow(id=artifact_id("bench_sample", {"sample": sample}, SAMPLES_VERSION,
                                                          {"theme": theme_name}),
                                           kind="bench_sample", asset_key="bench_samples", partition=theme_name,
                                           clip_id=sample, theme=theme_name, code_version=SAMPLES_VERSION,
                                           run_id=run_id, status="dropped", reason=why))
    return STAGE.finish(context, db, batch, output_ids=kept, summary=summary, metadata=metadata,
                        all_ids=[a.id for a in batch.artifacts])
