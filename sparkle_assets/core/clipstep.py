"""The shape every per-clip stage shares: look up, compute what is missing, record lineage.

A stage supplies a per-clip function ``fn(out_path, input_paths, params) -> info`` (``out_path`` is
a temporary path to write the payload to, or None for record-only artifacts) and the clips with
their parent artifacts. `run_clip_step` then:

1. derives each clip's artifact id from (kind, parent ids, code version, params);
2. reuses every artifact that already exists and verifies in the store;
3. maps the function over the rest through the configured executor (one failure = one failed row);
4. returns the lineage rows and edges plus counts, for the asset to record and report.

Every artifact computed here carries the `Cost` its executor measured (failed ones too; a clip over
the step's time limit is a failed row `timed out after N s` costing the wall time it held its
worker); a computation that also writes companions splits its cost evenly among the artifacts it
wrote (`ArtifactRow.share`). Reused artifacts carry no cost: their recorded one stays.

Two refinements keep work from being done twice:

- *by-products*: stored files a function reads that are fully determined by its parents (frame 0
  of the clip as PNG, the scene layer behind an edited frame). They are passed as input paths and
  recorded as lineage edges, but are not part of the artifact id, since the parents already fix them.
- *companions*: extra artifacts the same computation writes (a mask's preview video, an edited
  frame's background layer). The function then gets a fourth argument, ``{kind: temporary path}``,
  and returns each companion's info under ``info["companions"][kind]``. A companion's id is
  ``artifact_id(kind, {its roles of the main inputs..., main_role: main id}, its code version, the
  clip's own params)`` (without the main id when `main_role` is None); an artifact is reused only
  when it and all its companions verify.

Nothing here imports Dagster.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .costs import backend_of, split_cost, step_clock
from .executor import ClipExecutor, InProcessExecutor
from .lineage import UNPARTITIONED, ArtifactRow, LineageBatch
from .store import ArtifactStore, StoredArtifact, artifact_id

ClipFn = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class ClipInput:
    """One clip to process: its id, its parent artifacts by role (rows of `artifact`), the stored
    by-products it reads, and per-clip parameters."""

    clip_id: str
    parents: Mapping[str, Mapping[str, Any]]
    params: Mapping[str, Any] = field(default_factory=dict)
    by_products: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Companion:
    """An extra artifact written by the same per-clip computation as the main one."""

    kind: str
    ext: str
    code_version: str
    main_role: str | None  # the role under which the main artifact is its parent (None: it is not)
    roles: tuple[str, ...] = ()  # the main artifact's parent roles it also derives from


@dataclass(frozen=True)
class Output:
    """One artifact a job writes: its kind, id, payload extension (None: record-only) and provenance."""

    kind: str
    aid: str
    ext: str | None
    code_version: str
    params: dict
    inputs: dict

    def commit(self, store: ArtifactStore, info: dict) -> StoredArtifact:
        return store.commit(self.kind, self.aid, code_version=self.code_version, params=self.params,
                            inputs=self.inputs, info=info, ext=self.ext)


@dataclass(frozen=True)
class ClipJob:
    """One unit of work, picklable so any executor can run it."""

    fn: ClipFn
    store_root: str
    main: Output
    input_paths: dict
    companions: tuple[Output, ...] = ()


@dataclass(frozen=True)
class JobResult:
    artifact: StoredArtifact
    companions: dict[str, StoredArtifact] = field(default_factory=dict)


def run_job(job: ClipJob) -> JobResult:
    store = ArtifactStore(job.store_root)
    paths = {role: Path(p) for role, p in job.input_paths.items()}
    main = job.main
    with contextlib.ExitStack() as stack:
        extra = {c.kind: stack.enter_context(store.writing(c.kind, c.aid, c.ext)) for c in job.companions}
        out = stack.enter_context(store.writing(main.kind, main.aid, main.ext)) if main.ext else None
        info = job.fn(out, paths, main.params, extra) if job.companions else job.fn(out, paths, main.params)
    # the payloads are in place; sidecars (commits) are written last, companions before the main one
    extra_info = info.pop("companions", {}) if job.companions else {}
    companions = {c.kind: c.commit(store, extra_info.get(c.kind, {})) for c in job.companions}
    return JobResult(main.commit(store, info), companions)


@dataclass
class StepReport:
    """What one step did: artifacts by clip, failures, counts, and the lineage to record."""

    artifacts: dict[str, StoredArtifact] = field(default_factory=dict)  # clip_id -> artifact
    companions: dict[str, dict[str, StoredArtifact]] = field(default_factory=dict)  # kind -> clip_id -> artifact
    failures: dict[str, str] = field(default_factory=dict)  # clip_id -> reason
    computed: int = 0
    reused: int = 0
    batch: LineageBatch = field(default_factory=LineageBatch)

    @property
    def counts(self) -> dict[str, int]:
        return {"clips": len(self.artifacts) + len(self.failures), "computed": self.computed,
                "reused": self.reused, "failed": len(self.failures),
                "timed_out": sum(r.startswith("timed out after") for r in self.failures.values())}


def data_version_of(ids: Sequence[str]) -> str:
    """A partition's data version: the hash of its sorted artifact ids."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def _companion_outs(companions: Sequence[Companion], aid: str, inputs: dict, clip_params: dict) -> tuple[Output, ...]:
    outs = []
    for c in companions:
        c_inputs = {r: inputs[r] for r in c.roles}
        if c.main_role is not None:
            c_inputs[c.main_role] = aid
        outs.append(Output(c.kind, artifact_id(c.kind, c_inputs, c.code_version, clip_params), c.ext, c.code_version,
                         dict(clip_params), c_inputs))
    return tuple(outs)


