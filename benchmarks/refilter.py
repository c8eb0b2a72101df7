"""Nightly re-filtering against the main job, measured in the same run.

1. `main`: the whole graph (`sparkle run`) from an empty home on the given sources, timed.
2. `refilter`: one threshold changed (`curated_pairs.min_edit_score`, default 9.9), then the
   `refilter` job (curated_pairs, sparkle_dataset, bench_split) run for every theme partition, as
   the nightly schedule does; timed, with every video open (cv2.VideoCapture) and every H.264
   writer (imageio-ffmpeg) in the process counted.

Prints both times, their ratio, the decode/encode counts and how the curated set changed.

    .venv/bin/python benchmarks/refilter.py                              # bundled footage
    .venv/bin/python benchmarks/refilter.py --csv ../shared/data/sparkle_demo/pairs.csv
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", action="append", default=[], help="Sparkle CSV sources (default: the bundled footage)")
    ap.add_argument("--home", help="where to build (default: a new temporary folder)")
    ap.add_argument("--min-edit-score", type=float, default=9.9, help="the changed threshold")
    args = ap.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="sparkle-refilter-")).resolve()
    cmd = [sys.executable, "-m", "sparkle_assets.cli", "--home", str(home), "run"]
    for c in args.csv:
        cmd += ["--no-bundled", "--csv", str(Path(c).resolve())] if c == args.csv[0] else ["--csv", str(Path(c).resolve())]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    main_s = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"main job failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")

    from sparkle_assets.cli import configure_env

    configure_env(str(home))
    import cv2
    import dagster as dg
    import imageio_ffmpeg

    from sparkle_assets.definitions import defs
    from sparkle_assets.core.lineage import Lineage

    counts = {"video_opens": 0, "h264_writers": 0}
    real_capture, real_writer = cv2.VideoCapture, imageio_ffmpeg.write_frames

    def counting_capture(*a, **k):
        counts["video_opens"] += 1
        return real_capture(*a, **k)

    def counting_writer(*a, **k):
        counts["h264_writers"] += 1
        return real_writer(*a, **k)

    cv2.VideoCapture, imageio_ffmpeg.write_frames = counting_capture, counting_writer
    db = Lineage(home / "lineage.duckdb")
    instance = dg.DagsterInstance.get()
    themes = instance.get_dynamic_partitions("theme")
    before = {t: len(db.current_artifacts("curated_pairs", t)) for t in themes}
    job = defs.resolve_job_def("refilter")
    config = {"ops": {"curated_pairs": {"config": {"min_edit_score": args.min_edit_score, "min_pass_rate": 0.0}}}}
    started = time.perf_counter()
    ok = all(job.execute_in_process(instance=instance, partition_key=t, run_config=config).success for t in themes)
    refilter_s = time.perf_counter() - started
    cv2.VideoCapture, imageio_ffmpeg.write_frames = real_capture, real_writer
    after = {t: len(db.current_artifacts("curated_pairs", t)) for t in themes}
    bench = {t: json.loads(db.latest_materialization("bench_split", t)["summary"])["rows"] for t in themes}
    print(json.dumps({"home": str(home), "themes": themes, "main_job_s": round(main_s, 1),
                      "refilter_s": round(refilter_s, 2), "ratio": round(refilter_s / main_s, 4), "refilter_ok": ok,
                      **counts, "kept_before": before, "kept_after": after, "bench_rows_after": bench,
                      "cpu_count": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
