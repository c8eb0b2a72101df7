"""Faults, large: malformed inputs, kill -9 at seeded moments, runs at once; `sparkle verify` after each.

1. `malformed`: `--per-kind` seeded variants of each kind of bad input below, next to good clips
   and to odd-but-valid controls (a valid mp4 named .mov, a name with spaces and accents), all rows
   of one CSV; one `sparkle run --shared-only` over it. Counts: malformed inputs quarantined with a
   reason, controls and good clips ingested, per-clip failures, run failures; then `sparkle verify`.
2. `kills`: one home; each trial adds a new clip, starts `sparkle run` (with `--theme`), kills it
   with SIGKILL at a seeded moment (uniform over the last complete run's duration), then reruns;
   until `--kills` kills have landed in a running run (a run done before its moment does not count).
   Counts: reruns completed, dead runs the rerun cleared, temporaries it removed, `sparkle verify`
   problems after each rerun, and where the kills landed.
3. `concurrent`: `--concurrent` runs started at the same second on a fresh home, against one run
   on another fresh home (the baseline of the same run): all complete, and every asset partition's
   latest artifacts are the same ids in both homes; duplicate rows, dangling edges, verify problems.
4. `wait`: CPU a run uses while its step waits 8 s for a pool slot another run holds, with Dagster's
   wait loop as shipped and with `core.runs.wait_without_spinning`, in the same run.

    .venv/bin/python benchmarks/faults.py                        # everything, ~30 min on 2 cores
    .venv/bin/python benchmarks/faults.py --only malformed --per-kind 9
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sparkle_model.video import write_video  # noqa: E402


# -- inputs -------------------------------------------------------------------------------------

def good_clip(path: Path, seed: int, frames: int = 21, size=(96, 64)) -> Path:
    """A fixed-camera textured background with a moving square (like the tests' clips)."""
    import cv2

    rng = np.random.default_rng(seed)
    w, h = size
    texture = cv2.GaussianBlur(cv2.resize(rng.integers(0, 255, (h // 4 + 2, w // 4 + 2, 3), dtype=np.uint8),
                                          (w + 8, h + 8), interpolation=cv2.INTER_CUBIC), (5, 5), 0)[:h, :w]
    out = []
    for t in range(frames):
        frame = texture.copy()
        x = 8 + (t * 2 + seed) % (w - 28)
        frame[h // 3:h // 3 + 20, x:x + 16] = (230, 40, 40)
        out.append(frame)
    return write_video(path, out, fps=16.0)


def _patch_box(data: bytearray, box: bytes, offset: int, fmt: str, *values) -> bool:
    at = data.find(box)
    if at < 0:
        return False
    data[at + offset:at + offset + struct.calcsize(fmt)] = struct.pack(fmt, *values)
    return True


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def make_malformed(kind: str, good: Path, dst_dir: Path, name: str, rng: random.Random) -> Path:
    """One malformed input of `kind` (made from the good clip where it needs one); returns its path."""
    data = good.read_bytes()
    path = dst_dir / f"{name}.mp4"
    if kind == "truncated":
        path.write_bytes(data[: int(len(data) * rng.uniform(0.05, 0.95))])
    elif kind == "corrupted_middle":
        buf = bytearray(data)
        start = int(len(buf) * rng.uniform(0.3, 0.7))
        n = rng.randint(16, 512)
        buf[start:start + n] = bytes(rng.randrange(256) for _ in range(n))
        path.write_bytes(bytes(buf))
    elif kind == "zero_length":
        path.write_bytes(b"")
    elif kind == "image_as_video":
        import cv2

        _, png = cv2.imencode(".png", np.full((32 + rng.randrange(64), 48, 3), rng.randrange(256), np.uint8))
        path.write_bytes(png.tobytes())
    elif kind == "text_as_video":
        path.write_text("".join(rng.choice("abc def\n") for _ in range(rng.randint(10, 5000))))
    elif kind == "random_bytes":
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(1, 20000))))
    elif kind == "absurd_header":  # an AVI whose headers claim a picture size its frames do not have
        import cv2

        path = dst_dir / f"{name}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 16, (96, 64))
        for t in range(21):
            frame = np.full((64, 96, 3), rng.randrange(256), np.uint8)
            frame[10:30, t:t + 20] = (30, 30, 200)
            writer.write(frame)
        writer.release()
        buf = bytearray(path.read_bytes())
        w, h = rng.choice([(rng.randint(8000, 65000), rng.randint(8000, 65000)), (1920, 1080), (640, 480)])
        assert _patch_box(buf, b"avih", 40, "<II", w, h) and _patch_box(buf, b"strf", 12, "<ii", w, h)
        path.write_bytes(bytes(buf))
    elif kind == "forged_duration":  # the movie and media headers claim days of video
        buf = bytearray(data)
        huge = rng.randint(2 ** 28, 2 ** 32 - 1)
        assert _patch_box(buf, b"mvhd", 20, ">I", huge) and _patch_box(buf, b"mdhd", 20, ">I", huge)
        stts = buf.find(b"stts")
        buf[stts + 12:stts + 16] = struct.pack(">I", huge)  # first entry's sample count
        path.write_bytes(bytes(buf))
    elif kind == "audio_only":
        seconds = rng.uniform(0.5, 3)
        subprocess.run([_ffmpeg(), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"sine=frequency={rng.randint(200, 2000)}:duration={seconds:.2f}", "-c:a", "aac",
                        str(path)], check=True)
    elif kind == "header_only":
        path.write_bytes(data[: rng.randint(32, 1200)])
    elif kind == "gzipped_video":
        path.write_bytes(gzip.compress(data))
    elif kind == "one_frame":
        write_video(path, [np.full((64, 96, 3), rng.randrange(256), np.uint8)], fps=16.0)
    elif kind == "symlink_loop":
        other = dst_dir / f"{name}_b.mp4"
        os.symlink(other.name, path)
        os.symlink(path.name, other)
    elif kind == "dangling_symlink":
        os.symlink(f"{name}_nowhere.mp4", path)
    elif kind == "directory":
        path.mkdir()
        (path / "inside.mp4").write_bytes(data)
    elif kind == "missing":
        pass  # listed in the CSV, never written
    elif kind == "unreadable":
        path.write_bytes(data)
        path.chmod(0)
    else:
        raise ValueError(kind)
    return path


KINDS = ("truncated", "corrupted_middle", "zero_length", "image_as_video", "text_as_video", "random_bytes",
         "absurd_header", "forged_duration", "audio_only", "header_only", "gzipped_video", "one_frame",
         "symlink_loop", "dangling_symlink", "directory", "missing", "unreadable")


def sparkle(home: Path, *args: str, timeout: float | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparkle_assets.cli", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=timeout, env=ENV, **kw)


ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
       "PYTHONUNBUFFERED": "1"}


def verify(home: Path) -> list[str]:
    out = sparkle(home, "verify").stdout.splitlines()
    return [line for line in out if not line.startswith("sparkle verify:")]


def bench_malformed(work: Path, per_kind: int, seed: int) -> dict:
    rng = random.Random(seed)
    videos = work / "videos"
    videos.mkdir(parents=True)
    goods = [good_clip(videos / f"good_{i}.mp4", seed + i) for i in range(3)]
    rows: list[tuple[str, str, str]] = []  # (task, path relative to the CSV, kind)
    for i, g in enumerate(goods):
        rows.append((f"good_{i}", g.name, "good"))
    shutil.copy(goods[0], videos / "control_mov.mov")
    shutil.copy(goods[1], videos / "control ümlaut name.mp4")
    rows += [("control_mov", "control_mov.mov", "control"), ("control_name", "control ümlaut name.mp4", "control")]
    for kind in KINDS:
        for n in range(per_kind):
            name = f"{kind}_{n:02d}"
            path = make_malformed(kind, rng.choice(goods), videos, name, rng)
            rows.append((name, path.name, kind))
    csv = videos / "sources.csv"
    csv.write_text("prompt,src_video,tgt_video,task\n" + "".join(f"a test,{p},,{t}\n" for t, p, _ in rows))
    home = work / "home"
    started = time.perf_counter()
    run = sparkle(home, "run", "--no-bundled", "--csv", str(csv), "--shared-only")
    seconds = time.perf_counter() - started
    from sparkle_assets.core.lineage import Lineage

    db = Lineage(home / "lineage.duckdb")
    quarantined = {r["clip_id"]: r["reason"] for r in db.query("SELECT clip_id, reason FROM quarantine")} \
        if db.db_path.exists() else {}
    ingested = {r["clip_id"] for r in db.current_artifacts("source_clips", kind="source_clip")} \
        if db.db_path.exists() else set()
    failed = db.query("SELECT clip_id, reason FROM artifact WHERE kind = 'source_clip' AND status = 'failed'") \
        if db.db_path.exists() else []
    readable_as_root = os.geteuid() == 0  # root reads a file with mode 000: not malformed for it
    by_kind: dict[str, dict] = {}
    missed = []
    for task, _, kind in rows:
        expect_ok = kind in ("good", "control") or (kind == "unreadable" and readable_as_root)
        got_ok = any(c == task or c.startswith(f"{task}_") for c in ingested)
        reason = quarantined.get(task)
        stats = by_kind.setdefault(kind, {"inputs": 0, "as_expected": 0, "example_reason": None})
        stats["inputs"] += 1
        if (expect_ok and got_ok and not reason) or (not expect_ok and reason and not got_ok):
            stats["as_expected"] += 1
            stats["example_reason"] = stats["example_reason"] or reason
        else:
            missed.append({"task": task, "kind": kind, "ingested": got_ok, "reason": reason})
    malformed = [(t, k) for t, _, k in rows if k not in ("good", "control") and not (k == "unreadable" and readable_as_root)]
    return {"inputs": len(rows), "malformed": len(malformed),
            "malformed_quarantined_with_reason": sum(1 for t, _ in malformed if quarantined.get(t)),
            "good_and_controls_ingested": sum(1 for t, _, k in rows if k in ("good", "control")
                                              and any(c == t or c.startswith(f"{t}_") for c in ingested)),
            "good_and_controls": sum(1 for _, _, k in rows if k in ("good", "control")),
            "unreadable_counted": not readable_as_root,
            "per_clip_failures": len(failed), "run_failed": run.returncode != 0, "run_s": round(seconds, 1),
            "verify_problems": verify(home), "by_kind": by_kind, "not_as_expected": missed,
            "run_tail": run.stdout[-1500:] + run.stderr[-1500:] if run.returncode else ""}


# -- kills --------------------------------------------------------------------------------------

def bench_kills(work: Path, trials: int, seed: int, theme: str) -> dict:
    rng = random.Random(seed)
    videos, home = work / "videos", work / "home"
    videos.mkdir(parents=True)
    good_clip(videos / "clip_000.mp4", seed)
    run_args = ["run", "--no-bundled", "--folder", str(videos)] + (["--theme", theme] if theme else ["--shared-only"])
    started = time.perf_counter()
    first = sparkle(home, *run_args)
    duration = time.perf_counter() - started
    if first.returncode:
        return {"error": "the first run failed", "tail": first.stdout[-2000:] + first.stderr[-2000:]}
    results: list[dict] = []
    trial = 0
    while sum(r["killed"] for r in results) < trials and trial < 2 * trials:  # a run done before its kill: again
        trial += 1
        good_clip(videos / f"clip_{trial:03d}.mp4", seed + trial)  # new work for this trial
        at = rng.uniform(0.5, duration)
        proc = subprocess.Popen([sys.executable, "-m", "sparkle_assets.cli", "--home", str(home), *run_args],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        try:
            proc.wait(timeout=at)
        except subprocess.TimeoutExpired:
            pass
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)  # the run's process only, as the kernel's OOM killer does
        proc.wait()
        reader.join(timeout=10)
        steps = [ln.rstrip().split("] ", 1)[1] for ln in lines if "] " in ln]
        started = time.perf_counter()
        rerun = sparkle(home, *run_args)
        duration = time.perf_counter() - started
        cleared = re.findall(r"^cleared dead run (\S+)", rerun.stdout, re.MULTILINE)
        removed = sum(int(n) for n in re.findall(r"^removed (\d+) temporary file", rerun.stdout, re.MULTILINE))
        problems = verify(home)
        results.append({"trial": trial, "kill_at_s": round(at, 2), "killed": killed,
                        "last_step_line": steps[-1] if steps else "(before the first step)",
                        "rerun_ok": rerun.returncode == 0, "rerun_s": round(duration, 1), "cleared_runs": len(cleared),
                        "temporaries_removed": removed, "verify_problems": problems,
                        **({"rerun_tail": rerun.stdout[-1500:] + rerun.stderr[-1500:]} if rerun.returncode else {})})
        print(f"  kill {trial}: at {at:.1f}s ({results[-1]['last_step_line'][:60]}), rerun "
              f"{'ok' if rerun.returncode == 0 else 'FAILED'} in {duration:.0f}s, cleared {len(cleared)}, "
              f"removed {removed} temporaries, verify {len(problems)} problem(s)", flush=True)
    gc = sparkle(home, "gc").stdout
    return {"trials": len(results), "killed_mid_run": sum(r["killed"] for r in results),
            "reruns_completed": sum(r["rerun_ok"] for r in results),
            "dead_runs_cleared": sum(r["cleared_runs"] for r in results),
            "temporaries_removed": sum(r["temporaries_removed"] for r in results),
            "verify_problems_total": sum(len(r["verify_problems"]) for r in results),
            "gc_after": [ln for ln in gc.splitlines() if not ln.startswith("  ")], "trials_detail": results}


# -- runs at once -------------------------------------------------------------------------------

def current_artifacts(home: Path) -> dict[str, list[tuple]]:
    """Per asset partition, its latest artifacts as (kind, clip, status, content sha256): ids are not
    compared across homes, since an export's rows are keyed by its root, which is inside the home."""
    from sparkle_assets.core.lineage import Lineage

    db = Lineage(home / "lineage.duckdb")
    rows = db.query("""WITH latest AS (SELECT asset_key, partition, artifact_ids FROM materialization
                           QUALIFY row_number() OVER (PARTITION BY asset_key, partition ORDER BY created_at DESC) = 1)
                       SELECT m.asset_key, m.partition, a.kind, a.clip_id, a.status, a.content_hash
                       FROM latest m, unnest(m.artifact_ids) AS x(id) JOIN artifact a ON a.id = x.id ORDER BY ALL""")
    out: dict[str, list[tuple]] = {}
    for r in rows:
        out.setdefault(f"{r['asset_key']}[{r['partition']}]", []).append(
            (r["kind"], r["clip_id"], r["status"], r["content_hash"]))
    return out


def bench_concurrent(work: Path, n: int, seed: int, theme: str) -> dict:
    videos = work / "videos"
    videos.mkdir(parents=True)
    for i in range(2):
        good_clip(videos / f"clip_{i}.mp4", seed + i)
    run_args = ["run", "--no-bundled", "--folder", str(videos)] + (["--theme", theme] if theme else ["--shared-only"])
    started = time.perf_counter()
    single = sparkle(work / "single", *run_args)
    single_s = time.perf_counter() - started
    home = work / "home"
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "sparkle_assets.cli", "--home", str(home), *run_args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(n)]
    outs = [p.communicate() for p in procs]
    together_s = time.perf_counter() - started
    from sparkle_assets.core.lineage import Lineage

    db = Lineage(home / "lineage.duckdb")
    dup = db.query("SELECT count(*) - count(DISTINCT id) AS n FROM artifact")[0]["n"]
    dangling = db.query("""SELECT count(*) AS n FROM artifact_edge e WHERE e.child_id NOT IN (SELECT id FROM artifact)
                           OR e.parent_id NOT IN (SELECT id FROM artifact)""")[0]["n"]
    per_run = db.query("""SELECT asset_key, partition, count(DISTINCT run_id) AS runs,
                                 count(DISTINCT list_sort(artifact_ids)) AS versions FROM materialization GROUP BY ALL""")
    edges = lambda h: sorted(map(tuple, Lineage(h / "lineage.duckdb").query(  # noqa: E731
        "SELECT child_id, parent_id, role FROM artifact_edge ORDER BY ALL")))
    return {"runs": n, "completed": sum(p.returncode == 0 for p in procs), "single_ok": single.returncode == 0,
            "single_run_s": round(single_s, 1), "together_s": round(together_s, 1),
            "same_artifacts_as_one_run": current_artifacts(home) == current_artifacts(work / "single"),
            "same_edges_as_one_run": edges(home) == edges(work / "single"), "edges": len(edges(home)),
            "every_run_same_artifacts": all(r["versions"] == 1 and r["runs"] == n for r in per_run),
            "duplicate_artifact_rows": dup, "dangling_edges": dangling, "verify_problems": verify(home),
            "alembic_errors": sum("alembic" in err for _, err in outs),
            "failed_tails": [o[-1500:] + e[-1500:] for p, (o, e) in zip(procs, outs) if p.returncode]}


