"""The `sparkle` command: run the main job, open the UI, query lineage, check and clean a home.

    sparkle run [--folder DIR]... [--csv FILE]... [--release DIR]... [--no-bundled] [--theme T]...
                [--shared-only] [--verbose]                       materialize the whole graph: theme
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
    sparkle lineage [dataset] [--at TIME]                         the exported dataset's rows and their clips
                                                                  (now, or at TIME)
    sparkle lineage derived CLIP_OR_ARTIFACT [--at TIME] [--kind K]
                                                                  everything derived from it (of kind K)
    sparkle lineage sources ARTIFACT [--at TIME] [--kind K]       every source behind it (of kind K)
    sparkle lineage sql "SELECT ..."                              any read-only query
    sparkle lineage cost ARTIFACT                                 what it cost: its own compute plus its
                                                                  share of every ancestor's, by stage
    sparkle report [--theme T]...                                 the yield and cost funnel per stage
    sparkle plan --clips N [--themes a,b] [--profile FILE]        compute and pairs to expect for N clips
    sparkle verify                                                check the home holds together
    sparkle gc [--delete]                                         list (remove) what no run needs

Every subcommand takes --home (default $SPARKLE_HOME or ./.sparkle) and --storage (Dagster's run
storage: sqlite, or postgres on the server named by PGHOST/PGUSER/PGDATABASE/PGPASSWORD). The
Dagster instance of a home is `<home>/dagster` (DAGSTER_HOME); `run`, `ui` and `gc` first clear
runs whose process is gone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def configure_env(home: str | None, folders=(), csvs=(), bundled: bool | None = None, releases=()) -> Path:
    """Set the variables the definitions and Dagster read; returns the project home."""
    from .core.runs import instance_dir

    home_path = Path(home or os.environ.get("SPARKLE_HOME", ".sparkle")).expanduser().resolve()
    os.environ["SPARKLE_HOME"] = str(home_path)
    os.environ["DAGSTER_HOME"] = str(instance_dir(home_path))
    if folders:
        os.environ["SPARKLE_SOURCE_FOLDERS"] = os.pathsep.join(str(Path(f).resolve()) for f in folders)
    if csvs:
        os.environ["SPARKLE_SOURCE_CSVS"] = os.pathsep.join(str(Path(c).resolve()) for c in csvs)
    if releases:
        os.environ["SPARKLE_SOURCE_RELEASES"] = os.pathsep.join(str(Path(r).resolve()) for r in releases)
    if bundled is not None:
        os.environ["SPARKLE_BUNDLED"] = "1" if bundled else "0"
    instance_dir(home_path).mkdir(parents=True, exist_ok=True)
    return home_path


def quiet_preview_warnings() -> None:
    """Dagster's notes on preview features the definitions use speak to their authors, not to users."""
    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.PreviewWarning)


class SettingsError(ValueError):
    """A setting the command cannot work with (one line, for the user)."""


def _lineage(home: Path):
    from .core.lineage import open_lineage

    try:
        return open_lineage(home)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def open_home(home: Path, by: str, clear: bool = True):
    """The home's Dagster instance (created or repaired under a lock), after clearing runs whose
    process is gone (`clear`); None (with the reason printed) when the storage cannot be used."""
    from .core.runs import InstanceError, clear_dead_runs, open_instance

    try:
        instance = open_instance(home)
    except InstanceError as exc:
        print(f"{by}: {exc}", file=sys.stderr)
        return None
    if clear:
        for cleared in clear_dead_runs(instance, by=by):
            print(f"cleared dead {cleared}")
    return instance


