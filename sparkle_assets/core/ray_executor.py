"""Per-clip work on a Ray cluster (`SPARKLE_EXECUTOR=ray`): the `ClipExecutor` over Ray tasks and actors.

- **Where.** The cluster at ``SPARKLE_RAY_ADDRESS`` (``auto``, ``host:6379``, or a Ray Client address
  ``ray://host:10001``; environment only, never run config), else a local cluster started once per
  process, listening on 127.0.0.1 only, with ``workers`` CPUs, and stopped when the process exits.
- **What a clip asks for.** A `RayRequest`: ``cpus`` per clip (default 1) and, for the stages in the
  Dagster pool ``gpu`` (the ones that load a model), ``gpus`` per clip (default 1 when
  ``SPARKLE_DEVICE`` is a CUDA device, else 0). A request that no node of the cluster can meet is
  refused before anything is submitted (Ray would leave it pending forever).
- **How.** Other stages run each clip as a Ray task. Model stages run on a pool of actors made for the
  step: each actor is one worker process whose per-process model cache (`sparkle_model.model_cache`)
  loads the model once and serves every clip the actor is given.
- **Failures.** A failing clip is its Outcome's error (`executor.measured` catches it inside the
  task, and measures the clip's cost there). A worker or actor that dies (a crash, Ray's memory
  monitor) is that clip's failed Outcome, and a dead actor is replaced. A clip over ``timeout`` is
  stopped (a task force-cancelled, an actor killed and replaced) and reported ``timed out after N s``.
  Ctrl-C or a cancelled Dagster run cancels every clip in flight and kills the step's actors.
- **In flight.** At most as many clips as the cluster has room for at once, so a clip's timeout
  counts from when it can start and results are collected as they come.

Nothing in the per-clip functions knows about Ray; they must be importable on the workers (same
code image, or the same PYTHONPATH for a local cluster).
"""

from __future__ import annotations

import atexit
import math
import os
import sys
import time
from dataclasses import dataclass, replace

from .config import ConfigError
from .executor import ClipExecutor, Outcome, measured, stopped_cost

GPU_POOL = "gpu"  # the Dagster concurrency pool of the stages that load a model
LOCAL_OBJECT_STORE_BYTES = 256 * 2 ** 20
SECRET_MARKERS = ("KEY", "PASSWORD", "SECRET", "TOKEN")


@dataclass(frozen=True)
class RayRequest:
    """What one clip of a stage asks the cluster for."""

    cpus: float = 1.0
    gpus: float = 0.0
    actors: bool = False  # run on a pool of actors (a model loaded once per actor) rather than tasks

    def __post_init__(self):
        if not self.cpus > 0 or self.gpus < 0 or not math.isfinite(self.cpus + self.gpus):
            raise ValueError(f"a Ray request needs cpus > 0 and gpus >= 0, got cpus={self.cpus}, gpus={self.gpus}")

    @property
    def options(self) -> dict:
        return {"num_cpus": self.cpus, "num_gpus": self.gpus}


def _run_clip(fn, item, threads: int) -> Outcome:
    """Inside the Ray worker: the measured call with torch's thread count for this request (Ray sets
    OMP_NUM_THREADS for a new worker, but a reused one keeps what an earlier task set)."""
    return measured(fn, item, threads)


class _ClipActor:
    """One actor of a model stage's pool: a worker process that keeps its model cache between clips."""

    def __init__(self, threads: int):
        self.threads = threads

    def run(self, fn, item) -> Outcome:
        return _run_clip(fn, item, self.threads)


def connect(address: str | None, local_cpus: int) -> None:
    """Join the cluster at `address`, or start a local one on 127.0.0.1 (once per process)."""
    if not address:
        # a single-node cluster on the loopback interface only; Ray reads this when it is imported
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        if "ray" in sys.modules:
            from ray._private import ray_constants

            ray_constants.ENABLE_RAY_CLUSTER = False  # imported earlier: the same setting, read at start
    import ray

    if ray.is_initialized():
        return
    if address:
        # the settings the per-clip functions read, without secrets: workers get theirs from their own environment
        env = {k: v for k, v in os.environ.items()
               if k.startswith("SPARKLE_") and not any(m in k.upper() for m in SECRET_MARKERS)}
        ray.init(address=address, runtime_env={"env_vars": env}, logging_level="warning")
    else:
        ray.init(address="local", num_cpus=local_cpus, include_dashboard=False,
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES, logging_level="warning")


@atexit.register
def disconnect() -> None:
    """Leave the cluster (and stop the local one this process started)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def slots(request: RayRequest) -> int:
    """How many clips of this request the cluster's alive nodes can run at once; ConfigError (the
    step fails with this one line) when none can."""
    import ray

    total = 0
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        fits = [have.get("CPU", 0.0) / request.cpus]
        if request.gpus:
            fits.append(have.get("GPU", 0.0) / request.gpus)
        total += int(min(fits) + 1e-9)
    if total < 1:
        raise ConfigError(f"no node of the Ray cluster can run a clip needing {request.cpus:g} CPU and "
                         f"{request.gpus:g} GPU (cluster: {ray.cluster_resources()}); lower "
                         "SPARKLE_RAY_CPUS / SPARKLE_RAY_GPUS or add such nodes")
    return total


def _failure(exc: Exception) -> tuple[Outcome, bool]:
    """A Ray error as one clip's Outcome, and whether the worker running it died."""
    import ray.exceptions as rx

    if isinstance(exc, rx.RayTaskError):  # the clip failed outside `measured` (e.g. importing its function)
        cause = exc.cause if exc.cause is not None else exc
        return Outcome(error=f"{type(cause).__name__}: {cause}".splitlines()[0][:500], detail=str(exc)), False
    first = (str(exc).strip().splitlines() or [""])[0]
    return Outcome(error=f"worker died ({type(exc).__name__}): {first}"[:500], detail=str(exc)), True


