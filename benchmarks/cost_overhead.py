"""What recording costs adds to a run: the whole graph (`sparkle run`, one theme) on tiny clips, with
this tree against a baseline revision without cost recording, in the same session.

    .venv/bin/python benchmarks/cost_overhead.py                        # 4 tiny clips, 3 runs each, ~3 min
    .venv/bin/python benchmarks/cost_overhead.py --baseline REV --repeats 5
    .venv/bin/python benchmarks/cost_overhead.py --repeats 0          # the in-run share only

Two figures (target: at most 2 % of the run's wall time):

1. in-run share: a first run and a re-run (everything reused) of this tree in this process, with
   the cost code timed where it runs in the run's own process (the step accounting `record_step_costs`, the manifest's `pair_costs`, the
   funnel's table and plot `funnel_metadata`), as a share of the run's wall time; the per-clip
   measurement itself (`executor.measured`) predates this change and is in both revisions;
2. A/B: fresh homes, runs of the baseline and this tree alternated (`sparkle run` in a subprocess,
   the baseline from `git archive`), median wall time of each and their ratio. On a shared machine
   single runs vary by several percent, so this one bounds the overhead less tightly than (1).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

TIMED = [("sparkle_assets.core.stage", "record_step_costs"), ("sparkle_assets.stages.release.sparkle_dataset", "pair_costs"),
         ("sparkle_assets.stages.release.sparkle_dataset", "funnel_metadata")]


def make_clips(folder: Path, n: int) -> None:
    from test_theme_assets import make_subject_clip

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        make_subject_clip(folder / f"c{i}.mp4", seed=i + 1)


def run_args(home: Path, clips: Path, theme: str) -> list[str]:
    return ["--home", str(home), "run", "--folder", str(clips), "--no-bundled", "--theme", theme]


def in_run_share(clips: Path, theme: str, home: Path) -> list[tuple[float, dict[str, float]]]:
    """Two runs into `home` in this process with the cost code timed, the first computing everything,
    the second reusing everything: [(run wall s, {function: s})] for each."""
    import importlib

    spent: dict[str, float] = {}
    for module_name, name in TIMED:
        module = importlib.import_module(module_name)
        inner = getattr(module, name)

        def timed(*args, _inner=inner, _name=name, **kwargs):
            t = time.perf_counter()
            try:
                return _inner(*args, **kwargs)
            finally:
                spent[_name] = spent.get(_name, 0.0) + time.perf_counter() - t

        setattr(module, name, timed)
    from sparkle_assets.cli import main

    out = []
    for _ in range(2):
        spent.clear()
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            rc = main(run_args(home, clips, theme))
        if rc != 0:
            raise SystemExit(f"the timed run failed (rc {rc})")
        out.append((time.perf_counter() - started, dict(spent)))
    return out


def one_run(tree: Path, clips: Path, theme: str, home: Path) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sparkle_assets.cli", *run_args(home, clips, theme)], cwd=tree, env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="e75a193", help="revision without cost recording")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--theme", default="location")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sparkle-cost-bench-"))
    try:
        clips, home = work / "clips", work / "in_run"
        os.environ["SPARKLE_HOME"] = str(home)  # before the definitions are imported (they bind the home)
        make_clips(clips, args.clips)
        for what, (wall, spent) in zip(("first run", "re-run, all reused"), in_run_share(clips, args.theme, home)):
            total = sum(spent.values())
            print(f"in-run share, {what}: {total:.3f} s of {wall:.1f} s = {100 * total / wall:.2f} % "
                  f"({', '.join(f'{k} {v:.3f} s' for k, v in spent.items())})")
        if args.repeats < 1:
            return 0
        baseline = work / "baseline"
        baseline.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
        times: dict[str, list[float]] = {"baseline": [], "costs": []}
        for i in range(args.repeats):
            for name, tree in (("baseline", baseline), ("costs", REPO)):
                times[name].append(one_run(tree, clips, args.theme, work / f"{name}{i}"))
        base, cost = statistics.median(times["baseline"]), statistics.median(times["costs"])
        print(f"A/B ({args.repeats} runs each, alternated): baseline {args.baseline} median {base:.1f} s "
              f"{[round(t, 1) for t in times['baseline']]}, with costs median {cost:.1f} s "
              f"{[round(t, 1) for t in times['costs']]}: ratio {cost / base:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
