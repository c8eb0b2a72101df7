"""Sparkle-Bench on the demo pairs: four systems judged by the automatic judge (or the VLM).

Builds a Sparkle-Bench folder from a Sparkle / Kiwi-Edit training CSV (the demo's `pairs.csv`: each
row's source video and prompt, the theme read from the task id `Sparkle_{theme}_{n}`), then runs
`sparkle bench` on it with the released edited videos as a system from their folder (flat
`{id}_edited.mp4`), beside `identity`, `static_composite` and `pipeline` (our generating stages run
on each sample with its own prompt). Prints the table; the rest is under `$HOME/bench_results/`.

    .venv/bin/python benchmarks/bench_demo.py --home .sparkle/bench-demo --demo ../shared/data/sparkle_demo
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from pathlib import Path

from sparkle_bench.sparkle_format import BENCH_COLUMNS, bench_paths, csv_text


def bench_from_training_csv(csv_path: Path, out: Path) -> list[str]:
    """A Sparkle-Bench folder (`{theme}_bench.csv`, `source_videos/{theme}/{id}.mp4`) from a
    training CSV whose task ids read `Sparkle_{theme}_{n}`; returns the themes."""
    rows: dict[str, list[dict]] = {}
    with open(csv_path, newline="") as f:
        for r in csv.DictReader(f):
            task = r["task"].strip()
            theme = task.split("_")[1]
            rel = bench_paths(theme, task)["original_video"]
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            if not (out / rel).exists():
                shutil.copyfile(csv_path.parent / r["src_video"], out / rel)
            rows.setdefault(theme, []).append({"edited_type": theme, "prompt": r["prompt"], "original_video": rel})
    for theme, table in rows.items():
        (out / f"{theme}_bench.csv").write_text(csv_text(BENCH_COLUMNS, table))
    return sorted(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default=".sparkle/bench-demo")
    ap.add_argument("--demo", default="../shared/data/sparkle_demo")
    ap.add_argument("--judge", default="automatic", choices=["automatic", "vlm"])
    args = ap.parse_args()
    home, demo = Path(args.home).resolve(), Path(args.demo).resolve()
    bench = home / "demo_bench"
    themes = bench_from_training_csv(demo / "pairs.csv", bench)
    os.environ.setdefault("SPARKLE_BUNDLED", "0")
    from sparkle_assets.cli import main as sparkle

    return sparkle(["--home", str(home), "bench", "--bench", str(bench), "--system", f"sparkle_release={demo}",
                    "--judge", args.judge, "--no-bench-split", *sum((["--theme", t] for t in themes), [])])


if __name__ == "__main__":
    sys.exit(main())