class RayExecutor(ClipExecutor):
    """Maps a per-clip function over Ray (see the module docstring)."""

    def __init__(self, address: str | None = None, request: RayRequest = RayRequest(), local_cpus: int = 2,
                 gpus_for_models: float = 0.0):
        self.address = address or None
        self.request = request
        self.local_cpus = local_cpus
        self.gpus_for_models = gpus_for_models

    def for_pool(self, pool: str | None) -> RayExecutor:
        """The executor for a stage of this Dagster pool: model stages (`gpu`) on actors, with GPUs."""
        if pool != GPU_POOL:
            return self
        return RayExecutor(self.address, replace(self.request, gpus=self.gpus_for_models, actors=True),
                           self.local_cpus, self.gpus_for_models).with_time_limits(self.time_limits)

    def map(self, fn, items, timeout=None):
        if not items:
            return []
        connect(self.address, self.local_cpus)
        width = min(slots(self.request), len(items))
        if self.request.actors:
            return self._map_actors(fn, items, timeout, width)
        return self._map_tasks(fn, items, timeout, width)

    @property
    def _threads(self) -> int:
        return max(1, int(self.request.cpus))

    def _map_tasks(self, fn, items, timeout, width):
        import ray

        task = ray.remote(max_retries=0)(_run_clip).options(**self.request.options)
        results: list[Outcome | None] = [None] * len(items)
        queue = list(range(len(items)))[::-1]
        running: dict = {}  # ref -> (index, deadline)
        started: dict[int, float] = {}
        try:
            while queue or running:
                while queue and len(running) < width:
                    i = queue.pop()
                    running[task.remote(fn, items[i], self._threads)] = (i, time.monotonic() + timeout if timeout else None)
                    started[i] = time.monotonic()
                for ref, outcome, _ in self._collect(running):
                    results[running.pop(ref)[0]] = outcome
                for ref in [r for r, (_, d) in running.items() if d is not None and time.monotonic() >= d]:
                    ray.cancel(ref, force=True)  # kills the worker process running it
                    i = running.pop(ref)[0]
                    results[i] = Outcome(error=f"timed out after {timeout:g} s", cost=stopped_cost(started[i]))
        except BaseException:
            for ref in running:  # Ctrl-C or a cancelled run: stop every clip in flight
                ray.cancel(ref, force=True)
            raise
        return results

    def _map_actors(self, fn, items, timeout, width):
        import ray

        actor_class = ray.remote(max_restarts=0, max_task_retries=0)(_ClipActor).options(**self.request.options)
        idle = [actor_class.remote(self._threads) for _ in range(width)]
        results: list[Outcome | None] = [None] * len(items)
        queue = list(range(len(items)))[::-1]
        running: dict = {}  # ref -> (index, deadline, actor)
        started: dict[int, float] = {}
        try:
            while queue or running:
                while queue and idle:
                    i, actor = queue.pop(), idle.pop()
                    running[actor.run.remote(fn, items[i])] = (i, time.monotonic() + timeout if timeout else None, actor)
                    started[i] = time.monotonic()
                for ref, outcome, died in self._collect(running):
                    i, _, actor = running.pop(ref)
                    results[i] = outcome
                    if died:
                        actor = actor_class.remote(self._threads)
                    idle.append(actor)
                for ref in [r for r, (_, d, _) in running.items() if d is not None and time.monotonic() >= d]:
                    i, _, actor = running.pop(ref)
                    ray.kill(actor)  # the only way to stop a running actor call
                    results[i] = Outcome(error=f"timed out after {timeout:g} s", cost=stopped_cost(started[i]))
                    idle.append(actor_class.remote(self._threads))
        finally:  # done, Ctrl-C or a cancelled run: the step's actors (and their models) go
            for actor in idle + [a for _, _, a in running.values()]:
                ray.kill(actor)
        return results

    @staticmethod
    def _collect(running: dict) -> list[tuple[object, Outcome, bool]]:
        """Wait for a result (or the nearest deadline); (ref, Outcome, worker died) of what finished."""
        import ray

        deadlines = [v[1] for v in running.values() if v[1] is not None]
        wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        done, _ = ray.wait(list(running), num_returns=1, timeout=wait)
        if done:  # take everything else that is already finished too
            done = ray.wait(list(running), num_returns=len(running), timeout=0)[0] or done
        out = []
        for ref in done:
            try:
                out.append((ref, ray.get(ref), False))
            except ray.exceptions.RayError as exc:
                out.append((ref, *_failure(exc)))
        return out
