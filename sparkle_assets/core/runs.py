"""The Dagster instance of a project home, and the process behind each of its runs.

- `open_instance(home)`: the instance lives in `<home>/dagster` (DAGSTER_HOME), with the repository's
  dagster.yaml written there minus the SQLite storage entries that are only for plain `dagster dev` in
  the repository root. Its storage is created once, under a file lock: Dagster's SQLite storages
  stamp their schema version with no lock between processes, so runs started at the same second on a
  fresh home could leave `alembic_version` with two heads and every later run failing. A home left
  that way is repaired (the extra row removed, Dagster's data migrations re-run) or refused with
  what to do.
- Which process a run belongs to: `sparkle run` tags its runs with its pid, host and process start
  (`process_tags`); other runs are known by the pid Dagster logs for them (`run_process`).
- `clear_dead_runs`: runs whose process is gone (kill -9, out of memory) stay STARTED for Dagster and
  keep their pool slots; they are marked failed with the reason and their slots freed, as are the
  slots finished runs still hold.
- `RunConsole`: what `sparkle run` prints instead of Dagster's debug log (each step's start and
  counts), and, while a step waits for a pool slot, which run holds it (clearing it if its process is
  gone).
- `wait_without_spinning`: Dagster 1.13's in-process executor polls a blocked pool slot in a busy
  loop; this makes it sleep until its next check.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TAG_PID, TAG_HOST, TAG_PROCESS = "sparkle/pid", "sparkle/host", "sparkle/process"
# the SQLite databases Dagster creates under DAGSTER_HOME, each with an alembic_version table
SQLITE_DBS = ("history/runs.db", "history/runs/index.db", "schedules/schedules.db")
# the dagster.yaml entries only meant for `dagster dev` in the repository root (see dagster.yaml)
ROOT_ONLY_ENTRIES = ("storage", "local_artifact_storage", "compute_logs")


class InstanceError(RuntimeError):
    """A project home whose Dagster storage cannot be used; the message says what to do."""


def instance_dir(home: Path) -> Path:
    return Path(home) / "dagster"


def instance_yaml(template: Path = REPO_ROOT / "dagster.yaml", storage: str | None = None) -> str:
    """The dagster.yaml of a project home: the repository's, without the entries that point Dagster
    at `.sparkle/dagster` relative to the current directory, and with the run storage chosen by
    `storage` (default SPARKLE_DAGSTER_STORAGE): `sqlite` (under the instance folder) or `postgres`
    (deploy/dagster-postgres.yaml's block: the server from PGHOST, PGPORT (default 5432), PGUSER,
    PGDATABASE; the password from PGPASSWORD when the instance loads, never written to a file)."""
    storage = storage or os.environ.get("SPARKLE_DAGSTER_STORAGE", "sqlite")
    if storage not in ("sqlite", "postgres"):
        raise InstanceError(f"SPARKLE_DAGSTER_STORAGE must be 'sqlite' or 'postgres', got {storage!r}")
    config = yaml.safe_load(template.read_text()) or {}
    for key in ROOT_ONLY_ENTRIES:
        text = yaml.safe_dump(config.get(key))
        if key in config and ".sparkle/dagster" in text:
            del config[key]
    if storage == "postgres":
        missing = [v for v in ("PGHOST", "PGUSER", "PGDATABASE") if not os.environ.get(v)]
        if missing:
            raise InstanceError(f"PostgreSQL storage needs {', '.join(missing)} (and PGPASSWORD unless the server "
                                "trusts this host; PGPORT defaults to 5432)")
        os.environ.setdefault("PGPORT", "5432")
        os.environ.setdefault("PGPASSWORD", "")
        config["storage"] = yaml.safe_load((REPO_ROOT / "deploy" / "dagster-postgres.yaml").read_text())["storage"]
    return "# Written by `sparkle` from the repository's dagster.yaml; edit that one.\n" + \
        yaml.safe_dump(config, sort_keys=False)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _alembic_head() -> str:
    from alembic.script import ScriptDirectory
    from dagster._core.storage.runs.sqlite import sqlite_run_storage
    from dagster._core.storage.sql import get_alembic_config

    return ScriptDirectory.from_config(get_alembic_config(sqlite_run_storage.__file__)).get_current_head()


def repair_version_tables(dagster_dir: Path) -> list[str]:
    """Remove the extra rows two processes stamping a fresh database at once leave in its
    `alembic_version` table (both built the schema of the installed Dagster, so its head is kept).
    Returns one line per database repaired."""
    repaired, head = [], None
    for rel in SQLITE_DBS:
        db = dagster_dir / rel
        if not db.is_file():
            continue
        con = sqlite3.connect(db, timeout=60)
        try:
            if not con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'").fetchone():
                continue
            rows = [r[0] for r in con.execute("SELECT version_num FROM alembic_version")]
            if len(rows) > 1:
                head = head or _alembic_head()
                if head not in rows:
                    raise InstanceError(
                        f"{db}: its schema version table lists {rows}, none of them this Dagster's ({head}). "
                        f"Move {dagster_dir} aside (the run history is lost; the store and the lineage "
                        f"database are kept) and run again.")
                with con:
                    con.execute("DELETE FROM alembic_version WHERE version_num != ?", (head,))
                repaired.append(f"{rel}: schema versions {rows} -> {head}")
        finally:
            con.close()
    return repaired


def write_instance_yaml(home: Path) -> Path:
    """Write `<home>/dagster/dagster.yaml` (when it differs) from the repository's."""
    config = instance_dir(home) / "dagster.yaml"
    text = instance_yaml()
    if not config.is_file() or config.read_text() != text:
        config.parent.mkdir(parents=True, exist_ok=True)
        tmp = config.with_name(f".dagster.yaml.tmp-{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, config)
    return config


def open_instance(home: Path, say: Callable[[str], None] = print):
    """The Dagster instance of a project home (see the module docstring); DAGSTER_HOME must be
    `instance_dir(home)` (the CLI's `configure_env` sets it)."""
    import dagster as dg

    ddir = instance_dir(home)
    if Path(os.environ.get("DAGSTER_HOME", "")).resolve() != ddir.resolve():
        raise InstanceError(f"DAGSTER_HOME must be {ddir} for the project home {home}")
    with _file_lock(ddir / ".instance.lock"):
        write_instance_yaml(home)
        repaired = repair_version_tables(ddir)
        try:
            instance = dg.DagsterInstance.get()
            instance.run_storage, instance.event_log_storage, instance.schedule_storage  # noqa: B018 - created here
            if repaired:
                instance.upgrade()  # the data migrations a crashed first start may have skipped
        except Exception as exc:  # noqa: BLE001 - said in one line, with the fix
            raise InstanceError(
                f"the Dagster storage in {ddir} cannot be opened ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
                f"Move {ddir} aside (the run history is lost; the store and the lineage database are kept) "
                "and run again.") from exc
    for line in repaired:
        say(f"repaired the Dagster storage of {home} (left by runs started at the same time): {line}")
    return instance


# -- processes --------------------------------------------------------------------------------

def _process_start(pid: int) -> str | None:
    """Boot id and start time of a process (telling a pid reused after a restart or a reboot apart)."""
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except (OSError, IndexError):
        return None
    return f"{boot}:{start}"


def process_alive(pid: int, started: str | None = None) -> bool:
    """Whether process `pid` of this machine runs (and, given `started`, is the same process)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except (OverflowError, ValueError):
        return False
    try:  # a killed child its parent has not waited for yet is a zombie: gone
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    return not started or _process_start(pid) in (None, started)


def process_tags() -> dict[str, str]:
    """Run tags naming the current process (set on every run `sparkle run` launches)."""
    tags = {TAG_PID: str(os.getpid()), TAG_HOST: socket.gethostname()}
    if started := _process_start(os.getpid()):
        tags[TAG_PROCESS] = started
    return tags


@dataclass(frozen=True)
class RunProcess:
    pid: int
    host: str | None  # None: this machine, as far as anyone can tell (a local SQLite home)
    started: str | None = None

    @property
    def local(self) -> bool:
        return self.host in (None, socket.gethostname())

    def alive(self) -> bool | None:
        """True/False for a process of this machine; None when it runs elsewhere (unknown)."""
        return process_alive(self.pid, self.started) if self.local else None

    def __str__(self) -> str:
        return f"pid {self.pid}" + (f" on {self.host}" if self.host else "")


def run_process(instance, run) -> RunProcess | None:
    """The process of a run: from sparkle's tags, else the first pid Dagster logged for it (the run
    worker of a UI run, the CLI of `dagster asset materialize`) when the storage is a local SQLite one."""
    import dagster as dg
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

    if TAG_PID in run.tags:
        return RunProcess(int(run.tags[TAG_PID]), run.tags.get(TAG_HOST), run.tags.get(TAG_PROCESS))

    if not isinstance(instance.run_storage, SqliteRunStorage):
        return None
    for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        metadata = entry.dagster_event.engine_event_data.metadata or {}
        if "pid" in metadata:
            return RunProcess(int(metadata["pid"].value), None)
    return None


# -- dead runs and pool slots -------------------------------------------------------------------

@dataclass
class ClearedRun:
    """A run found with its process gone (or finished but still holding pool slots)."""

    run_id: str
    job: str
    process: RunProcess | None
    was: str  # its status when found
    slots: list[str] = field(default_factory=list)  # "pool (step)" freed

    def __str__(self) -> str:
        freed = f"; freed pool slot(s): {', '.join(self.slots)}" if self.slots else ""
        if self.was in ("SUCCESS", "FAILURE", "CANCELED"):
            return f"run {self.run_id} ({self.job}, {self.was.lower()}){freed}"
        return f"run {self.run_id} ({self.job}, {self.was}, {self.process}: process gone) marked failed{freed}"


def _slots_of(instance, run_id: str) -> list[str]:
    storage = instance.event_log_storage
    keys = sorted(storage.get_concurrency_keys())
    return [f"{pool} ({slot.step_key})" for pool, info in storage.get_concurrency_infos(keys).items()
            for slot in info.claimed_slots if slot.run_id == run_id]


def in_progress_runs(instance) -> list:
    import dagster as dg

    statuses = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
                dg.DagsterRunStatus.CANCELING]
    return list(instance.get_runs(filters=dg.RunsFilter(statuses=statuses)))


def dead_runs(instance) -> list[tuple[object, RunProcess]]:
    """Runs in progress whose process is known to be gone."""
    out = []
    for run in in_progress_runs(instance):
        proc = run_process(instance, run)
        if proc is not None and proc.alive() is False:
            out.append((run, proc))
    return out


def live_runs(instance) -> list[str]:
    """Ids of runs in progress whose process runs (or cannot be checked from here)."""
    out = []
    for run in in_progress_runs(instance):
        proc = run_process(instance, run)
        if proc is None or proc.alive() is not False:
            out.append(run.run_id)
    return out


def clear_run(instance, run, proc: RunProcess | None, by: str) -> ClearedRun:
    """Mark a run whose process is gone failed (with the reason) and free its pool slots."""
    cleared = ClearedRun(run.run_id, run.job_name, proc, run.status.value, _slots_of(instance, run.run_id))
    if not run.is_finished:
        instance.report_run_failed(run, f"The process of this run ({proc}) is gone (killed, or out of memory); "
                                        f"marked failed by `{by}`. Pool slots freed: {', '.join(cleared.slots) or 'none'}.")
    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return cleared


def clear_dead_runs(instance, by: str = "sparkle") -> list[ClearedRun]:
    """Clear every run whose process is gone, and free the slots finished runs still hold."""
    cleared = [clear_run(instance, run, proc, by) for run, proc in dead_runs(instance)]
    done = {c.run_id for c in cleared}
    for run_id in sorted(instance.event_log_storage.get_concurrency_run_ids() - done):
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            slots = _slots_of(instance, run_id)
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            if slots:
                cleared.append(ClearedRun(run_id, run.job_name if run else "?", None,
                                          run.status.value if run else "FAILURE", slots))
    return cleared


# -- what `sparkle run` shows -----------------------------------------------------------------

COUNT_KEYS = ("files", "clips", "pairs", "rows", "computed", "reused", "kept", "dropped", "quarantined", "failed")
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}  # events are still stored


def run_job(instance, job_def, partition: str | None, by: str, verbose: bool = False,
            say: Callable[[str], None] = lambda line: print(line, flush=True)):
    """Execute a job in this process as the CLI does: tagged with this process (so a kill is
    detected), one line per step instead of Dagster's log unless `verbose`; returns its result."""
    from dagster._core.utils import make_new_run_id

    run_id = make_new_run_id()
    say(f"{job_def.name}{f'[{partition}]' if partition else ''}: run {run_id}")
    with RunConsole(instance, run_id, job_def.name, say=say, by=by):
        return job_def.execute_in_process(instance=instance, partition_key=partition, run_id=run_id,
                                          tags=process_tags(), run_config=None if verbose else QUIET_CONSOLE,
                                          raise_on_error=False)


