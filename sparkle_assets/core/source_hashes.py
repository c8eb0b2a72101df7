"""The sha256 of source files, remembered by (resolved path, size, modification time in ns, inode),
so a run that changes nothing reads no source byte.

One small JSON file per source path under `<home>/cache/source_hashes/`, written atomically after
the file was hashed in full; a file whose size, modification time or inode differs from the entry
is hashed again (and the entry replaced). An entry that cannot be read or does not look right is
ignored. `sparkle verify` hashes every remembered file whose stat still matches in full
(`changed_sources`): a file rewritten with its old size and time would show there. Nothing here
imports Dagster (ingest runs in pool workers).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .store import atomic_write_bytes, contained, file_sha256

SHA256 = re.compile(r"[0-9a-f]{64}")


def hash_dir(home: str | os.PathLike) -> Path:
    return contained(home, "cache", "source_hashes")


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _entry_path(cache: Path, resolved: Path) -> Path:
    return contained(cache, f"{hashlib.sha256(str(resolved).encode()).hexdigest()[:32]}.json")


def _read(entry: Path) -> dict | None:
    try:
        data = json.loads(entry.read_bytes()[:4096])
    except (OSError, ValueError):
        return None
    ok = (isinstance(data, dict) and isinstance(data.get("path"), str) and isinstance(data.get("sha256"), str)
          and SHA256.fullmatch(data["sha256"]) and isinstance(data.get("stat"), list) and len(data["stat"]) == 3)
    return data if ok else None


def source_sha256(path: str | os.PathLike, cache: str | os.PathLike | None, full: bool = False) -> str:
    """The sha256 of the file at `path`: remembered when its stat matches an entry in `cache`,
    else (or when `full`) hashed in full and remembered. `cache` None: always hashed."""
    if cache is None:
        return file_sha256(path)
    resolved = Path(path).resolve()
    key = _stat_key(resolved.stat())
    entry = _entry_path(Path(cache), resolved)
    known = None if full else _read(entry)
    if known is not None and known["path"] == str(resolved) and known["stat"] == key:
        return known["sha256"]
    digest = file_sha256(resolved)
    atomic_write_bytes(entry, json.dumps({"path": str(resolved), "stat": key, "sha256": digest}).encode())
    return digest


def changed_sources(cache: str | os.PathLike) -> tuple[int, list[str]]:
    """(entries checked, one line per remembered file whose stat matches but whose content does not)."""
    cache, checked, problems = Path(cache), 0, []
    for entry in sorted(cache.glob("*.json")) if cache.is_dir() else []:
        known = _read(entry)
        if known is None:
            continue
        try:
            path = Path(known["path"])
            if _stat_key(path.stat()) != known["stat"]:
                continue  # changed visibly: the next run hashes it again
            checked += 1
            if file_sha256(path) != known["sha256"]:
                problems.append(f"source file {path} changed without a new size or modification time: its "
                                f"remembered sha256 is wrong (remove {entry} and re-run)")
        except OSError:
            continue
    return checked, problems
