"""What artifacts cost: recording the compute behind each one, and what a pair cost in full.

Recording (table ``artifact_cost`` of the lineage, one row per artifact id, written by the run that
computed it):

- an artifact computed by a per-clip function carries the `Cost` its executor measured around that
  function where it ran (``measured = 'clip'``): wall and CPU seconds, the worker's peak memory,
  the device, and on a GPU the GPU seconds and peak GPU memory, with the stage's backend. One
  computation that writes several artifacts (a mask and its preview) splits its cost evenly among
  them (``share``); a failed clip is charged what it used, a timed-out one the wall time it held
  its worker;
- an artifact a step makes in its own process (a filter decision, an export row) gets an even
  share of the step's own time, i.e. the step's wall and CPU time outside its per-clip map
  (``measured = 'step'``, see `StepClock`);
- a reused artifact costs nothing in the run that reused it: its recorded row stays, and the step's
  summary says how much compute reuse saved (the recorded cost of the artifacts it reused).

The full cost of an artifact (`full_costs`, `sparkle lineage cost ID`) follows its lineage: every
artifact passes its full cost (its own plus what it received) on to its children in equal parts,
one part per distinct child in the lineage. So an ancestor shared by k children (a clip's masks
serving every theme, a source file cut into several clips) gives 1/k of its full cost to each; an
artifact's full cost is its own plus the parts it receives. Equivalently, an ancestor ``a`` of
``x`` contributes ``own(a) * w(a)``, where ``w(a)`` sums, over every path from ``a`` down to ``x``,
the product of ``1 / children(p)`` over the artifacts ``p`` the path leaves from. Children are
counted over the whole lineage (every artifact recorded as derived from it, in any run), and an
artifact with no recorded cost (made before costs were recorded) contributes 0 and is counted in
``unrecorded``.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .executor import Cost, cpu_seconds

METRICS = ("wall_s", "cpu_s", "gpu_s")


def backend_of(params: Mapping[str, Any]) -> str | None:
    """The backend named in a step's parameters (`{"backend": "name" | {"name": ...}}`), if any."""
    backend = params.get("backend")
    if isinstance(backend, Mapping):
        backend = backend.get("name")
    return backend if isinstance(backend, str) else None


def split_cost(cost: Cost, n: int) -> Cost:
    """One of `n` equal parts of a cost (memory peaks are not split: each part had the same worker)."""
    if n == 1:
        return cost
    part = lambda v: None if v is None else round(v / n, 6)  # noqa: E731
    return Cost(wall_s=part(cost.wall_s), cpu_s=part(cost.cpu_s), peak_rss_mb=cost.peak_rss_mb, device=cost.device,
                gpu_s=part(cost.gpu_s), gpu_peak_mb=cost.gpu_peak_mb)


class StepClock:
    """The wall and CPU time of one step's own process, less the time it spent waiting on its
    per-clip maps (their clips are measured where they ran)."""

    def __init__(self) -> None:
        self.started = (time.perf_counter(), cpu_seconds())
        self.in_maps = [0.0, 0.0]

    @contextlib.contextmanager
    def mapping(self) -> Iterator[None]:
        wall, cpu = time.perf_counter(), cpu_seconds()
        try:
            yield
        finally:
            self.in_maps[0] += time.perf_counter() - wall
            self.in_maps[1] += cpu_seconds() - cpu

    def own(self) -> tuple[float, float]:
        wall = time.perf_counter() - self.started[0] - self.in_maps[0]
        cpu = cpu_seconds() - self.started[1] - self.in_maps[1]
        return max(0.0, wall), max(0.0, cpu)

    @contextlib.contextmanager
    def running(self) -> Iterator[StepClock]:
        token = _CLOCK.set(self)
        try:
            yield self
        finally:
            _CLOCK.reset(token)


_CLOCK: contextvars.ContextVar[StepClock | None] = contextvars.ContextVar("sparkle_step_clock", default=None)


def step_clock() -> StepClock:
    """The clock of the step running in this context (a new one when none is: it then starts now)."""
    return _CLOCK.get() or StepClock()


def record_step_costs(db, batch) -> dict[str, float | int]:
    """Give the step's own share of time to the fresh artifacts of `batch` no per-clip function
    measured, and return the step's accounting: compute spent in this run (wall, CPU and GPU
    seconds of its fresh artifacts), compute reuse saved (the recorded cost of the artifacts it
    reused), and how many clips timed out."""
    unmeasured = [a for a in batch.artifacts if a.fresh and a.cost is None]
    if unmeasured:
        wall, cpu = step_clock().own()
        share = split_cost(Cost(wall_s=round(wall, 6), cpu_s=round(cpu, 6), peak_rss_mb=None), len(unmeasured))
        for row in unmeasured:
            row.cost, row.measured, row.share = share, "step", 1 / len(unmeasured)
    fresh = {a.id: a.cost for a in batch.artifacts if a.fresh and a.cost is not None}
    reused = sorted({a.id for a in batch.artifacts if not a.fresh} - set(fresh))
    saved = {"wall_s": 0.0, "cpu_s": 0.0}
    if reused:
        row = db.query("SELECT sum(wall_s) AS wall_s, sum(cpu_s) AS cpu_s FROM artifact_cost "
                       "WHERE artifact_id IN (SELECT unnest(?::VARCHAR[]))", [reused])[0]
        saved = {k: row[k] or 0.0 for k in saved}
    total = lambda name: round(sum(getattr(c, name) or 0.0 for c in fresh.values()), 3)  # noqa: E731
    return {"compute_wall_s": total("wall_s"), "compute_cpu_s": total("cpu_s"), "compute_gpu_s": total("gpu_s"),
            "reuse_saved_wall_s": round(saved["wall_s"], 3), "reuse_saved_cpu_s": round(saved["cpu_s"], 3),
            "timed_out": sum(a.status == "failed" and (a.reason or "").startswith("timed out after")
                             for a in batch.artifacts)}


