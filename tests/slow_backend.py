"""A deliberately slow per-clip backend for the straggler test, in a module of its own so the pool's
workers import nothing else."""

from __future__ import annotations

import time
from pathlib import Path


def slow_or_fast(out_path, input_paths, params):
    """Reads its tiny clip and writes its first bytes; stalls for a minute on the clip marked slow."""
    data = Path(input_paths["clip"]).read_bytes()
    if params.get("slow"):
        time.sleep(60)
    Path(out_path).write_bytes(data[:64])
    return {"bytes": len(data)}
