"""The one per-process model cache: every loaded model (segmenter, SAM 2, diffusers pipelines, VLMs,
quality metrics) is built once per worker process and key, then shared by every clip it serves."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")
_MODELS: dict[Hashable, object] = {}


def cached(key: Hashable, make: Callable[[], T]) -> T:
    """The object stored under `key`, built with `make()` the first time it is asked for."""
    if key not in _MODELS:
        _MODELS[key] = make()
    return _MODELS[key]  # type: ignore[return-value]


def clear() -> None:
    """Forget every cached model (tests; a worker that must free memory)."""
    _MODELS.clear()
