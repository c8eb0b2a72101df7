"""How a step maps its per-clip function over the clips of a partition.

One small interface, `ClipExecutor.map(fn, items, timeout=None) -> [Outcome]`, with an in-process
implementation, a pool of worker processes, a thread pool (for work that waits on a remote service,
e.g. a VLM judge), and Ray (`core.ray_executor`, the same interface over a cluster). The function must be a module-level callable and the items picklable, so no stage notices
which one runs it.
A failing item never raises out of `map`: its Outcome carries the error. Every Outcome also carries
the `Cost` of computing it (wall and CPU seconds, peak memory of the worker, GPU time and memory
where torch used a GPU), measured where it ran.

The process pool is started once per process and kept (one pool per run, not per step): its
workers import only this module until a function needs more (the per-clip functions live in
Dagster-free modules, so a worker never imports Dagster), load models once, and run torch and BLAS
with the thread count set here (`threads`, default 1: on a busy CPU one thread per worker is much
faster than several; e.g. pyiqa's FSIM). The in-process executor sets the same count while it runs.
A clip over the `timeout` (a step's `time_limit`, from the `clip_executor` resource's settings) is
stopped: its worker is killed and replaced, the clip's Outcome says `timed out after N s` (its cost:
the wall time it held the worker), and the step goes on; a worker that dies
(killed for memory, a crash) is one failed clip, never a hung step.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection as mpc
import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass(frozen=True)
class Cost:
    """What computing one item took, where it ran."""

    wall_s: float
    cpu_s: float | None  # user + system of the worker and the subprocesses it waited for (e.g. the H.264 encoder)
    peak_rss_mb: float | None  # the worker's peak resident memory during the item (None where unknown)
    device: str = "cpu"
    gpu_s: float | None = None
    gpu_peak_mb: float | None = None


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """The result of one item: `value` when it worked, else `error` (one line) and `detail`."""

    value: R | None = None
    error: str | None = None
    detail: str | None = None
    cost: Cost | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _reset_peak_rss() -> bool:
    """Start a new peak-memory window for this process (Linux: /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _gpu():
    """torch's CUDA module when this process already uses it (torch is never imported just for this)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda
    return None


def set_torch_threads(threads: int | None) -> None:
    """torch's intra-op thread count, where torch is loaded (it is never imported just for this)."""
    torch = sys.modules.get("torch")
    if threads is not None and torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def thread_env(threads: int | None):
    """OpenMP/MKL/BLAS thread counts of libraries loaded inside the block (and of processes it starts)."""
    if threads is None:
        yield
        return
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update({k: str(threads) for k in THREAD_ENV})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def release_free_memory() -> None:
    """Free what an item left behind: the error a native library printed (`PyErr_Print` keeps it in
    `sys.last_traceback`, whose frames hold the item's arrays: MediaPipe's first import leaves one
    holding a whole decoded clip), then hand the heap's free pages back to the system (glibc's
    malloc_trim)."""
    sys.last_type = sys.last_value = sys.last_traceback = None
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measured(fn: Callable[[T], R], item: T, threads: int | None = None) -> Outcome[R]:
    """Call fn(item), catching its error, and measure what it cost (torch on `threads` threads);
    what it freed goes back to the system."""
    set_torch_threads(threads)
    windowed = _reset_peak_rss()
    cuda = _gpu()
    if cuda is not None:
        cuda.reset_peak_memory_stats()
    wall, cpu = time.perf_counter(), cpu_seconds()
    try:
        value, error, detail = fn(item), None, None
    except Exception as exc:  # noqa: BLE001 - one bad clip must not fail the partition
        value, error, detail = None, f"{type(exc).__name__}: {exc}", traceback.format_exc()
    wall = time.perf_counter() - wall
    cuda = cuda or _gpu()
    cost = Cost(wall_s=round(wall, 4), cpu_s=round(cpu_seconds() - cpu, 4),
                peak_rss_mb=_peak_rss_mb() if windowed else None,
                device="cuda" if cuda is not None else "cpu",
                gpu_s=round(wall, 4) if cuda is not None else None,
                gpu_peak_mb=round(cuda.max_memory_allocated() / 2 ** 20, 1) if cuda is not None else None)
    release_free_memory()
    return Outcome(value=value, error=error, detail=detail, cost=cost)


def stopped_cost(started: float) -> Cost:
    """The cost of an item stopped from outside (timed out, its worker died): the wall time it held
    its worker; its CPU time and memory died with the worker (unknown)."""
    return Cost(wall_s=round(time.monotonic() - started, 4), cpu_s=None, peak_rss_mb=None)


TIME_LIMIT_RANGE = (1.0, 86400.0)  # seconds a clip may take in one stage: the accepted settings


class ClipExecutor:
    """Maps fn over items and returns one Outcome per item, in order. `time_limits` (stage name ->
    seconds, "*" for every other stage) is the per-clip limit `time_limit(stage)` gives each step."""

    time_limits: dict[str, float] = {}

    def with_time_limits(self, limits: dict[str, float]) -> ClipExecutor:
        for stage, seconds in limits.items():
            lo, hi = TIME_LIMIT_RANGE
            if not lo <= seconds <= hi:
                raise ValueError(f"the time limit of {stage!r} must be between {lo:g} and {hi:g} s, got {seconds:g}")
        self.time_limits = dict(limits)
        return self

    def time_limit(self, stage: str) -> float | None:
        return self.time_limits.get(stage, self.time_limits.get("*"))

    def map(self, fn: Callable[[T], R], items: Sequence[T], timeout: float | None = None) -> list[Outcome[R]]:
        raise NotImplementedError

    def for_pool(self, pool: str | None) -> ClipExecutor:
        """The executor for a stage in this Dagster concurrency pool (Ray asks for GPUs for `gpu`)."""
        return self


class InProcessExecutor(ClipExecutor):
    """Runs every item in this process, one after the other (`timeout` is not enforced here), with
    torch on `threads` threads while it does (None: as it is)."""

    def __init__(self, threads: int | None = None):
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads

    def map(self, fn, items, timeout=None):
        torch = sys.modules.get("torch")
        before = torch.get_num_threads() if torch is not None else None
        try:
            with thread_env(self.threads):
                return [measured(fn, item, self.threads) for item in items]
        finally:
            set_torch_threads(before)


def die_with_parent(signum: int = signal.SIGKILL, parent: int | None = None) -> None:
    """In a child process (Linux): receive `signum` when the process that started it dies (a
    `kill -9` of the run, or the kernel out of memory), so no orphan keeps writing into the store.
    With `parent` given, exit at once if that process is already gone."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signum)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def _worker_main(conn: mpc.Connection, parent: int, threads: int) -> None:
    """A pool worker: run (fn, item) tasks from the pipe until it closes (or its run dies)."""
    die_with_parent(signal.SIGKILL, parent)
    while True:
        try:
            fn, item = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(measured(fn, item, threads))


class _Worker:
    def __init__(self, ctx, threads: int):
        parent, child = ctx.Pipe()
        with thread_env(threads):  # torch/BLAS threads of the new process from its start
            self.process = ctx.Process(target=_worker_main, args=(child, os.getpid(), threads), daemon=True,
                                       name="sparkle-worker")
            self.process.start()
        child.close()
        self.conn = parent
        self.task: int | None = None
        self.started = 0.0
        self.deadline: float | None = None

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class ProcessPoolExecutor(ClipExecutor):
    """`workers` persistent worker processes (spawned: safe with threads and torch in the parent),
    each running torch and BLAS with `threads` threads, dying with the process that started them.
    One pool per (workers, threads) per process."""

    _pools: dict[tuple[int, int], list[_Worker]] = {}

    def __init__(self, workers: int = 2, threads: int = 1):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.workers, self.threads = workers, threads

    def _pool(self) -> list[_Worker]:
        key = (self.workers, self.threads)
        pool = self._pools.get(key)
        if pool is None:
            ctx = multiprocessing.get_context("spawn")
            pool = self._pools[key] = [_Worker(ctx, self.threads) for _ in range(self.workers)]
        return pool

    def _replace(self, pool: list[_Worker], worker: _Worker) -> None:
        worker.kill()
        pool[pool.index(worker)] = _Worker(multiprocessing.get_context("spawn"), self.threads)

    def map(self, fn, items, timeout=None):
        if not items:
            return []
        pool = self._pool()
        for w in list(pool):
            if not w.process.is_alive():
                self._replace(pool, w)
        results: list[Outcome | None] = [None] * len(items)
        queue = list(range(len(items)))[::-1]
        try:
            while queue or any(w.task is not None for w in pool):
                for w in pool:
                    if w.task is None and queue:
                        w.task = queue.pop()
                        w.started = time.monotonic()
                        w.deadline = w.started + timeout if timeout else None
                        w.conn.send((fn, items[w.task]))
                busy = [w for w in pool if w.task is not None]
                deadlines = [w.deadline for w in busy if w.deadline is not None]
                wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                ready = mpc.wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=wait)
                now = time.monotonic()
                for w in busy:
                    if w.conn in ready:
                        try:
                            results[w.task] = w.conn.recv()
                            w.task = None
                            continue
                        except (EOFError, OSError):
                            pass
                    if w.conn in ready or w.process.sentinel in ready:
                        w.process.join(5)  # the pipe may close before the process is reaped
                        code = w.process.exitcode
                        results[w.task] = Outcome(error=f"worker died (exit code {code}): killed for memory, "
                                                        "or a crash in native code", cost=stopped_cost(w.started))
                    elif w.deadline is not None and now >= w.deadline:
                        results[w.task] = Outcome(error=f"timed out after {timeout:g} s", cost=stopped_cost(w.started))
                    else:
                        continue
                    w.task = None
                    self._replace(pool, w)
        except BaseException:
            shutdown_pools()  # Ctrl-C or a cancelled run: stop every clip in flight
            raise
        return results


@atexit.register
def shutdown_pools() -> None:
    """Stop every worker of every pool of this process."""
    for pool in ProcessPoolExecutor._pools.values():
        for w in pool:
            w.kill()
    ProcessPoolExecutor._pools.clear()


class ThreadPoolExecutor(ClipExecutor):
    """At most `workers` items at a time in threads of this process: bounded concurrency for calls
    that wait on a service (`timeout` is not enforced here: the client's own timeout applies)."""

    def __init__(self, workers: int = 4):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers

    def map(self, fn, items, timeout=None):
        with cf.ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(lambda item: measured(fn, item), items))


def make_executor(kind: str, workers: int = 2, threads: int = 1, ray_address: str | None = None,
                  ray_cpus: float = 1.0, ray_gpus: float = 0.0) -> ClipExecutor:
    """`in_process` (torch on `threads` threads), `process_pool` (`workers` processes, `threads` each)
    or `ray` (core.ray_executor: the cluster at `ray_address`, else a local one with `workers` CPUs;
    `ray_cpus` per clip, and `ray_gpus` per clip of a model stage)."""
    if kind == "in_process":
        return InProcessExecutor(threads)
    if kind == "process_pool":
        return ProcessPoolExecutor(workers, threads)
    if kind == "ray":
        from .ray_executor import RayExecutor, RayRequest

        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        return RayExecutor(ray_address, RayRequest(cpus=ray_cpus), local_cpus=workers, gpus_for_models=ray_gpus)
    raise ValueError(f"unknown executor {kind!r}: use 'in_process', 'process_pool' or 'ray'")
