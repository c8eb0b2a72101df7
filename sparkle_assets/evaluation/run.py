"""`sparkle bench`: run the benchmark from a shell and print its table.

Sets the benchmark's environment from the flags (see `evaluation.resources`), registers the theme
partitions, materializes the `bench` job for each theme, then `bench_report`, and prints the
macro-averaged table from `$SPARKLE_HOME/bench_results/results.json`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from sparkle_bench.rubric import DIMENSIONS, SHORT


def configure_bench_env(args) -> None:
    """The benchmark's environment variables from `sparkle bench`'s flags (before the definitions load)."""
    def joined(name: str, values: list[str], paths: bool = True) -> None:
        if values:
            os.environ[name] = os.pathsep.join(str(Path(v).resolve()) if paths else v for v in values)

    joined("SPARKLE_BENCH_DIRS", args.bench)
    joined("SPARKLE_OPENVE_CSVS", args.openve)
    joined("SPARKLE_BENCH_SYSTEMS", [_named(v) for v in args.system], paths=False)
    joined("SPARKLE_BENCH_OFFICIAL", [_named(v) for v in args.official], paths=False)
    if args.judge:
        os.environ["SPARKLE_BENCH_JUDGE"] = args.judge
    if args.no_bench_split:
        os.environ["SPARKLE_BENCH_SPLIT"] = "0"


def _named(entry: str) -> str:
    name, sep, folder = entry.partition("=")
    return f"{name}={Path(folder).resolve()}" if sep else entry


def print_table(results: Path) -> None:
    table = json.loads(results.read_text())
    cols = ["Overall", *(SHORT[d] for d in DIMENSIONS)]
    width = max([len(k) for k in table] + [6])
    print(f"\n  {'system':<{width}} " + " ".join(f"{c:>7}" for c in cols) + f" {'n':>5} {'failed':>6} {'missing':>7}")
    for label, row in table.items():
        m = row["macro"]
        values = " ".join(f"{m[c]:>7.2f}" if m else f"{'-':>7}" for c in ("overall", *DIMENSIONS))
        c = row["counts"]
        print(f"  {label:<{width}} {values} {c['n']:>5} {c['failed']:>6} {c['missing']:>7}")
    print(f"\nTable, plot and official JSONL: {results.parent}")


def run_bench(args, home: Path, instance) -> int:
    configure_bench_env(args)
    from ..core.resources import ThemesResource, default_themes_dir
    from ..core.runs import run_job
    from ..core.themes import register_themes
    from ..definitions import defs

    started = time.monotonic()
    themes = ThemesResource(directory=default_themes_dir())
    _, errors = register_themes(instance, themes)
    for message in errors.values():
        print(f"skipping invalid theme file: {message}", file=sys.stderr)
    wanted = args.theme or sorted(themes.load()[0])
    unknown = sorted(set(wanted) - set(instance.get_dynamic_partitions("theme")))
    if unknown:
        print(f"no valid taxonomy file for theme(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    runs = [run_job(instance, defs.resolve_job_def("bench"), theme, by="sparkle bench", verbose=args.verbose)
            for theme in wanted]
    runs.append(run_job(instance, defs.resolve_job_def("bench_report"), None, by="sparkle bench", verbose=args.verbose))
    ok = all(r.success for r in runs)
    print(f"\nsparkle bench {'succeeded' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s "
          f"({len(runs)} runs; themes: {', '.join(wanted)})")
    results = home / "bench_results" / "results.json"
    if results.is_file():
        print_table(results)
    return 0 if ok else 1