def cmd_run(args) -> int:
    from .core.themes import theme_name_problem

    if problems := [p for p in map(theme_name_problem, args.theme) if p]:
        print("\n".join(problems), file=sys.stderr)
        return 2
    home = configure_env(args.home, args.folder, args.csv, False if args.no_bundled else None, args.release)
    quiet_preview_warnings()

    from .core.integrity import remove, stale_home_temporaries
    from .core.resources import ThemesResource, default_themes_dir
    from .core.runs import live_runs, run_job, wait_without_spinning
    from .core.themes import register_themes
    from .definitions import defs

    started = time.monotonic()
    instance = open_home(home, "sparkle run")
    if instance is None:
        return 2
    stale = stale_home_temporaries(home, any_live_run=bool(live_runs(instance)))
    if stale:
        size = sum(p.stat().st_size for p in stale if p.exists())
        print(f"removed {remove(stale)} temporary file(s) ({size / 1e6:.1f} MB) left by killed runs")
    wait_without_spinning()
    themes = ThemesResource(directory=default_themes_dir())
    added, errors = register_themes(instance, themes)
    for message in errors.values():
        print(f"skipping invalid theme file: {message}", file=sys.stderr)
    wanted = [] if args.shared_only else args.theme or sorted(themes.load()[0])
    unknown = sorted(set(wanted) - set(instance.get_dynamic_partitions("theme")))
    if unknown:
        print(f"no valid taxonomy file for theme(s) {', '.join(unknown)} in {themes.directory}", file=sys.stderr)
        return 2
    runs = []
    for job, theme in [("theme_independent", None)] + [("theme_assets", t) for t in wanted]:
        runs.append(run_job(instance, defs.resolve_job_def(job), theme, by="sparkle run", verbose=args.verbose))
        if not runs[-1].success and theme is None:
            break
    ok = all(r.success for r in runs) and len(runs) == 1 + len(wanted)
    elapsed = time.monotonic() - started
    print(f"\nsparkle run {'succeeded' if ok else 'FAILED'} in {elapsed:.1f}s "
          f"({len(runs)} runs; themes: {', '.join(wanted) or 'none'}{'; newly registered: ' + ', '.join(added) if added else ''})")
    db = _lineage(home)
    print_tables(db, wanted, [r.run_id for r in runs])
    print(f"\nOutputs (artifact store): {home / 'store'}")
    print(f"Contact sheets:           {home / 'contact_sheets'}/<theme>/<asset>.png")
    print(f"Lineage database:         {db.where}   (try: sparkle lineage sql \"FROM quarantine\")")
    print("Open the UI:              sparkle ui    (then http://127.0.0.1:3000)")
    return 0 if ok else 1


def print_tables(db, themes: list[str], run_ids: list[str]) -> None:
    """What the run left: clips in and kept per theme-independent stage, then per theme the pairs
    kept at each stage, the final pairs and where the dataset is; how much work was new, what it
    cost (wall seconds of the clips computed), what reuse saved, and how many clips timed out."""
    from .core.funnel import THEME_STAGES

    count = lambda asset, kind, part="": len(db.current_artifacts(asset, part, kind=kind))  # noqa: E731
    work: dict[str, dict[str, float]] = {}
    for row in db.query("SELECT partition, summary FROM materialization WHERE list_contains(?, run_id)", [run_ids]):
        for key, value in json.loads(row["summary"]).items():
            if key in ("computed", "reused", "failed", "quarantined", "timed_out", "compute_wall_s",
                       "reuse_saved_wall_s"):
                part = work.setdefault(row["partition"] or "-", {})
                part[key] = part.get(key, 0) + value
    for part, counts in sorted(work.items()):
        print(f"  work [{part}]: " + ", ".join(f"{k}={round(v, 1) if isinstance(v, float) else v}"
                                              for k, v in sorted(counts.items())))
    print(f"\nclips: {count('source_clips', 'source_clip')} ingested "
          f"({len(db.query('FROM quarantine'))} quarantined), {count('static_clips', 'static_clip')} fixed-camera, "
          f"{count('foreground_masks', 'foreground_mask')} with a usable mask")
    if not themes:
        return
    print(f"\n  {'theme':<10}" + "".join(f"{short:>9}" for _, _, short in THEME_STAGES) + "   dataset")
    for theme in themes:
        cells = "".join(f"{count(asset, kind, theme):>9}" for asset, kind, _ in THEME_STAGES)
        m = db.latest_materialization("sparkle_dataset", theme)
        where = json.loads(m["summary"])["root"] + f"/prompts/{theme}_train.csv" if m else "(not exported)"
        print(f"  {theme:<10}{cells}   {where}")


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port (bound the way uvicorn binds)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _dagster_dev_signals() -> None:  # in the child, before exec
    # A shell starts background jobs with SIGINT ignored, and `dagster dev` copies that onto SIGTERM:
    # it would then ignore both. Default handling lets it shut down its webserver and daemon.
    from .core.executor import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(signal.SIGTERM)  # and it stops if `sparkle ui` itself is killed


def cmd_train(args) -> int:
    home = configure_env(args.home)
    from .definitions import defs
    from .evaluation.run_configs import register_run_configs
    from .evaluation.trainer import default_training_dir

    instance = open_home(home, "sparkle train")
    if instance is None:
        return 2
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
    from .core.themes import theme_name_problem
    from .evaluation.run import run_bench

    if problems := [p for p in map(theme_name_problem, args.theme) if p]:
        print("\n".join(problems), file=sys.stderr)
        return 2
    home = configure_env(args.home)
    quiet_preview_warnings()
    instance = open_home(home, "sparkle bench")
    if instance is None:
        return 2
    return run_bench(args, home, instance)


