"""Lineage and store at scale: a synthetic lineage of ~1M artifacts, ~2M edges and ~5M scores
written through the project's own `Lineage`, and the operations users hit, timed against the
implementation of a baseline revision (default fd01915, the code before this work) in the same run.

    .venv/bin/python benchmarks/scale.py                      # 140K pairs (~1M artifacts), ~10 min
    .venv/bin/python benchmarks/scale.py --pairs 20000        # a quicker look

Shape: one theme partition with N pairs; per pair a source clip, mask, instruction, edited frame,
background video, edited video and pair score (7 artifacts, 14 edges, 35 scores). Targets (issue 15):
writes >= 50K rows/s; derived_from / sources_of <= 50 ms; current artifacts of the partition <= 1 s;
the curation decision over it <= 2 s; no-op store lookups read no payload byte, >= 10K per second.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sparkle_assets.core import store as store_mod  # noqa: E402
from sparkle_assets.core.judging import decide_pairs  # noqa: E402
from sparkle_assets.core.lineage import Lineage  # noqa: E402

METRICS = [f"m{i:02d}" for i in range(29)] + ["edit_score", "fg_structure", "fg_motion_error", "background_dynamics",
                                             "warp_error", "flicker"]
FILTERS = {"min_edit_score": ("edit_score", ">=", 8.0), "min_fg_structure": ("fg_structure", ">=", 0.85),
           "max_fg_motion_error": ("fg_motion_error", "<=", 0.5), "min_background_dynamics": ("background_dynamics", ">=", 0.05),
           "max_warp_error": ("warp_error", "<=", 12.0), "max_flicker": ("flicker", "<=", 3.0)}
CHAIN = [("source_clip", "static_clips", []), ("foreground_mask", "foreground_masks", ["clip"]),
         ("instruction", "instructions", ["clip", "mask"]), ("edited_first_frame", "edited_first_frames",
                                                             ["clip", "mask", "instruction"]),
         ("background_video", "background_videos", ["edited", "instruction"]),
         ("edited_video", "edited_videos", ["clip", "mask", "background"]),
         ("pair_score", "pair_scores", ["clip", "mask", "video"])]
ROLE = {"source_clip": "clip", "foreground_mask": "mask", "instruction": "instruction", "edited_first_frame": "edited",
        "background_video": "background", "edited_video": "video", "pair_score": "scores"}


def baseline_module(rev: str, path: str, name: str):
    """A module of the project as it is at `rev` (its relative imports pointed at today's core; before
    the core/ layout the module sat one folder up)."""
    for candidate in (path, path.replace("/core/", "/")):
        shown = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{candidate}"], capture_output=True, text=True)
        if shown.returncode == 0:
            break
    else:
        raise SystemExit(f"{path} is not in revision {rev}")
    text = shown.stdout
    text = text.replace("from .store import", "from sparkle_assets.core.store import")
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    exec(compile(text, f"{rev}:{path}", "exec"), module.__dict__)
    return module


def batches(n_pairs: int, chunk: int, mod, theme: str = "big"):
    """LineageBatches (of module `mod`'s classes) of `chunk` pairs each, then one per materialization."""
    ArtifactRow, LineageBatch = mod.ArtifactRow, mod.LineageBatch  # noqa: N806
    rng = random.Random(0)
    ids: dict[str, list[str]] = {kind: [] for kind, _, _ in CHAIN}
    for start in range(0, n_pairs, chunk):
        batch = LineageBatch()
        for p in range(start, min(n_pairs, start + chunk)):
            clip, made = f"clip{p:07d}", {}
            for kind, asset, parents in CHAIN:
                aid = f"{kind[:4]}{p:07d}x{rng.getrandbits(40):010x}"
                per_theme = kind not in ("source_clip", "foreground_mask")
                batch.artifacts.append(ArtifactRow(
                    id=aid, kind=kind, asset_key=asset, partition=theme if per_theme else "", clip_id=clip,
                    theme=theme if per_theme else None, uri=f"{kind}/{aid[:2]}/{aid}.bin", bytes=1000,
                    content_hash="0" * 64, code_version=f"{kind}-1", run_id="bench", info={"frames": 81}))
                batch.edges += [(aid, made[r], r) for r in parents]
                made[ROLE[kind]] = aid
                ids[kind].append(aid)
            batch.scores += [(made["scores"], m, rng.random() * 10) for m in METRICS]
        yield batch
    for kind, asset, _ in CHAIN:
        per_theme = kind not in ("source_clip", "foreground_mask")
        final_m = {"run_id": f"bench-{kind}", "asset_key": asset, "partition": theme if per_theme else "",
                   "code_version": "1", "data_version": "dv", "artifact_ids": ids[kind]}
        yield LineageBatch(materialization=final_m)


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    """(median seconds of `repeat` calls, the last result). The previous call's result is freed
    before the clock starts: freeing 140K row dicts (~0.2 s) is not part of the next call."""
    times, out = [], None
    for _ in range(repeat):
        out = None
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def build(mod, path: Path, n_pairs: int, chunk: int) -> tuple[float, int]:
    db = mod.Lineage(path)
    rows, t = 0, time.perf_counter()
    for batch in batches(n_pairs, chunk, mod):
        rows += len(batch.artifacts) + len(batch.edges) + len(batch.scores)
        db.write(batch)
    return time.perf_counter() - t, rows


def lookups(root: Path, store_module, n: int, size: int) -> tuple[float, int]:
    """(lookups per second, payload bytes hashed) for n committed artifacts, looked up twice."""
    store = store_module.ArtifactStore(root)
    hashed = [0]
    real = store_module.file_sha256

    def counting(path, chunk=1 << 20):
        hashed[0] += os.path.getsize(path)
        return real(path, chunk)

    store_module.file_sha256 = counting
    try:
        for i in range(n):
            if store.lookup("thing", f"a{i:08d}") is None:
                with store.writing("thing", f"a{i:08d}", "bin") as tmp:
                    tmp.write_bytes(os.urandom(size))
                store.commit("thing", f"a{i:08d}", code_version="1", params={}, inputs={}, ext="bin")
        hashed[0] = 0
        t = time.perf_counter()
        for i in range(n):
            assert store.lookup("thing", f"a{i:08d}") is not None
        return n / (time.perf_counter() - t), hashed[0]
    finally:
        store_module.file_sha256 = real


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=140_000)
    ap.add_argument("--chunk", type=int, default=20_000, help="pairs per lineage write (one step's batch)")
    ap.add_argument("--baseline-rev", default="fd01915", help="the code before the scale work (issue 15)")
    ap.add_argument("--baseline-pairs", type=int, default=2_000, help="pairs written with the baseline (it is slow)")
    ap.add_argument("--lookups", type=int, default=5_000)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sparkle-scale-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    old_lineage = baseline_module(args.baseline_rev, "sparkle_assets/core/lineage.py", "baseline_lineage")
    old_store = baseline_module(args.baseline_rev, "sparkle_assets/core/store.py", "baseline_store")
    results = []

    # writes: the baseline on a small lineage (it inserts row by row), today's on the full one
    from sparkle_assets.core import lineage as new_lineage

    secs, rows = build(old_lineage, work / "baseline.duckdb", args.baseline_pairs, min(args.chunk, args.baseline_pairs))
    old_rate = rows / secs
    secs, rows = build(new_lineage, work / "lineage.duckdb", args.pairs, args.chunk)
    db = Lineage(work / "lineage.duckdb")
    results.append(("lineage writes (rows/s)", f"{old_rate:,.0f}", f"{rows / secs:,.0f}", ">= 50,000",
                    f"{rows:,} rows in {secs:.1f} s"))
    counts = db.query("SELECT (SELECT count(*) FROM artifact) AS a, (SELECT count(*) FROM artifact_edge) AS e, "
                      "(SELECT count(*) FROM score) AS s")[0]
    print(f"built: {counts['a']:,} artifacts, {counts['e']:,} edges, {counts['s']:,} scores in {work}")

    # reads on the same database, old code and new
    old = old_lineage.Lineage(work / "lineage.duckdb")
    rng = random.Random(1)
    picks = rng.sample(range(args.pairs), 10)
    clip_refs = [f"clip{p:07d}" for p in picks]
    score_ids = [r["id"] for r in db.query("SELECT id FROM artifact WHERE kind = 'pair_score' AND clip_id IN "
                                           "(SELECT unnest(?::VARCHAR[]))", [clip_refs])]
    for label, fn_new, fn_old, limit in [
        ("derived_from(clip) (ms)", lambda: [db.derived_from(c) for c in clip_refs],
         lambda: [old.derived_from(c) for c in clip_refs[:3]], 50),
        ("sources_of(pair score) (ms)", lambda: [db.sources_of(i) for i in score_ids],
         lambda: [old.sources_of(i) for i in score_ids[:3]], 50),
    ]:
        t_new, out = timed(fn_new)
        db.release()  # the baseline opens the file itself, as it did (not through this process's kept connection)
        t_old, out_old = timed(fn_old)
        assert [len(x) for x in out[:3]] == [len(x) for x in out_old], "baseline and today disagree"
        results.append((label, f"{1000 * t_old / 3:.1f}", f"{1000 * t_new / len(out):.1f}", f"<= {limit}", ""))
    # the CLI's case: one question in a new process, which opens the file cold (not counted: imports, and
    # the modules DuckDB's Python client imports on its first parameterised query, ~0.6 s here)
    first_call = subprocess.run(
        [sys.executable, "-c", "import sys, time, duckdb; sys.path.insert(0, sys.argv[1]); "
         "duckdb.connect().execute('SELECT ?', [1]); "
         "from sparkle_assets.core.lineage import Lineage; db = Lineage(sys.argv[2]); t = time.perf_counter(); "
         "db.derived_from(sys.argv[3]); print(1000 * (time.perf_counter() - t))",
         str(REPO), str(work / "lineage.duckdb"), clip_refs[0]], capture_output=True, text=True, check=True)
    results.append(("derived_from(clip), first call of a new process (ms)", "", f"{float(first_call.stdout):.1f}",
                    "", "opens the file cold"))
    t_new, cur = timed(lambda: db.current_artifacts("pair_scores", "big", kind="pair_score"), 3)
    db.release()
    t_old, cur_old = timed(lambda: old.current_artifacts("pair_scores", "big", kind="pair_score"))
    assert len(cur) == len(cur_old) == args.pairs
    results.append((f"current artifacts of {args.pairs:,} pairs (s)", f"{t_old:.2f}", f"{t_new:.2f}", "<= 1",
                    f"{len(cur):,} rows"))
    ids = [r["id"] for r in cur]
    t_new, decided = timed(lambda: decide_pairs(db, ids, FILTERS), 3)
    old_decide = old_sql_decide(old, ids)
    db.release()
    t_old, decided_old = timed(old_decide)
    assert len(decided) == len(decided_old) == args.pairs
    assert [r["reason"] for r in decided[:100]] == [r["reason"] for r in decided_old[:100]]
    results.append((f"curation decision over {args.pairs:,} pairs (s)", f"{t_old:.2f}", f"{t_new:.2f}", "<= 2",
                    f"{sum(r['reason'] is None for r in decided):,} kept"))

    # store lookups of a no-op rerun: today's stamp check against the baseline's full hash
    rate_old, hashed_old = lookups(work / "store-old", old_store, args.lookups, 256 * 1024)
    rate_new, hashed_new = lookups(work / "store-new", store_mod, args.lookups, 256 * 1024)
    results.append(("no-op store lookups (per s)", f"{rate_old:,.0f}", f"{rate_new:,.0f}", ">= 10,000",
                    f"payload bytes read: {hashed_old:,} -> {hashed_new:,}"))

    print(f"\nbaseline = {args.baseline_rev}; same machine, same run\n")
    print(f"| operation | baseline | now | target | note |\n|---|---|---|---|---|")
    for row in results:
        print("| " + " | ".join(row) + " |")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