def run_clip_step(*, store: ArtifactStore, clips: Sequence[ClipInput], fn: ClipFn, kind: str,
                  ext: str | None, code_version: str, params: Mapping[str, Any], asset_key: str,
                  run_id: str, partition: str = UNPARTITIONED, theme: str | None = None,
                  executor: ClipExecutor | None = None, companions: Sequence[Companion] = (),
                  timeout: float | None = None) -> StepReport:
    executor = executor or InProcessExecutor()
    backend = backend_of(params)
    report = StepReport(companions={c.kind: {} for c in companions})
    jobs: list[tuple[ClipInput, ClipJob]] = []

    def record(clip: ClipInput, art: StoredArtifact, extra: Mapping[str, StoredArtifact], fresh: bool,
               cost=None) -> None:
        report.artifacts[clip.clip_id] = art
        made = [art, *extra.values()]
        for a in made:
            row = _row(a, clip.clip_id, asset_key, partition, theme, run_id, fresh)
            if cost is not None:
                row.cost, row.backend, row.share = split_cost(cost, len(made)), backend, 1 / len(made)
            report.batch.artifacts.append(row)
            report.batch.edges.extend((a.id, pid, role) for role, pid in a.inputs.items())
        report.batch.edges.extend((art.id, row["id"], role) for role, row in clip.by_products.items())
        for k, a in extra.items():
            report.companions[k][clip.clip_id] = a

    for clip in clips:
        all_params = {**params, **clip.params}
        inputs = {role: p["id"] for role, p in clip.parents.items()}
        aid = artifact_id(kind, inputs, code_version, all_params)
        outs = _companion_outs(companions, aid, inputs, dict(clip.params))
        found = store.lookup(kind, aid)
        extra = {o.kind: store.lookup(o.kind, o.aid) for o in outs}
        if found is not None and all(extra.values()):
            report.reused += 1
            record(clip, found, extra, fresh=False)
            continue
        rows = {**clip.parents, **clip.by_products}
        input_paths = {role: str(store.resolve(p["uri"])) for role, p in rows.items() if p.get("uri")}
        main = Output(kind, aid, ext, code_version, all_params, inputs)
        jobs.append((clip, ClipJob(fn=fn, store_root=str(store.root), main=main, input_paths=input_paths,
                                   companions=outs)))
    with step_clock().mapping():
        outcomes = executor.map(run_job, [job for _, job in jobs], timeout=timeout)
    for (clip, job), outcome in zip(jobs, outcomes):
        if outcome.ok:
            report.computed += 1
            record(clip, outcome.value.artifact, outcome.value.companions, fresh=True, cost=outcome.cost)
        else:
            report.failures[clip.clip_id] = outcome.error
            report.batch.edges.extend((job.main.aid, pid, role) for role, pid in job.main.inputs.items())
            report.batch.artifacts.append(ArtifactRow(
                id=job.main.aid, kind=kind, asset_key=asset_key, partition=partition, clip_id=clip.clip_id,
                theme=theme, code_version=code_version, params=job.main.params, run_id=run_id,
                status="failed", reason=outcome.error, cost=outcome.cost, backend=backend))
    return report


def _row(art: StoredArtifact, clip_id: str, asset_key: str, partition: str, theme: str | None,
         run_id: str, fresh: bool) -> ArtifactRow:
    return ArtifactRow(id=art.id, kind=art.kind, asset_key=asset_key, partition=partition,
                       clip_id=clip_id, theme=theme, uri=art.uri, bytes=art.bytes,
                       content_hash=art.content_hash, code_version=art.code_version,
                       params=art.params, run_id=run_id, info=art.info, fresh=fresh)