@dataclass
class FullCost:
    """One artifact's full cost (see the module docstring): totals per metric, the same split by the
    stage (asset) whose artifacts it came from, and how many ancestors had no recorded cost."""

    id: str
    kind: str
    total: dict[str, float] = field(default_factory=dict)
    by_stage: dict[str, dict[str, float]] = field(default_factory=dict)
    own: dict[str, float] = field(default_factory=dict)
    ancestors: int = 0
    unrecorded: int = 0

    def as_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "total": self.total, "own": self.own, "by_stage": self.by_stage,
                "ancestors": self.ancestors, "unrecorded": self.unrecorded}


def _parents(db, ids: Sequence[str]) -> dict[str, list[str]]:
    """child -> its distinct parents, for `ids` and every artifact upwards of them (one recursive query)."""
    parents: dict[str, list[str]] = {i: [] for i in ids}
    for r in db.query("""
            WITH RECURSIVE up(id) AS (
                SELECT unnest(?::VARCHAR[])
                UNION SELECT e.parent_id FROM artifact_edge e JOIN up ON e.child_id = up.id)
            SELECT DISTINCT e.child_id, e.parent_id FROM artifact_edge e JOIN up ON e.child_id = up.id
            ORDER BY 1, 2""", [sorted(set(ids))]):
        parents.setdefault(r["child_id"], []).append(r["parent_id"])
        parents.setdefault(r["parent_id"], [])
    return parents


def full_costs(db, ids: Sequence[str]) -> dict[str, FullCost]:
    """The full cost of each artifact id (see the module docstring); KeyError for an unknown id."""
    with db.session():
        parents = _parents(db, ids)
        nodes = sorted(parents)
        rows = {r["id"]: r for r in db.query(
            "SELECT a.id, a.kind, a.asset_key, c.wall_s, c.cpu_s, c.gpu_s, c.artifact_id IS NOT NULL AS recorded "
            "FROM artifact a LEFT JOIN artifact_cost c ON c.artifact_id = a.id "
            "WHERE a.id IN (SELECT unnest(?::VARCHAR[]))", [nodes])}
        children = {r["parent_id"]: r["n"] for r in db.query(
            "SELECT parent_id, count(DISTINCT child_id) AS n FROM artifact_edge "
            "WHERE parent_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY parent_id", [nodes])}
    missing = [i for i in ids if i not in rows]
    if missing:
        raise KeyError(f"no artifact {missing[0]!r} in the lineage")
    out = {}
    for root in ids:
        weight = _weights(root, parents, children)
        fc = FullCost(root, rows[root]["kind"], total={m: 0.0 for m in METRICS}, ancestors=len(weight) - 1)
        for node, w in weight.items():
            row = rows.get(node)
            if row is None or not row["recorded"]:
                fc.unrecorded += 1
                continue
            stage = fc.by_stage.setdefault(row["asset_key"], {m: 0.0 for m in METRICS})
            for m in METRICS:
                part = (row[m] or 0.0) * w
                stage[m] += part
                fc.total[m] += part
                if node == root:
                    fc.own[m] = row[m] or 0.0
        fc.total = {m: round(v, 4) for m, v in fc.total.items()}
        fc.by_stage = {k: {m: round(v, 4) for m, v in s.items()} for k, s in sorted(fc.by_stage.items())}
        out[root] = fc
    return out


def _weights(root: str, parents: Mapping[str, Sequence[str]], children: Mapping[str, int]) -> dict[str, float]:
    """w(a) for the root and every ancestor: 1 for the root; for a parent, the sum over its children
    c in the root's ancestry of w(c) / children(parent). Children are settled before their parents
    (reverse post-order of a depth-first walk along parent edges)."""
    order, done, stack = [], set(), [(root, iter(parents.get(root, ())))]
    done.add(root)
    while stack:
        node, it = stack[-1]
        nxt = next((p for p in it if p not in done), None)
        if nxt is None:
            order.append(node)
            stack.pop()
        else:
            done.add(nxt)
            stack.append((nxt, iter(parents.get(nxt, ()))))
    weight = {node: 0.0 for node in order}
    weight[root] = 1.0
    for node in reversed(order):  # a node comes before its parents
        for p in parents.get(node, ()):
            weight[p] += weight[node] / max(children.get(p, 1), 1)
    return weight
