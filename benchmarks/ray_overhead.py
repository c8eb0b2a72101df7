"""The same graph with the process pool and on a local Ray cluster, in one run: wall time, Ray's
overhead per clip, and whether both give the same artifact ids (content addressing across executors).

    .venv/bin/python benchmarks/ray_overhead.py                       # bundled footage, every theme
    .venv/bin/python benchmarks/ray_overhead.py --theme time          # one theme partition
    .venv/bin/python benchmarks/ray_overhead.py --csv ../shared/data/sparkle_demo/pairs.csv --no-bundled

Each executor runs `sparkle run` from an empty home (the same path, moved aside after the first run)
in its own process with `workers` CPUs (the pool's
worker processes; the local Ray cluster's CPUs), one after the other. Ray's overhead per clip is
(Ray's wall - the pool's wall) / clips computed; the local cluster's start, measured separately in
this process, is reported and also taken out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def sparkle_run(home: Path, executor: str, args) -> float:
    env = {**os.environ, "SPARKLE_EXECUTOR": executor, "SPARKLE_WORKERS": str(args.workers),
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("SPARKLE_RAY_ADDRESS", None)  # a local cluster, like the pool: same machine, same CPUs
    cmd = [sys.executable, "-m", "sparkle_assets.cli", "--home", str(home), "run"]
    cmd += [f"--theme={t}" for t in args.theme] + [f"--csv={c}" for c in args.csv]
    cmd += [f"--folder={f}" for f in args.folder] + (["--no-bundled"] if args.no_bundled else [])
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (home / "run.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"sparkle run with {executor} failed (log: {home / 'run.log'}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return wall


def artifacts(home: Path) -> list[tuple]:
    from sparkle_assets.core.lineage import Lineage

    rows = Lineage(home / "lineage.duckdb").query("SELECT kind, id, status FROM artifact ORDER BY ALL")
    return [tuple(r.values()) for r in rows]


def clips_computed(home: Path) -> int:
    from sparkle_assets.core.lineage import Lineage

    rows = Lineage(home / "lineage.duckdb").query("SELECT summary FROM materialization")
    return sum(json.loads(r["summary"]).get("computed", 0) for r in rows)


def ray_start_seconds(cpus: int) -> float:
    """A local cluster's start and stop, as the executor does it."""
    code = ("import time; t = time.perf_counter(); from sparkle_assets.core import ray_executor as r; "
            f"r.connect(None, {cpus}); r.disconnect(); print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--theme", action="append", default=[], help="theme partition(s) (default: every theme)")
    ap.add_argument("--csv", action="append", default=[])
    ap.add_argument("--folder", action="append", default=[])
    ap.add_argument("--no-bundled", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sparkle-ray-"))
    work.mkdir(parents=True, exist_ok=True)
    if any((work / d).exists() for d in ("home", "process_pool", "ray")):
        sys.exit(f"{work} already holds a run: give an empty --workdir")
    walls, ids, computed = {}, {}, {}
    for executor in ("process_pool", "ray"):
        home = work / "home"  # the same path for both (the export rows' ids include their root), then moved aside
        walls[executor] = sparkle_run(home, executor, args)
        home = home.rename(work / executor)
        ids[executor], computed[executor] = artifacts(home), clips_computed(home)
        print(f"{executor}: {walls[executor]:.1f} s, {computed[executor]} clip jobs, {len(ids[executor])} artifacts",
              flush=True)
    start = ray_start_seconds(args.workers)
    jobs = computed["process_pool"]
    extra = walls["ray"] - walls["process_pool"]
    same = ids["ray"] == ids["process_pool"]
    print(f"\nsame machine, same run, {args.workers} CPUs, {jobs} clip jobs\n")
    print("| executor | wall (s) | clip jobs | artifacts |\n|---|---|---|---|")
    for executor in walls:
        print(f"| {executor} | {walls[executor]:.1f} | {computed[executor]} | {len(ids[executor])} |")
    print(f"\nRay / pool wall: {walls['ray'] / walls['process_pool']:.2f}; local cluster start+stop {start:.1f} s")
    print(f"Ray overhead per clip job: {1000 * extra / jobs:.0f} ms (with the cluster start), "
          f"{1000 * (extra - start) / jobs:.0f} ms (without)")
    print(f"same artifact ids and statuses: {'yes' if same else 'NO'}")
    if not same:
        a, b = set(ids["process_pool"]), set(ids["ray"])
        for row in sorted(a - b)[:20]:
            print("  only with the pool:", row)
        for row in sorted(b - a)[:20]:
            print("  only with Ray:     ", row)
        sys.exit(1)


if __name__ == "__main__":
    main()
