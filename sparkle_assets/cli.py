"""The `sparkle` command: run the main job, open the UI, query lineage.

    sparkle run [--folder DIR]... [--csv FILE]... [--release DIR]... [--no-bundled] [--theme T]...
                                                                  materialize the whole graph: theme
                                                                  partitions registered from the taxonomy
                                                                  files, theme-independent assets once,
                                                                  then every theme's assets
    sparkle bench [--bench DIR]... [--openve CSV]... [--system NAME=DIR]... [--official NAME=DIR]...
                  [--judge automatic|vlm] [--theme T]... [--no-bench-split]
                                                                  Sparkle-Bench: every system judged on
                                                                  the bench samples; prints the table
    sparkle ui [--port 3000]                                      Dagster UI on 127.0.0.1
    sparkle env                                                   export lines for plain `dagster`
    sparkle train [--config NAME]...                              train (or reuse, or resume) the editor of each
                                                                  training configuration (training/*.yaml,
                                                                  default: tiny); `sparkle bench` then
                                                                  scores every checkpoint beside the baselines
    sparkle lineage derived CLIP_OR_ARTIFACT [--kind K]           everything derived from it (of kind K)
    sparkle lineage sources ARTIFACT [--kind K]                   every source behind it (of kind K)
    sparkle lineage sql "SELECT ..."                              any read-only query

Every subcommand takes --home (default $SPARKLE_HOME or ./.sparkle).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def configure_env(home: str | None, folders=(), csvs=(), bundled: bool | None = None, releases=()) -> Path:
    """Set the variables the definitions and dagster.yaml read; returns the project home."""
    home_path = Path(home or os.environ.get("SPARKLE_HOME", ".sparkle")).expanduser().resolve()
    os.environ["SPARKLE_HOME"] = str(home_path)
    os.environ["SPARKLE_DAGSTER_DIR"] = str(home_path / "dagster")
    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT))
    if folders:
        os.environ["SPARKLE_SOURCE_FOLDERS"] = os.pathsep.join(str(Path(f).resolve()) for f in folders)
    if csvs:
        os.environ["SPARKLE_SOURCE_CSVS"] = os.pathsep.join(str(Path(c).resolve()) for c in csvs)
    if releases:
        os.environ["SPARKLE_SOURCE_RELEASES"] = os.pathsep.join(str(Path(r).resolve()) for r in releases)
    if bundled is not None:
        os.environ["SPARKLE_BUNDLED"] = "1" if bundled else "0"
    (home_path / "dagster").mkdir(parents=True, exist_ok=True)
    return home_path


def _lineage(home: Path):
    from .core.lineage import Lineage

    return Lineage(home / "lineage.duckdb")


def cmd_run(args) -> int:
    from .core.themes import theme_name_problem

    if problems := [p for p in map(theme_name_problem, args.theme) if p]:
        print("\n".join(problems), file=sys.stderr)
        return 2
    home = configure_env(args.home, args.folder, args.csv, False if args.no_bundled else None, args.release)
    import dagster as dg

    from .definitions import defs
    from .core.resources import ThemesResource, default_themes_dir
    from .core.themes import register_themes

    started = time.monotonic()
    instance = dg.DagsterInstance.get()
    themes = ThemesResource(directory=default_themes_dir())
    added, errors = register_themes(instance, themes)
    for message in errors.values():
        print(f"skipping invalid theme file: {message}", file=sys.stderr)
    wanted = args.theme or sorted(themes.load()[0])
    unknown = sorted(set(wanted) - set(instance.get_dynamic_partitions("theme")))
    if unknown:
        print(f"no valid taxonomy file for theme(s) {', '.join(unknown)} in {themes.directory}", file=sys.stderr)
        return 2
    runs = [defs.resolve_job_def("theme_independent").execute_in_process(instance=instance, raise_on_error=False)]
    if runs[0].success:
        for theme in wanted:
            runs.append(defs.resolve_job_def("theme_assets").execute_in_process(
                instance=instance, partition_key=theme, raise_on_error=False))
    ok = all(r.success for r in runs)
    elapsed = time.monotonic() - started
    print(f"\nsparkle run {'succeeded' if ok else 'FAILED'} in {elapsed:.1f}s "
          f"({len(runs)} runs; themes: {', '.join(wanted) or 'none'}{'; newly registered: ' + ', '.join(added) if added else ''})")
    print_tables(_lineage(home), wanted, [r.run_id for r in runs])
    print(f"\nOutputs (artifact store): {home / 'store'}")
    print(f"Contact sheets:           {home / 'contact_sheets'}/<theme>/<asset>.png")
    print(f"Lineage database:         {home / 'lineage.duckdb'}   (try: sparkle lineage sql \"FROM quarantine\")")
    print("Open the UI:              sparkle ui    (then http://127.0.0.1:3000)")
    return 0 if ok else 1


THEME_STAGES = [("instructions", "instruction", "instr"), ("edited_first_frames", "edited_first_frame", "frame0"),
                ("background_plates", "background_plate", "plate"), ("background_videos", "background_video", "bg_video"),
                ("guidance_videos", "guidance_video", "guidance"), ("edited_videos", "edited_video", "edited"),
                ("pair_scores", "pair_score", "scored"), ("curated_pairs", "curated_pair", "FINAL"),
                ("bench_split", "bench_row", "bench")]


def print_tables(db, themes: list[str], run_ids: list[str]) -> None:
    """What the run left: clips in and kept per theme-independent stage, then per theme the pairs
    kept at each stage, the final pairs and where the dataset is; and how much work was new."""
    count = lambda asset, kind, part="": len(db.current_artifacts(asset, part, kind=kind))  # noqa: E731
    work: dict[str, dict[str, int]] = {}
    for row in db.query("SELECT partition, summary FROM materialization WHERE list_contains(?, run_id)", [run_ids]):
        for key, value in json.loads(row["summary"]).items():
            if key in ("computed", "reused", "failed", "quarantined"):
                part = work.setdefault(row["partition"] or "-", {})
                part[key] = part.get(key, 0) + value
    for part, counts in sorted(work.items()):
        print(f"  work [{part}]: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    print(f"\nclips: {count('source_clips', 'source_clip')} ingested "
          f"({len(db.query('FROM quarantine'))} quarantined), {count('static_clips', 'static_clip')} fixed-camera, "
          f"{count('foreground_masks', 'foreground_mask')} with a usable mask")
    print(f"\n  {'theme':<10}" + "".join(f"{short:>9}" for _, _, short in THEME_STAGES) + "   dataset")
    for theme in themes:
        cells = "".join(f"{count(asset, kind, theme):>9}" for asset, kind, _ in THEME_STAGES)
        m = db.latest_materialization("sparkle_dataset", theme)
        where = json.loads(m["summary"])["root"] + f"/prompts/{theme}_train.csv" if m else "(not exported)"
        print(f"  {theme:<10}{cells}   {where}")


def cmd_train(args) -> int:
    home = configure_env(args.home)
    import dagster as dg

    from .definitions import defs
    from .evaluation.run_configs import register_run_configs
    from .evaluation.trainer import default_training_dir

    instance = dg.DagsterInstance.get()
    _, errors = register_run_configs(instance, default_training_dir())
    for message in errors.values():
        print(f"skipping invalid training configuration: {message}", file=sys.stderr)
    known = set(instance.get_dynamic_partitions("run_config"))
    unknown = sorted(set(args.config) - known)
    if unknown:
        print(f"no valid training configuration {', '.join(unknown)} in {default_training_dir()}", file=sys.stderr)
        return 2
    db = _lineage(home)
    ok = True
    for name in args.config:
        run = defs.resolve_job_def("train_editor").execute_in_process(instance=instance, partition_key=name,
                                                                      raise_on_error=False)
        ok &= run.success
        for row in db.query("SELECT summary FROM materialization WHERE run_id = ?", [run.run_id]):
            print(f"editor_checkpoint[{name}]: {row['summary']}")
        if not run.success:
            failure = next((e for e in run.all_events if e.event_type_value == "STEP_FAILURE"), None)
            print(f"editor_checkpoint[{name}]: FAILED: "
                  f"{failure.event_specific_data.error.message.strip() if failure else '?'}", file=sys.stderr)
    print(f"\nCheckpoints: {home / 'checkpoints'}/<config>/   Next: `sparkle bench` (every checkpoint is a system "
          "of the table, system editor_<config>)")
    return 0 if ok else 1


def cmd_bench(args) -> int:
    from .evaluation.run import run_bench

    return run_bench(args, configure_env(args.home))


def cmd_ui(args) -> int:
    configure_env(args.home)
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml"),
           "-h", "127.0.0.1", "-p", str(args.port)]
    os.chdir(REPO_ROOT)
    os.execv(sys.executable, cmd)


def cmd_env(args) -> int:
    configure_env(args.home)
    for name in ("SPARKLE_HOME", "SPARKLE_DAGSTER_DIR", "DAGSTER_HOME"):
        print(f"export {name}={os.environ[name]}")
    return 0


def cmd_lineage(args) -> int:
    home = configure_env(args.home)
    db = _lineage(home)
    if not db.db_path.exists():
        print(f"no lineage database at {db.db_path}: run `sparkle run` first", file=sys.stderr)
        return 2
    from .core.lineage import LineageQueryError

    try:
        if args.what == "sql":
            rows = db.console_query(args.ref)
        else:
            rows = db.derived_from(args.ref) if args.what == "derived" else db.sources_of(args.ref)
            rows = [r for r in rows if args.kind in (None, r["kind"])]
    except (KeyError, LineageQueryError) as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    for row in rows:
        print(json.dumps(row, default=str))
    if args.what != "sql":
        print(f"{len(rows)} artifact(s)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparkle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="project home (default $SPARKLE_HOME or ./.sparkle)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize the whole asset graph")
    run.add_argument("--folder", action="append", default=[], help="a folder of source videos (repeatable)")
    run.add_argument("--csv", action="append", default=[], help="a Sparkle / Kiwi-Edit CSV (repeatable)")
    run.add_argument("--release", action="append", default=[],
                     help="a Sparkle release folder (prompts/{theme}_train.csv ...) as a source (repeatable)")
    run.add_argument("--no-bundled", action="store_true", help="leave out the bundled sample footage")
    run.add_argument("--theme", action="append", default=[], help="only this theme partition (repeatable; default: all)")
    run.set_defaults(fn=cmd_run)
    train = sub.add_parser("train", help="train the editor of a training configuration")
    train.add_argument("--config", action="append", default=[],
                       help="a training configuration (file name in training/, repeatable; default: tiny)")
    train.set_defaults(fn=cmd_train)
    bench = sub.add_parser("bench", help="score every system on the bench samples and print the table")
    bench.add_argument("--bench", action="append", default=[], help="a Sparkle-Bench folder (repeatable)")
    bench.add_argument("--openve", action="append", default=[], help="an OpenVE-Bench CSV (repeatable)")
    bench.add_argument("--system", action="append", default=[], metavar="NAME=DIR",
                       help="an editing model's outputs (Kiwi-Edit layout or flat {id}_edited.mp4; repeatable)")
    bench.add_argument("--official", action="append", default=[], metavar="NAME=DIR",
                       help="a folder of official *_sparkle_score.jsonl results to show beside ours (repeatable)")
    bench.add_argument("--judge", choices=["automatic", "vlm"], help="the judge (default automatic)")
    bench.add_argument("--theme", action="append", default=[], help="only this theme partition (repeatable)")
    bench.add_argument("--no-bench-split", action="store_true", help="leave out our own bench_split samples")
    bench.set_defaults(fn=cmd_bench)
    ui = sub.add_parser("ui", help="start the Dagster UI bound to 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(fn=cmd_ui)
    sub.add_parser("env", help="print export lines for plain dagster commands").set_defaults(fn=cmd_env)
    lin = sub.add_parser("lineage", help="query the lineage database")
    lin.add_argument("what", choices=["derived", "sources", "sql"])
    lin.add_argument("ref", help="clip id or artifact id (or a SQL query for `sql`)")
    lin.add_argument("--kind", help="only artifacts of this kind (derived / sources), e.g. dataset_row")
    lin.set_defaults(fn=cmd_lineage)
    args = parser.parse_args(argv)
    if args.command == "train" and not args.config:
        args.config = ["tiny"]
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
