"""Throughput of the whole graph on demo clips: this code against a baseline revision, in one run.

For each revision (this tree, and `--baseline REV` checked out with `git worktree add`) and each
worker count (`--workers 1,2`), `sparkle run` materializes the graph from an empty home on the same
`--clips` demo clips (720p, 81 frames) and `--theme` partitions, in its own process tree. Measured:

- CPU-seconds of the whole process tree (the run, its pool workers, the H.264 encoders they waited
  for: every descendant is reaped, so its rusage reaches this process), per clip-theme;
- peak memory of the process tree (the sum of every member's resident set, sampled every 0.2 s);
- pairs scored per hour of wall time; scaling efficiency = wall(1 worker) / (2 x wall(2 workers));
- the cost by stage: each Dagster step's wall time, from the run's event log.

Then, for this tree only, the peak memory of a one-clip run with the defaults (the 1.5 GB target).
Ratios are this tree over the baseline, measured in the same run (same machine, same load).

    .venv/bin/python benchmarks/throughput.py                              # 2 demo clips x location, baseline fd01915
    .venv/bin/python benchmarks/throughput.py --clips 1 --workers 1 --no-one-clip
    .venv/bin/python benchmarks/throughput.py --workers "" --baseline ""      # only the one-clip peak
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
DEMO = Path(os.environ.get("SPARKLE_SHARED_DATA", REPO.parent / "shared" / "data")) / "sparkle_demo"


def demo_csv(folder: Path, clips: int, demo: Path) -> Path:
    """A Sparkle CSV of the first `clips` demo pairs, paths relative to it (links to the demo files)."""
    with open(demo / "pairs.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:clips]
    folder.mkdir(parents=True, exist_ok=True)
    for row in rows:
        for key in ("src_video", "tgt_video"):
            link = folder / row[key]
            if not link.exists():
                link.symlink_to((demo / row[key]).resolve())
    out = folder / "pairs.csv"
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


class TreePeak:
    """The peak of the summed resident memory of a process and all its descendants, and the largest
    single member (with when it peaked, to find the step it was running)."""

    def __init__(self, pid: int, every: float = 0.2):
        self.proc, self.every, self.peak, self._stop = psutil.Process(pid), every, 0, threading.Event()
        self.largest, self.largest_at = 0, 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                members = [self.proc, *self.proc.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for p in members:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                if rss > self.largest:
                    self.largest, self.largest_at = rss, time.time()
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.peak / 2 ** 20, 1)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def step_times(home: Path) -> list[tuple[str, float, float]]:
    """(step, start, end) of every step of every run in the home's Dagster instance."""
    from dagster._core.instance import DagsterInstance, InstanceRef

    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home / "dagster")))
    out = [(s.step_key, s.start_time, s.end_time) for run in instance.get_runs()
           for s in instance.get_run_step_stats(run.run_id) if s.start_time and s.end_time]
    instance.dispose()
    return out


def pairs_scored(home: Path) -> int:
    import duckdb

    with duckdb.connect(str(home / "lineage.duckdb"), read_only=True) as con:
        return con.sql("SELECT count(DISTINCT id) FROM artifact WHERE kind = 'pair_score' AND status = 'ok'").fetchone()[0]


