"""`bench_judgments` (per theme): every bench output judged on Sparkle-Bench's six dimensions.

One judge per run (`bench_judge.judge`): `automatic` (`sparkle_bench.automatic_judge`, in the
clip executor's worker processes) or `vlm` (`sparkle_bench.vlm_judge`, at most
`bench_judge.concurrency` requests in flight, in threads). A judgment is a record-only
`bench_judgment` artifact whose id is the hash of (the judge, the rubric, the prompt, the source's
and the output's bytes): it holds the six capped scores, the raw reply (VLM) or the measured
signals (automatic), the judge model and the rubric hash, and it is reused whenever the same
judge meets the same prompt and bytes again, so re-running, or adding a system, sends work only for
new outputs. A reply that never parsed is recorded as a final failure (reused, not re-asked); an
endpoint that could not be reached is recorded as failed and tried again on the next run. Never a
default score. Scores are also rows of DuckDB's `score` table (`bench_<dimension>`,
`bench_overall`); lineage edges lead to the output (and from it to the system and the source).
"""

import re
from dataclasses import dataclass

import dagster as dg
import numpy as np

from sparkle_bench.automatic_judge import JUDGE_VERSION as AUTOMATIC_VERSION
from sparkle_bench.automatic_judge import judge_videos
from sparkle_bench.metrics import IqaModels
from sparkle_bench.rubric import DIMENSIONS, RUBRIC_HASH, SHORT
from sparkle_bench.vlm_judge import VlmJudge
from sparkle_model import backends
from sparkle_model.masks import load_mask_npz
from sparkle_model.video import read_video

from ..core.config import ConfigError
from ..core.executor import ThreadPoolExecutor
from ..core.lineage import ArtifactRow, LineageBatch
from ..core.resources import (ArtifactStoreResource, ClipExecutorResource, LineageResource, MetricModelsResource,
                              VlmResource)
from ..core.stage import Stage
from ..core.store import artifact_id
from .resources import BenchJudgeResource

JUDGMENTS_VERSION = "bench_judgments-1"
STAGE = Stage("bench_judgments", JUDGMENTS_VERSION, reads=("bench_output",), per_theme=True, group="bench")


def judge_identity(settings: dict, vlm: dict, models: dict) -> dict:
    """What a judgment depends on besides the prompt and the videos' bytes."""
    if settings["judge"] == "automatic":
        return {"judge": "automatic", "version": AUTOMATIC_VERSION, "clip_dir": models["clip_dir"]}
    if vlm["name"] == "none":
        raise ConfigError("bench_judge.judge is 'vlm' but vlm.backend is 'none' (set SPARKLE_VLM_BACKEND)")
    model = vlm.get("model") or vlm.get("model_dir")
    return VlmJudge(None, model, settings["media"], settings["frames"], settings["parse_retries"]).identity()


def judge_name(identity: dict) -> str:
    """The judge's name in result files: `automatic`, or the VLM model (its folder name for a local model)."""
    name = identity.get("model") or identity["judge"]
    return re.sub(r"[^A-Za-z0-9.\-]+", "-", name.rstrip("/").split("/")[-1]).strip("-") or "vlm"


@dataclass(frozen=True)
class JudgeJob:
    judgment: str
    identity: dict
    settings: dict
    vlm: dict
    models: dict
    prompt: str
    source: str
    output: str
    mask: str
    fps: float


def judge_one(job: JudgeJob) -> dict:
    """Judge one output (runs in an executor worker)."""
    if job.identity["judge"] == "automatic":
        result = judge_videos(read_video(job.source), read_video(job.output), load_mask_npz(job.mask), job.fps,
                              job.prompt, models=IqaModels(**job.models))
        return {"status": "ok", "attempts": 0, **result}
    judge = VlmJudge(backends.vlm(job.vlm), job.identity["model"], job.settings["media"], job.settings["frames"],
                     job.settings["parse_retries"])
    return judge.judge(job.prompt, job.source, job.output)


@STAGE.asset(kinds={"duckdb"},
             description="Every bench output judged on the six Sparkle-Bench dimensions (automatic or VLM judge); "
                         "judgments cached by (judge, rubric, prompt, source and output bytes).")