class RunConsole:
    """An event listener for one run: a line when a step starts and one with its counts when it
    ends; while a step waits for a pool slot, a line naming the run that holds it, checked every
    `poll_s` seconds (a holder whose process is gone is cleared, and the step goes on)."""

    def __init__(self, instance, run_id: str, job: str, say: Callable[[str], None], by: str,
                 poll_s: float = 2.0):
        self.instance, self.run_id, self.job, self.say, self.by, self.poll_s = instance, run_id, job, say, by, poll_s
        self.t0 = time.monotonic()
        self.counts: dict[str, dict] = {}
        self.blocked: dict[str, str] = {}  # step -> pool
        self.told: set[tuple[str, str]] = set()  # (pool, holder run) already announced
        self.cleared: list[ClearedRun] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="sparkle-pool-watch", daemon=True)

    def __enter__(self) -> RunConsole:
        self.instance.add_event_listener(self.run_id, self.on_event)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _line(self, text: str) -> None:
        self.say(f"  [{time.monotonic() - self.t0:6.1f}s] {text}")

    def on_event(self, entry) -> None:
        try:
            self._on_event(entry)
        except Exception as exc:  # noqa: BLE001 - never break the run for a progress line
            self.say(f"  (progress display error: {type(exc).__name__}: {exc})")

    def _on_event(self, entry) -> None:
        import dagster as dg

        ev = entry.dagster_event
        if ev is None:
            return
        kind, step = ev.event_type, ev.step_key
        if kind == dg.DagsterEventType.STEP_START:
            self.blocked.pop(step, None)
            self._line(f"{step} ...")
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            metadata = ev.event_specific_data.materialization.metadata
            self.counts[step] = {k: metadata[k].value for k in COUNT_KEYS if k in metadata}
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            check = ev.event_specific_data
            if not check.passed:
                self._line(f"check {check.check_name} on {check.asset_key.to_user_string()} FAILED")
        elif kind == dg.DagsterEventType.STEP_SUCCESS:
            if step in self.counts:
                counts = ", ".join(f"{k}={v}" for k, v in self.counts[step].items())
                self._line(f"{step} done: {counts}")
        elif kind == dg.DagsterEventType.STEP_FAILURE:
            error = ev.event_specific_data.error
            while error is not None and error.cause is not None:  # the error under Dagster's wrappers
                error = error.cause
            message = (error.message if error else "").strip().splitlines()
            self._line(f"{step} FAILED: {message[-1] if message else 'see the run in the UI'}")
        elif kind == dg.DagsterEventType.ENGINE_EVENT and "pool" in (ev.engine_event_data.metadata or {}):
            self.blocked[step] = str(ev.engine_event_data.metadata["pool"].value)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            if self.blocked:
                try:
                    self._check_holders()
                except Exception as exc:  # noqa: BLE001 - the run goes on without the message
                    self.say(f"  (pool check error: {type(exc).__name__}: {exc})")

    def _check_holders(self) -> None:
        for step, pool in list(self.blocked.items()):
            info = self.instance.event_log_storage.get_concurrency_info(pool)
            for slot in info.claimed_slots:
                if not slot.run_id or slot.run_id == self.run_id:
                    continue
                run = self.instance.get_run_by_id(slot.run_id)
                proc = run_process(self.instance, run) if run is not None else None
                if run is None or run.is_finished or (proc is not None and proc.alive() is False):
                    cleared = clear_run(self.instance, run, proc, self.by) if run is not None else None
                    if cleared is None:
                        self.instance.event_log_storage.free_concurrency_slots_for_run(slot.run_id)
                    else:
                        self.cleared.append(cleared)
                    self._line(f"cleared dead {cleared or 'run ' + slot.run_id}; {step} goes on")
                elif (pool, slot.run_id) not in self.told:
                    self.told.add((pool, slot.run_id))
                    self._line(f"{step} waits for pool `{pool}` ({info.slot_count} slot(s)): held by run "
                               f"{slot.run_id} ({run.job_name}, step {slot.step_key}, {proc or 'process unknown'}); "
                               "it starts when that step ends")


def wait_without_spinning() -> None:
    """Make a step blocked on a pool slot sleep until its next check instead of spinning.

    Dagster 1.13's `InstanceConcurrencyContext.interval_to_next_pending_claim_check` returns
    `min(0, ...)`, never positive, so the in-process executor's wait loop never sleeps (a blocked
    `sparkle run` used most of a core). This is the fix upstream PR dagster-io/dagster#20367 meant
    (unmerged): the time to the earliest pending re-check. Private API, pinned with dagster==1.13.27.
    """
    from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

    def interval(self) -> float:
        if not self._pending_claims or not self._pending_timeouts:
            return 0.0
        now = time.time()
        return max(0.0, min(t - now for t in self._pending_timeouts.values()))

    InstanceConcurrencyContext.interval_to_next_pending_claim_check = interval