def run_graph(tree: Path, home: Path, csv_path: Path, themes: list[str], workers: int) -> dict:
    others = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != REPO]
    env = {**os.environ, "SPARKLE_WORKERS": str(workers), "SPARKLE_EXECUTOR": "process_pool",
           "PYTHONPATH": os.pathsep.join([str(tree), *others])}  # the revision's packages first
    for name in ("SPARKLE_HOME", "DAGSTER_HOME", "SPARKLE_DAGSTER_DIR", "SPARKLE_TORCH_THREADS"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "sparkle_assets.cli", "--home", str(home), "run", "--no-bundled",
           "--csv", str(csv_path), *[f"--theme={t}" for t in themes]]
    cpu, start = children_cpu(), time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = TreePeak(proc.pid)
    log, _ = proc.communicate()
    wall, peak_mb = time.perf_counter() - start, peak.stop()
    cpu = children_cpu() - cpu
    (home / "run.log").write_text(log)
    if proc.returncode != 0:
        sys.exit(f"sparkle run failed in {tree} ({home / 'run.log'}):\n{log[-3000:]}")
    steps = step_times(home)
    walls: dict[str, float] = {}
    for key, t0, t1 in steps:
        walls[key] = round(walls.get(key, 0.0) + t1 - t0, 2)
    during = [key for key, t0, t1 in steps if t0 <= peak.largest_at <= t1]
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "peak_tree_mb": peak_mb,
            "peak_process_mb": round(peak.largest / 2 ** 20, 1), "peak_process_during": during,
            "pairs": pairs_scored(home), "stages_wall_s": walls}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=2, help="demo clips (default 2)")
    ap.add_argument("--theme", action="append", help="theme partitions (default: location)")
    ap.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    ap.add_argument("--baseline", default="fd01915", help="the revision to compare against ('' for none)")
    ap.add_argument("--demo", type=Path, default=DEMO, help="the demo pairs folder (pairs.csv)")
    ap.add_argument("--no-one-clip", action="store_true", help="skip the one-clip peak-memory run")
    ap.add_argument("--keep", action="store_true", help="keep the homes and the baseline checkout")
    args = ap.parse_args()
    themes, workers = args.theme or ["location"], [int(w) for w in args.workers.split(",") if w]
    scratch = Path(tempfile.mkdtemp(prefix="sparkle-throughput-"))
    trees = {"this": REPO}
    if args.baseline:
        base = scratch / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.baseline], cwd=REPO, check=True,
                       capture_output=True)
        trees["baseline"] = base
    csv_path = demo_csv(scratch / "demo", args.clips, args.demo)
    results: dict[str, dict] = {name: {} for name in trees}
    try:
        for w in workers:  # revisions interleaved, so both see the same load
            for name, tree in trees.items():
                home = scratch / f"{name}-w{w}"
                r = run_graph(tree, home, csv_path, themes, w)
                r["cpu_s_per_clip_theme"] = round(r["cpu_s"] / (args.clips * len(themes)), 1)
                r["pairs_per_hour"] = round(r["pairs"] / r["wall_s"] * 3600, 1)
                results[name][w] = r
                print(f"{name} workers={w}: {json.dumps({k: v for k, v in r.items() if k != 'stages_wall_s'})}",
                      flush=True)
        report: dict = {"clips": args.clips, "themes": themes, "cpu_count": os.cpu_count(),
                        "load_avg": os.getloadavg(), "results": results}
        for name, by_w in results.items():
            if 1 in by_w and 2 in by_w:
                by_w["scaling_efficiency_1_to_2"] = round(by_w[1]["wall_s"] / (2 * by_w[2]["wall_s"]), 3)
        if "baseline" in results:
            report["ratios_this_over_baseline"] = {
                f"workers={w}": {k: round(results["this"][w][k] / results["baseline"][w][k], 3)
                                 for k in ("wall_s", "cpu_s_per_clip_theme", "peak_tree_mb", "pairs_per_hour")
                                 if results["baseline"][w][k]}
                for w in workers}
        if not args.no_one_clip:
            one = demo_csv(scratch / "one", 1, args.demo)
            r = run_graph(REPO, scratch / "this-one-clip", one, themes[:1], 2)
            report["one_clip_720p"] = {k: r[k] for k in ("peak_tree_mb", "peak_process_mb", "peak_process_during",
                                                         "wall_s", "cpu_s", "stages_wall_s")}
        print(json.dumps(report, indent=1))
    finally:
        if not args.keep:
            if "baseline" in trees:
                subprocess.run(["git", "worktree", "remove", "--force", str(trees["baseline"])], cwd=REPO,
                               capture_output=True)
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