def cmd_ui(args) -> int:
    """`dagster dev` on 127.0.0.1, supervised: a taken port fails at once, SIGTERM/SIGINT/SIGHUP stop
    every process it started (terminal or not) within seconds."""
    home = configure_env(args.home)
    host, port = "127.0.0.1", args.port
    if not port_free(host, port):
        print(f"sparkle ui: port {port} on {host} is already in use (another `sparkle ui` or Dagster?); "
              f"choose another with `sparkle ui --port {port + 1}`", file=sys.stderr)
        return 2
    if open_home(home, "sparkle ui") is None:
        return 2
    from .core.runs import instance_dir

    stop: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: stop.append(signum))
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", host, "-p", str(port)]
    # cwd: the instance folder, so a dagster.yaml in the caller's directory is not read
    dev = subprocess.Popen(cmd, cwd=instance_dir(home), preexec_fn=_dagster_dev_signals, start_new_session=True)
    print(f"sparkle ui: dagster dev (pid {dev.pid}) starting for {home}", flush=True)
    url, ready, deadline = f"http://{host}:{port}", False, time.monotonic() + args.start_timeout
    while dev.poll() is None and not stop:
        if not ready:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                    ready = response.status == 200
            except OSError:
                pass
            if ready:
                print(f"sparkle ui: serving on {url} (Ctrl-C or SIGTERM stops it)", flush=True)
            elif time.monotonic() > deadline:
                print(f"sparkle ui: the UI did not answer on {url} within {args.start_timeout:.0f}s; stopping",
                      file=sys.stderr, flush=True)
                stop.append(0)
                break
        time.sleep(0.5)
    return _stop_group(dev, stop)