def old_sql_decide(db, ids):
    """The baseline's decision query (a list parameter scanned with list_contains)."""
    def run():
        pivot = ", ".join(f"max(value) FILTER (WHERE metric = '{m}') AS {m}" for m, _, _ in FILTERS.values())
        passes, reasons, params = [], [], []
        for field, (metric, op, value) in FILTERS.items():
            passes.append(f"coalesce({metric} {op} ?, false) AS pass_{field}")
            reasons.append(f"CASE WHEN {metric} IS NULL THEN '{metric} not measured' WHEN NOT ({metric} {op} ?) "
                           f"THEN printf('{metric} %.3f (need {op} %s)', {metric}, ?) END")
            params.append(value)
        for _, _, value in FILTERS.values():
            params += [value, str(value)]
        return db.query(f"""
            WITH wide AS (SELECT pair_score_id, any_value(clip_id) AS clip_id, any_value(edited_video_id) AS
                          edited_video_id, {pivot} FROM pair_metric WHERE list_contains(?, pair_score_id)
                          GROUP BY pair_score_id)
            SELECT *, {', '.join(passes)}, nullif(concat_ws('; ', {', '.join(reasons)}), '') AS reason
            FROM wide ORDER BY clip_id""", [ids, *params])
    return run


if __name__ == "__main__":
    main()
