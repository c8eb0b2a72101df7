"""How a step maps its per-clip function over the clips of a partition.

One small interface, `ClipExecutor.map(fn, items) -> [Outcome]`, with an in-process, a process-pool
and a thread-pool implementation (for work that waits on a remote service, e.g. a VLM judge). The function must be a module-level callable and the items picklable,
so that a distributed engine (Ray, Dask) can be plugged in as one more implementation without
touching any stage. A failing item never raises out of `map`: its Outcome carries the error.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """The result of one item: `value` when it worked, else `error` (one line) and `detail`."""

    value: R | None = None
    error: str | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _call(fn: Callable[[T], R], item: T) -> Outcome[R]:
    try:
        return Outcome(value=fn(item))
    except Exception as exc:  # noqa: BLE001 - one bad clip must not fail the partition
        return Outcome(error=f"{type(exc).__name__}: {exc}", detail=traceback.format_exc())


class ClipExecutor:
    """Maps fn over items and returns one Outcome per item, in order."""

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[Outcome[R]]:
        raise NotImplementedError


class InProcessExecutor(ClipExecutor):
    def map(self, fn, items):
        return [_call(fn, item) for item in items]


class ProcessPoolExecutor(ClipExecutor):
    """A pool of worker processes (spawned: safe with threads and torch in the parent)."""

    def __init__(self, workers: int = 2):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers

    def map(self, fn, items):
        if len(items) <= 1 or self.workers == 1:
            return InProcessExecutor().map(fn, items)
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=min(self.workers, len(items)), mp_context=ctx) as pool:
            futures = [pool.submit(_call, fn, item) for item in items]
            out: list[Outcome[Any]] = []
            for fut in futures:
                try:
                    out.append(fut.result())
                except Exception as exc:  # noqa: BLE001 - a worker died (e.g. killed for memory)
                    out.append(Outcome(error=f"worker failed: {type(exc).__name__}: {exc}"))
            return out


class ThreadPoolExecutor(ClipExecutor):
    """At most `workers` items at a time in threads of this process: bounded concurrency for calls
    that wait on a service."""

    def __init__(self, workers: int = 4):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers

    def map(self, fn, items):
        with cf.ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(lambda item: _call(fn, item), items))


def make_executor(kind: str, workers: int = 2) -> ClipExecutor:
    if kind == "in_process":
        return InProcessExecutor()
    if kind == "process_pool":
        return ProcessPoolExecutor(workers)
    if kind == "thread_pool":
        return ThreadPoolExecutor(workers)
    raise ValueError(f"unknown executor {kind!r}: use 'in_process', 'process_pool' or 'thread_pool'")
