"""The one per-process model cache: every loaded model (segmenter, SAM 2, diffusers pipelines, VLMs,
quality metrics) is built once per worker process and key, then shared by every clip it serves.

A model is built in a thread of its own, on a fresh stack: loading one imports libraries, and a
library that keeps an import-time error (MediaPipe keeps the `ImportError` of its optional
`sounddevice`) keeps that error's traceback, whose frames would otherwise hold the arrays of the
clip that first asked for the model (a whole decoded clip per worker, for as long as it lives)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")
_MODELS: dict[Hashable, object] = {}


def cached(key: Hashable, make: Callable[[], T]) -> T:
    """The object stored under `key`, built with `make()` the first time it is asked for."""
    if key not in _MODELS:
        _MODELS[key] = _on_fresh_stack(make)
    return _MODELS[key]  # type: ignore[return-value]


def _on_fresh_stack(make: Callable[[], T]) -> T:
    """make() in a new thread (waited for); its error is raised here."""
    done: dict[str, object] = {}

    def run() -> None:
        try:
            done["value"] = make()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            done["error"] = exc

    thread = threading.Thread(target=run, name="model-load")
    thread.start()
    thread.join()
    if "error" in done:
        raise done["error"]  # type: ignore[misc]
    return done["value"]  # type: ignore[return-value]


def clear() -> None:
    """Forget every cached model (tests; a worker that must free memory)."""
    _MODELS.clear()