def bench_judgments(context: dg.AssetExecutionContext, bench_judge: BenchJudgeResource, vlm: VlmResource,
                    metric_models: MetricModelsResource, artifact_store: ArtifactStoreResource,
                    lineage: LineageResource, clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    theme = context.partition_key
    settings, vlm_settings, models = bench_judge.settings(), vlm.settings(), metric_models.settings()
    identity = judge_identity(settings, vlm_settings, models)
    store, db, run_id = artifact_store.store(), lineage.lineage(), context.run_id
    samples = {s["clip_id"]: s for s in db.current_artifacts("bench_samples", theme, kind="bench_sample")}
    outputs = [o for o in db.current_artifacts("bench_outputs", theme, status="ok", kind="bench_output")
               if o["clip_id"] in samples]
    sources = db.artifacts_by_id([s["info"]["clip_artifact"] for s in samples.values()])
    masks = db.artifacts_by_id([s["info"]["mask_artifact"] for s in samples.values()])

    jobs, by_output = [], {}
    for o in outputs:
        sample = samples[o["clip_id"]]
        info, src = sample["info"], sources[sample["info"]["clip_artifact"]]
        jid = artifact_id("bench_judgment", {"source": src["content_hash"], "output": o["content_hash"]},
                          JUDGMENTS_VERSION, {**identity, "prompt": info["prompt"]})
        by_output[o["id"]] = jid
        jobs.append(JudgeJob(jid, identity, settings, vlm_settings, models, info["prompt"],
                             str(store.resolve(src["uri"])), str(store.resolve(o["uri"])),
                             str(store.resolve(masks[info["mask_artifact"]]["uri"])), float(info["fps"])))
    known = db.artifacts_by_id(list(by_output.values()))
    reusable = {jid for jid, r in known.items() if r["status"] == "ok" or r["info"].get("final")}
    todo = list({j.judgment: j for j in jobs if j.judgment not in reusable}.values())
    executor = (ThreadPoolExecutor(settings["concurrency"]) if identity["judge"] == "vlm"
                else clip_executor.executor())
    results = dict(zip([j.judgment for j in todo], executor.map(judge_one, todo)))

    batch, fresh_rows = LineageBatch(), {}
    for job in todo:
        outcome = results[job.judgment]
        base = {"judge": identity, "judge_name": judge_name(identity), "rubric_hash": RUBRIC_HASH, "prompt": job.prompt}
        if not outcome.ok:
            info, status, reason = {**base, "final": False, "error": outcome.error}, "failed", outcome.error
        elif outcome.value["status"] != "ok":
            value = outcome.value
            info = {**base, **value, "final": True}
            status, reason = "failed", f"the judge's reply did not parse after {value['attempts']} tries"
        else:
            info, status, reason = {**base, **outcome.value, "final": True}, "ok", None
        fresh_rows[job.judgment] = (status, reason, info)
    per_system: dict[str, dict] = {}
    seen = set()
    for o in outputs:
        jid, system = by_output[o["id"]], o["params"]["system"]
        cell = per_system.setdefault(system, {"judged": 0, "reused": 0, "failed": 0, "requests": 0, "overall": []})
        status, reason, info = fresh_rows[jid] if jid in fresh_rows else \
            (known[jid]["status"], known[jid]["reason"], known[jid]["info"])
        if jid in fresh_rows and jid not in seen:  # judged in this run (an identical video later is reused)
            cell["judged"] += 1
            cell["requests"] += info.get("attempts", 0) or 0
        else:
            cell["reused"] += 1
        if jid not in seen:
            seen.add(jid)
            batch.artifacts.append(ArtifactRow(
                id=jid, kind="bench_judgment", asset_key="bench_judgments", partition=theme, clip_id=o["clip_id"],
                theme=theme, code_version=JUDGMENTS_VERSION, params={**identity, "prompt": info.get("prompt")},
                run_id=run_id, status=status, reason=reason, info=info, fresh=jid in fresh_rows))
            if status == "ok":
                batch.scores += [(jid, f"bench_{d}", float(v)) for d, v in zip(DIMENSIONS, info["scores"])]
                batch.scores.append((jid, "bench_overall", float(np.mean(info["scores"]))))
        batch.edges += [(jid, o["id"], "output"), (jid, samples[o["clip_id"]]["id"], "sample")]
        if status == "ok":
            cell["overall"].append(float(np.mean(info["scores"])))
        else:
            cell["failed"] += 1

    table = "\n".join(f"| {name} | {c['judged']} | {c['reused']} | {c['failed']} | {c['requests']} | "
                      f"{np.mean(c['overall']):.2f} |" if c["overall"] else
                      f"| {name} | {c['judged']} | {c['reused']} | {c['failed']} | {c['requests']} | - |"
                      for name, c in per_system.items())
    unmeasured = sorted({u for _, _, i in fresh_rows.values() for u in i.get("unmeasured", [])}
                        | {u for r in known.values() for u in r["info"].get("unmeasured", [])})
    summary = {"outputs": len(outputs), "judged": len(todo), "reused": len(outputs) - sum(c["judged"] for c in
                                                                                         per_system.values()),
               "failed": sum(c["failed"] for c in per_system.values()),
               "requests": sum(c["requests"] for c in per_system.values()), "judge": judge_name(identity),
               "per_system": {k: {kk: vv for kk, vv in v.items() if kk != "overall"} for k, v in per_system.items()}}
    metadata = {k: summary[k] for k in ("outputs", "judged", "reused", "failed", "requests", "judge")}
    metadata.update({
        "dimensions": dg.MetadataValue.md(" ".join(f"{SHORT[d]} = {d}" for d in DIMENSIONS)),
        "per_system": dg.MetadataValue.md("| system | judged now | reused | failed | requests | mean overall |\n"
                                          "|---|---|---|---|---|---|\n" + table),
        "not_measured": dg.MetadataValue.json(unmeasured), "judge_identity": dg.MetadataValue.json(identity)})
    return STAGE.finish(context, db, batch, output_ids=sorted(seen), summary=summary, metadata=metadata)
