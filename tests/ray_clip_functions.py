"""Per-clip functions for the Ray executor's tests, in a module that imports nothing heavy, so that
a Ray worker unpickling one starts in well under a clip's timeout."""

from __future__ import annotations

import os
import time


def square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("bad clip 3")
    return x * x


def misbehave(item: tuple[str, float]) -> str:
    what, value = item
    if what == "die":
        os._exit(9)
    if what == "sleep":
        time.sleep(value)
    return f"{what} {os.getpid()}"


def load_once(item: tuple[str, int]) -> tuple[int, int]:
    """Uses a 'model' from the per-process cache; every load is logged to a file."""
    from sparkle_model import model_cache

    log, x = item

    def load():
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return {"pid": os.getpid()}

    model = model_cache.cached(("test-model", log), load)
    if x < 0:
        os._exit(3)
    time.sleep(0.2)
    return model["pid"], x


def sleep_and_note(item: tuple[str, float]) -> None:
    note, seconds = item
    with open(note, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(seconds)