def _stop_group(dev: subprocess.Popen, stop: list[int]) -> int:
    """Ask `dagster dev` and its children to stop, give them 5 s (its own shutdown waits on its
    children for far longer), then kill whatever is left of the group."""
    if dev.poll() is None:
        try:
            os.killpg(dev.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            dev.wait(5)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(dev.pid, signal.SIGKILL)  # the webserver, daemon, code servers and run workers
    except (ProcessLookupError, PermissionError):
        pass
    rc = dev.wait()
    if stop:
        print(f"sparkle ui: stopped ({signal.Signals(stop[0]).name if stop[0] else 'not ready'})", flush=True)
        return 0 if stop[0] else 1
    return rc


def cmd_env(args) -> int:
    from .core.runs import write_instance_yaml

    home = configure_env(args.home)
    write_instance_yaml(home)
    for name in ("SPARKLE_HOME", "DAGSTER_HOME", "SPARKLE_DAGSTER_STORAGE"):
        if name not in os.environ:
            continue
        print(f"export {name}={os.environ[name]}")
    return 0


def parse_time(text: str):
    """An ISO 8601 time (`2026-11-25T03:00`, `2026-11-25 03:00:00+01:00`); without a zone, local time."""
    from datetime import datetime

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SettingsError(f"--at: {text!r} is not an ISO 8601 time such as 2026-11-25T03:00") from None
    return when if when.tzinfo else when.astimezone()


def cmd_lineage(args) -> int:
    home = configure_env(args.home)
    db = _lineage(home)
    if not db.exists():
        print(f"no lineage database at {db.where}: run `sparkle run` first", file=sys.stderr)
        return 2
    if args.what != "dataset" and not args.ref:
        print(f"sparkle lineage {args.what} needs a clip id, artifact id or query", file=sys.stderr)
        return 2
    if args.what == "cost":
        return cmd_cost(args)
    from .core.lineage import LineageQueryError

    at = parse_time(args.at) if args.at else None
    try:
        if args.what == "dataset":
            rows = db.dataset(at)  # the local backend answers this one from the materialization history
        else:
            if at is not None:
                db = db.snapshot(at)
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
        print(f"{len(rows)} {'dataset row' if args.what == 'dataset' else 'artifact'}"
              f"{'' if len(rows) == 1 else 's'}" + (f" at {at.isoformat()}" if at else ""), file=sys.stderr)
    else:
        print(f"{len(rows)} row{'' if len(rows) == 1 else 's'}", file=sys.stderr)
    return 0


def cmd_cost(args) -> int:
    """`sparkle lineage cost ID`: an artifact's full cost (core.costs), with its breakdown by stage."""
    from .core.costs import full_costs

    db = _lineage(configure_env(args.home))
    if not db.exists():
        print(f"no lineage database at {db.where}: run `sparkle run` first", file=sys.stderr)
        return 2
    with db.session():
        seeds = db.seeds(args.ref)
        if len(seeds) != 1:
            print(f"{args.ref!r} matches {len(seeds)} artifacts: give one artifact id (or a unique prefix)",
                  file=sys.stderr)
            return 2
        cost = full_costs(db, seeds)[seeds[0]]
    print(json.dumps(cost.as_dict(), indent=1))
    print(f"{cost.kind} {cost.id}: {cost.total['wall_s']:.2f} wall s, {cost.total['cpu_s']:.2f} CPU s, "
          f"{cost.total['gpu_s']:.2f} GPU s over {cost.ancestors} ancestors"
          + (f" ({cost.unrecorded} without a recorded cost)" if cost.unrecorded else ""), file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    """`sparkle report`: the yield and cost funnel of the theme-independent stages and of each theme."""
    from .core.funnel import funnel, funnel_text
    from .core.themes import theme_name_problem

    if problems := [p for p in map(theme_name_problem, args.theme) if p]:
        print("\n".join(problems), file=sys.stderr)
        return 2
    db = _lineage(configure_env(args.home))
    if not db.exists():
        print(f"no lineage database at {db.where}: run `sparkle run` first", file=sys.stderr)
        return 2
    themes = args.theme or [r["partition"] for r in db.query(
        "SELECT DISTINCT partition FROM current_materialization WHERE asset_key = 'curated_pairs' ORDER BY 1")]
    with db.session():
        print(funnel_text(funnel(db, None), "theme-independent stages (every theme shares them)"))
        for theme in themes:
            print()
            print(funnel_text(funnel(db, theme), f"theme {theme}"))
    print("\nin = kept + dropped + failed; spent s: recorded wall seconds of the stage's current artifacts; "
          "wasted s: full cost (own + share of ancestors) of what the stage dropped or failed")
    return 0


def cmd_plan(args) -> int:
    """`sparkle plan --clips N`: compute and pairs to expect, from the runs so far (core.planner)."""
    from .core.planner import ProfileError, load_profile, measure, plan, plan_text
    from .core.themes import theme_name_problem

    if args.clips < 1 or args.clips > 10 ** 9:
        print("sparkle plan: --clips must be between 1 and 1e9", file=sys.stderr)
        return 2
    themes = [t.strip() for t in (args.themes or "").split(",") if t.strip()]
    if problems := [p for p in map(theme_name_problem, themes) if p]:
        print("\n".join(problems), file=sys.stderr)
        return 2
    try:
        profile = load_profile(args.profile) if args.profile else None
    except ProfileError as exc:
        print(f"sparkle plan: {exc}", file=sys.stderr)
        return 2
    db = _lineage(configure_env(args.home))
    if not db.exists():
        print(f"no lineage database at {db.where}: run `sparkle run` first", file=sys.stderr)
        return 2
    measured_themes = [r["partition"] for r in db.query(
        "SELECT DISTINCT partition FROM current_materialization WHERE asset_key = 'curated_pairs' ORDER BY 1")]
    themes = themes or measured_themes
    if not set(themes) <= set(measured_themes) or not themes:
        print(f"sparkle plan: no measurements for theme(s) {', '.join(sorted(set(themes) - set(measured_themes))) or '(none)'}"
              f"; measured: {', '.join(measured_themes) or 'none (run `sparkle run` first)'}", file=sys.stderr)
        return 2
    with db.session():
        rows = plan(measure(db, themes), args.clips, len(themes), profile)
    print(plan_text(rows, args.clips, themes))
    return 0


def cmd_verify(args) -> int:
    from .core.integrity import verify_home

    home = configure_env(args.home)
    instance = open_home(home, "sparkle verify", clear=False)
    if instance is None:
        return 2
    result = verify_home(home, instance)
    for problem in result.problems:
        print(problem)
    checked = ", ".join(f"{n} {what}" for what, n in result.checked.items())
    print(f"sparkle verify: {len(result.problems)} problem(s) in {home} (checked {checked})")
    return 1 if result.problems else 0


def cmd_gc(args) -> int:
    from .core.integrity import garbage, remove
    from .core.runs import live_runs

    home = configure_env(args.home)
    instance = open_home(home, "sparkle gc")
    if instance is None:
        return 2
    live = live_runs(instance)
    found = garbage(home, any_live_run=bool(live))
    if found.temporaries:
        size = found.size(found.temporaries)
        print(f"removed {remove(found.temporaries)} temporary file(s) ({size / 1e6:.1f} MB) left by killed runs")
    for title, group in (("orphans (committed to the store, missing from the lineage)", found.orphans),
                         ("uncommitted payloads (no sidecar)", found.uncommitted),
                         ("used only by older materializations", found.unreferenced)):
        if group:
            paths = [p for ps in group.values() for p in ps]
            print(f"{title}: {len(group)} artifact(s), {len(paths)} file(s), {found.size(paths) / 1e6:.1f} MB")
            for path in paths:
                print(f"  {path}")
    files = found.store_files
    if not files:
        print("sparkle gc: nothing in the store is unreferenced")
    elif not args.delete:
        print(f"sparkle gc: {len(files)} store file(s) no latest materialization references; "
              "`sparkle gc --delete` removes them")
    elif live:
        print(f"sparkle gc: not removing store files while run(s) {', '.join(live)} are in progress", file=sys.stderr)
        return 1
    else:
        print(f"sparkle gc: removed {remove(files)} store file(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparkle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="project home (default $SPARKLE_HOME or ./.sparkle)")
    parser.add_argument("--storage", choices=["sqlite", "postgres"],
                        help="Dagster run/event/schedule storage (default $SPARKLE_DAGSTER_STORAGE or sqlite; "
                             "postgres: the server named by PGHOST, PGUSER, PGDATABASE, PGPASSWORD)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize the whole asset graph")
    run.add_argument("--folder", action="append", default=[], help="a folder of source videos (repeatable)")
    run.add_argument("--csv", action="append", default=[], help="a Sparkle / Kiwi-Edit CSV (repeatable)")
    run.add_argument("--release", action="append", default=[],
                     help="a Sparkle release folder (prompts/{theme}_train.csv ...) as a source (repeatable)")
    run.add_argument("--no-bundled", action="store_true", help="leave out the bundled sample footage")
    run.add_argument("--theme", action="append", default=[], help="only this theme partition (repeatable; default: all)")
    run.add_argument("--shared-only", action="store_true",
                     help="only the theme-independent assets (ingest, fixed-camera filter, masks, clean backgrounds)")
    run.add_argument("--verbose", action="store_true", help="print Dagster's own log instead of one line per step")
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
    bench.add_argument("--verbose", action="store_true", help="print Dagster's own log instead of one line per step")
    bench.set_defaults(fn=cmd_bench)
    ui = sub.add_parser("ui", help="start the Dagster UI bound to 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--start-timeout", type=float, default=180.0, help="seconds to wait for the UI to answer")
    ui.set_defaults(fn=cmd_ui)
    sub.add_parser("env", help="print export lines for plain dagster commands").set_defaults(fn=cmd_env)
    lin = sub.add_parser("lineage", help="query the lineage database")
    lin.add_argument("what", nargs="?", default="dataset", choices=["dataset", "derived", "sources", "sql", "cost"],
                     help="dataset (default): the exported dataset's rows and the clips they came from")
    lin.add_argument("ref", nargs="?", help="clip id or artifact id (or a SQL query for `sql`)")
    lin.add_argument("--at", help="as it was at this time (ISO 8601; local time unless a zone is given)")
    lin.add_argument("--kind", help="only artifacts of this kind (derived / sources), e.g. dataset_row")
    lin.set_defaults(fn=cmd_lineage)
    rep = sub.add_parser("report", help="the yield and cost funnel per stage (theme-independent, then per theme)")
    rep.add_argument("--theme", action="append", default=[], help="only this theme (repeatable; default: all built)")
    rep.set_defaults(fn=cmd_report)
    pl = sub.add_parser("plan", help="compute and pairs to expect for N source clips, from the runs so far")
    pl.add_argument("--clips", type=int, required=True, help="source clips to plan for")
    pl.add_argument("--themes", help="comma-separated themes (default: every theme measured)")
    pl.add_argument("--profile", help="YAML of per-stage estimates (stages: {stage: {wall_s, gpu_s, device, note}})")
    pl.set_defaults(fn=cmd_plan)
    sub.add_parser("verify", help="check that the home holds together (store, lineage, runs)").set_defaults(fn=cmd_verify)
    gc = sub.add_parser("gc", help="list store files no current materialization references (remove with --delete)")
    gc.add_argument("--delete", action="store_true", help="remove them (refused while a run is in progress)")
    gc.set_defaults(fn=cmd_gc)
    args = parser.parse_args(argv)
    if args.storage:
        os.environ["SPARKLE_DAGSTER_STORAGE"] = args.storage
    if args.command == "train" and not args.config:
        args.config = ["tiny"]
    from .core.lineage import LineageVersionError
    from .core.runs import InstanceError

    try:
        return args.fn(args)
    except (SettingsError, InstanceError, LineageVersionError) as exc:
        print(f"sparkle: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