# -- waiting for a pool slot --------------------------------------------------------------------

WAIT_PROBE = r"""
import os, sys, threading, time
import dagster as dg
from sparkle_assets.core.runs import wait_without_spinning
if sys.argv[1] == "patched":
    wait_without_spinning()

@dg.asset(pool="gpu")
def pooled():
    return 1

instance = dg.DagsterInstance.get()
storage = instance.event_log_storage
storage.set_concurrency_slots("gpu", 1)
storage.claim_concurrency_slot("gpu", "holder-run", "holder-step")  # another run holds the only slot
released = {}
def release():
    time.sleep(8)
    released["cpu"] = time.process_time()
    storage.free_concurrency_slots_for_run("holder-run")
cpu0 = time.process_time()
threading.Thread(target=release).start()
ok = dg.materialize([pooled], instance=instance).success
print(ok, round(released["cpu"] - cpu0, 2))
"""


def bench_wait(work: Path) -> dict:
    out = {}
    for mode in ("as_shipped", "patched"):
        dagster_home = work / mode
        dagster_home.mkdir(parents=True)
        (dagster_home / "dagster.yaml").write_text("concurrency:\n  pools:\n    granularity: op\n    default_limit: 1\n")
        proc = subprocess.run([sys.executable, "-c", WAIT_PROBE, mode], capture_output=True, text=True,
                              env={**ENV, "DAGSTER_HOME": str(dagster_home)})
        ok, cpu = proc.stdout.split()[-2:] if proc.returncode == 0 else ("False", "nan")
        out[mode] = {"completed": ok == "True", "cpu_s_while_waiting_8s": float(cpu)}
    out["ratio"] = round(out["patched"]["cpu_s_while_waiting_8s"] / max(out["as_shipped"]["cpu_s_while_waiting_8s"], 1e-9), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="malformed,kills,concurrent,wait")
    ap.add_argument("--per-kind", type=int, default=7, help="malformed inputs per kind (17 kinds)")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=4)
    ap.add_argument("--theme", default="location", help="theme for the kill and concurrent runs ('' = shared only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", help="folder for the homes (default: a new temporary folder)")
    ap.add_argument("--out", help="also write the JSON report here")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="sparkle-faults-")).resolve()
    report: dict = {"work": str(work), "seed": args.seed, "cpu_count": os.cpu_count(), "euid": os.geteuid()}
    parts = args.only.split(",")
    for part in parts:
        started = time.perf_counter()
        print(f"[{part}] ...", flush=True)
        if part == "malformed":
            report[part] = bench_malformed(work / part, args.per_kind, args.seed)
        elif part == "kills":
            report[part] = bench_kills(work / part, args.kills, args.seed, args.theme)
        elif part == "concurrent":
            report[part] = bench_concurrent(work / part, args.concurrent, args.seed, args.theme)
        elif part == "wait":
            report[part] = bench_wait(work / part)
        else:
            sys.exit(f"unknown part {part!r}")
        report[part]["bench_s"] = round(time.perf_counter() - started, 1)
        summary = {k: v for k, v in report[part].items() if k not in ("by_kind", "trials_detail", "not_as_expected")}
        print(f"[{part}] {json.dumps(summary, default=str)}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
