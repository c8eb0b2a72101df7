"""The benchmark's settings: where bench samples and external results come from, and which judge.

Defaults come from the environment, like every other resource (`sparkle bench` sets them from its
flags):

- ``SPARKLE_BENCH_DIRS``: Sparkle-Bench folders (`{theme}_bench.csv`, `source_videos/{theme}/`);
- ``SPARKLE_OPENVE_CSVS``: OpenVE-Bench CSVs (their `background_change` rows);
- ``SPARKLE_BENCH_SYSTEMS``: ``name=DIR`` entries, each an editing model's outputs (Kiwi-Edit's
  inference layout or flat `{id}_edited.mp4`);
- ``SPARKLE_BENCH_OFFICIAL``: ``name=DIR`` entries, folders of official `*_sparkle_score.jsonl` results
  to show beside ours;
- ``SPARKLE_BENCH_SPLIT``: ``0`` leaves our own `bench_split` out (default ``1``);
- ``SPARKLE_BENCH_JUDGE`` (`automatic` or `vlm`), ``SPARKLE_BENCH_MEDIA`` (`video` or `frames`),
  ``SPARKLE_BENCH_CONCURRENCY``.

Entries are separated by ``os.pathsep``. Every value is checked where it enters (`settings()`), and
a bad one is a ConfigError naming the field.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import dagster as dg

from ..core.config import ConfigError
from ..core.resources import env_list

BUILTIN_SYSTEMS = ("identity", "static_composite", "pipeline")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")


def parse_named_dirs(entries: list[str], field: str) -> dict[str, str]:
    """`name=DIR` entries -> {name: resolved dir}; ConfigError for a bad name, a duplicate, or a
    missing folder."""
    out: dict[str, str] = {}
    for entry in entries:
        name, sep, folder = entry.partition("=")
        name = name.strip()
        if not sep or not NAME_RE.match(name):
            raise ConfigError(f"{field}: {entry!r} must be NAME=DIR with NAME of lower-case letters, digits, '_', '.', "
                              "'-' (at most 64)")
        if name in out or name in BUILTIN_SYSTEMS:
            raise ConfigError(f"{field}: the name {name!r} is used twice (built-in systems: {', '.join(BUILTIN_SYSTEMS)})")
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"{field}: {name}={folder} is not a directory")
        out[name] = str(path)
    return out


class BenchResource(dg.ConfigurableResource):
    """What the benchmark reads besides the pipeline's own `bench_split` (see the module docstring)."""

    bench_dirs: list[str] = []
    openve_csvs: list[str] = []
    systems: list[str] = []
    official_results: list[str] = []
    include_bench_split: bool = True

    def settings(self) -> dict:
        for folder in self.bench_dirs:
            if not Path(folder).expanduser().is_dir():
                raise ConfigError(f"bench.bench_dirs: {folder} is not a directory (a Sparkle-Bench folder)")
        for csv_file in self.openve_csvs:
            if not Path(csv_file).expanduser().is_file():
                raise ConfigError(f"bench.openve_csvs: {csv_file} is not a file (an OpenVE-Bench CSV)")
        return {"bench_dirs": [str(Path(d).expanduser().resolve()) for d in self.bench_dirs],
                "openve_csvs": [str(Path(c).expanduser().resolve()) for c in self.openve_csvs],
                "systems": parse_named_dirs(self.systems, "bench.systems"),
                "official_results": parse_named_dirs(self.official_results, "bench.official_results"),
                "include_bench_split": self.include_bench_split}


class BenchJudgeResource(dg.ConfigurableResource):
    """The judge of `bench_judgments`: `automatic` (CPU, no weights) or `vlm` (the `vlm` resource's
    endpoint or local model, with Sparkle-Bench's rubric). `media`: `video` (data:video/mp4 parts, as
    the official script; falls back to frames when the endpoint refuses them) or `frames` (`frames`
    frames per video); `concurrency`: VLM requests in flight at once; `parse_retries`: how often a
    reply that does not parse is asked again before it is recorded as a failure."""

    judge: str = "automatic"
    media: str = "video"
    frames: int = 8
    concurrency: int = 4
    parse_retries: int = 3

    def settings(self) -> dict:
        if self.judge not in ("automatic", "vlm"):
            raise ConfigError(f"bench_judge.judge must be 'automatic' or 'vlm', got {self.judge!r}")
        if self.media not in ("video", "frames"):
            raise ConfigError(f"bench_judge.media must be 'video' or 'frames', got {self.media!r}")
        for name, lo, hi in (("frames", 1, 64), ("concurrency", 1, 64), ("parse_retries", 1, 20)):
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ConfigError(f"bench_judge.{name} must be in [{lo}, {hi}], got {value}")
        return {"judge": self.judge, "media": self.media, "frames": self.frames, "concurrency": self.concurrency,
                "parse_retries": self.parse_retries}


def bench_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "bench": BenchResource(bench_dirs=env_list("SPARKLE_BENCH_DIRS"), openve_csvs=env_list("SPARKLE_OPENVE_CSVS"),
                               systems=env_list("SPARKLE_BENCH_SYSTEMS"),
                               official_results=env_list("SPARKLE_BENCH_OFFICIAL"),
                               include_bench_split=os.environ.get("SPARKLE_BENCH_SPLIT", "1") != "0"),
        "bench_judge": BenchJudgeResource(judge=os.environ.get("SPARKLE_BENCH_JUDGE", "automatic"),
                                          media=os.environ.get("SPARKLE_BENCH_MEDIA", "video"),
                                          concurrency=int(os.environ.get("SPARKLE_BENCH_CONCURRENCY", "4"))),
    }
