"""The shape every per-clip stage shares: look up, compute what is missing, record lineage.

A stage supplies a per-clip function ``fn(out_path, input_paths, params) -> info`` (``out_path`` is
a temporary path to write the payload to, or None for record-only artifacts) and the clips with
their parent artifacts. `run_clip_step` then:

1. derives each clip's artifact id from (kind, parent ids, code version, params);
2. reuses every artifact that already exists and verifies in the store;
3. maps the function over the rest through the configured executor (one failure = one failed row);
4. returns the lineage rows and edges plus counts, for the asset to record and report.

Nothing here imports Dagster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .executor import ClipExecutor, InProcessExecutor
from .lineage import UNPARTITIONED, ArtifactRow, LineageBatch
from .store import ArtifactStore, StoredArtifact, artifact_id

ClipFn = Callable[[Path | None, dict[str, Path], dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class ClipInput:
    """One clip to process: its id and its parent artifacts by role (rows of `artifact`)."""

    clip_id: str
    parents: Mapping[str, Mapping[str, Any]]
    params: Mapping[str, Any] = field(default_factory=dict)  # per-clip parameters, if any


@dataclass(frozen=True)
class ClipJob:
    """One unit of work, picklable so any executor can run it."""

    fn: ClipFn
    store_root: str
    kind: str
    aid: str
    ext: str | None
    code_version: str
    params: dict
    inputs: dict
    input_paths: dict


def run_job(job: ClipJob) -> StoredArtifact:
    store = ArtifactStore(job.store_root)
    paths = {role: Path(p) for role, p in job.input_paths.items()}
    if job.ext:
        with store.writing(job.kind, job.aid, job.ext) as tmp:
            info = job.fn(tmp, paths, job.params)
    else:
        info = job.fn(None, paths, job.params)
    return store.commit(job.kind, job.aid, code_version=job.code_version, params=job.params,
                        inputs=job.inputs, info=info, ext=job.ext)


@dataclass
class StepReport:
    """What one step did: artifacts by clip, failures, counts, and the lineage to record."""

    artifacts: dict[str, StoredArtifact] = field(default_factory=dict)  # clip_id -> artifact
    failures: dict[str, str] = field(default_factory=dict)  # clip_id -> reason
    computed: int = 0
    reused: int = 0
    batch: LineageBatch = field(default_factory=LineageBatch)

    @property
    def counts(self) -> dict[str, int]:
        return {"clips": len(self.artifacts) + len(self.failures), "computed": self.computed,
                "reused": self.reused, "failed": len(self.failures)}


def data_version_of(ids: Sequence[str]) -> str:
    """A partition's data version: the hash of its sorted artifact ids."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def run_clip_step(*, store: ArtifactStore, clips: Sequence[ClipInput], fn: ClipFn, kind: str,
                  ext: str | None, code_version: str, params: Mapping[str, Any], asset_key: str,
                  run_id: str, partition: str = UNPARTITIONED, theme: str | None = None,
                  executor: ClipExecutor | None = None) -> StepReport:
    executor = executor or InProcessExecutor()
    report = StepReport()
    jobs: list[tuple[ClipInput, ClipJob]] = []
    for clip in clips:
        all_params = {**params, **clip.params}
        inputs = {role: p["id"] for role, p in clip.parents.items()}
        aid = artifact_id(kind, inputs, code_version, all_params)
        found = store.lookup(kind, aid)
        if found is not None:
            report.reused += 1
            report.artifacts[clip.clip_id] = found
            report.batch.artifacts.append(_row(found, clip.clip_id, asset_key, partition, theme,
                                               run_id, fresh=False))
            report.batch.edges.extend((aid, pid, role) for role, pid in inputs.items())
            continue
        input_paths = {role: str(store.resolve(p["uri"])) for role, p in clip.parents.items() if p.get("uri")}
        jobs.append((clip, ClipJob(fn=fn, store_root=str(store.root), kind=kind, aid=aid, ext=ext,
                                   code_version=code_version, params=all_params, inputs=inputs,
                                   input_paths=input_paths)))
    outcomes = executor.map(run_job, [job for _, job in jobs])
    for (clip, job), outcome in zip(jobs, outcomes):
        report.batch.edges.extend((job.aid, pid, role) for role, pid in job.inputs.items())
        if outcome.ok:
            report.computed += 1
            report.artifacts[clip.clip_id] = outcome.value
            report.batch.artifacts.append(_row(outcome.value, clip.clip_id, asset_key, partition,
                                               theme, run_id, fresh=True))
        else:
            report.failures[clip.clip_id] = outcome.error
            report.batch.artifacts.append(ArtifactRow(
                id=job.aid, kind=kind, asset_key=asset_key, partition=partition, clip_id=clip.clip_id,
                theme=theme, code_version=code_version, params=job.params, run_id=run_id,
                status="failed", reason=outcome.error))
    return report


def _row(art: StoredArtifact, clip_id: str, asset_key: str, partition: str, theme: str | None,
         run_id: str, fresh: bool) -> ArtifactRow:
    return ArtifactRow(id=art.id, kind=art.kind, asset_key=asset_key, partition=partition,
                       clip_id=clip_id, theme=theme, uri=art.uri, bytes=art.bytes,
                       content_hash=art.content_hash, code_version=art.code_version,
                       params=art.params, run_id=run_id, info=art.info, fresh=fresh)
