"""Per-file lineage in DuckDB: which artifact came from which, in which run, with what outcome.

Tables (their names and columns are a contract; other tools read them):

- ``artifact``: one row per artifact id (see store.py), with its status (``ok``, ``failed``,
  ``quarantined``, ``dropped``) and the reason when it is not ok.
- ``artifact_edge``: child -> parent with a role (``source``, ``clip``, ``score``...).
- ``materialization``: one row per asset materialization (run, asset, partition), with the data
  version Dagster was given, the input data versions, and the ids of the artifacts that make it up.
- ``score``: numeric scores per artifact and metric (for histograms and filters in SQL).
- ``artifact_cost`` (added in schema 3; older databases get it empty): the compute that made an
  artifact, one row per artifact id, written by the run that computed it (core.costs says how).
- view ``quarantine``: inputs refused at ingest, with their reason.
- view ``pair_metric``: one row per final pair and metric (theme, clip, pair-score and edited-video
  ids, metric, value; NULL when not measured), what `curated_pairs` filters.

Added for speed at scale (derived from the tables above, rebuilt by `migrate` for older databases):

- ``current_artifact`` (asset_key, partition, artifact_id): the artifacts of each asset partition's
  latest materialization, what every downstream step reads first;
- ``current_materialization`` (asset_key, partition, run_id, created_at): which one that is;
- ``lineage_meta``: the schema version. Indexes on edges (both ways), artifact clip ids and scores.

DuckDB allows one writing process per file, while Dagster runs steps in parallel processes. So a
step never writes the database directly: it writes a *fragment* (a folder of Parquet files, renamed
into place complete) and then merges every pending fragment under an exclusive file lock, in bulk
(one insert per table and fragment). Merging is idempotent (upserts keyed by id), so a fragment
merged twice, or merged by another process, changes nothing. Readers take a shared lock and open the
database read-only; a process keeps that connection for `READ_KEEPALIVE_S` after its last query (opening
a DuckDB file costs more than a lookup in it) unless a writer is waiting, and `session()` holds one for a
burst of queries.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import gc
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from .executor import Cost
from .store import atomic_write_bytes

SCHEMA_VERSION = "3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS artifact (
    id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    asset_key VARCHAR NOT NULL,
    partition VARCHAR,
    clip_id VARCHAR,
    theme VARCHAR,
    uri VARCHAR,
    bytes BIGINT,
    content_hash VARCHAR,
    code_version VARCHAR,
    params JSON,
    run_id VARCHAR,
    created_at TIMESTAMPTZ,
    status VARCHAR NOT NULL,
    reason VARCHAR,
    info JSON
);
CREATE TABLE IF NOT EXISTS artifact_edge (
    child_id VARCHAR NOT NULL,
    parent_id VARCHAR NOT NULL,
    role VARCHAR NOT NULL,
    PRIMARY KEY (child_id, parent_id, role)
);
CREATE TABLE IF NOT EXISTS materialization (
    run_id VARCHAR NOT NULL,
    asset_key VARCHAR NOT NULL,
    partition VARCHAR NOT NULL,
    code_version VARCHAR,
    data_version VARCHAR,
    input_data_versions JSON,
    created_at TIMESTAMPTZ,
    artifact_ids VARCHAR[],
    summary JSON,
    PRIMARY KEY (run_id, asset_key, partition)
);
CREATE TABLE IF NOT EXISTS score (
    artifact_id VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    value DOUBLE,
    PRIMARY KEY (artifact_id, metric)
);
CREATE TABLE IF NOT EXISTS artifact_cost (
    artifact_id VARCHAR PRIMARY KEY,
    run_id VARCHAR,
    wall_s DOUBLE,
    cpu_s DOUBLE,
    peak_rss_mb DOUBLE,
    device VARCHAR,
    backend VARCHAR,
    gpu_s DOUBLE,
    gpu_peak_mb DOUBLE,
    share DOUBLE,
    measured VARCHAR
);
CREATE TABLE IF NOT EXISTS current_materialization (
    asset_key VARCHAR NOT NULL,
    partition VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMPTZ,
    PRIMARY KEY (asset_key, partition)
);
CREATE TABLE IF NOT EXISTS current_artifact (
    asset_key VARCHAR NOT NULL,
    partition VARCHAR NOT NULL,
    artifact_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS lineage_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE INDEX IF NOT EXISTS artifact_edge_parent ON artifact_edge (parent_id);
CREATE INDEX IF NOT EXISTS artifact_edge_child ON artifact_edge (child_id);
CREATE INDEX IF NOT EXISTS artifact_clip ON artifact (clip_id);
CREATE INDEX IF NOT EXISTS current_artifact_key ON current_artifact (asset_key, partition);
"""
# the views over the tables, the same in every backend
VIEWS = """
CREATE OR REPLACE {temp} VIEW quarantine AS
    SELECT clip_id, uri, reason, run_id, created_at FROM artifact WHERE status = 'quarantined';
CREATE OR REPLACE {temp} VIEW pair_metric AS
    SELECT a.theme, a.clip_id, a.id AS pair_score_id, e.parent_id AS edited_video_id, s.metric, s.value
    FROM score s JOIN artifact a ON a.id = s.artifact_id
    LEFT JOIN artifact_edge e ON e.child_id = a.id AND e.role = 'video'
    WHERE a.kind = 'pair_score';
"""
CONTRACT = ("artifact", "artifact_edge", "materialization", "score", "artifact_cost", "current_materialization",
            "current_artifact", "quarantine", "pair_metric")  # what every backend answers queries over
DATASET_ASSET = "sparkle_dataset"

COST_COLUMNS = ("artifact_id", "run_id", "wall_s", "cpu_s", "peak_rss_mb", "device", "backend", "gpu_s",
                "gpu_peak_mb", "share", "measured")
ARTIFACT_COLUMNS = ("id", "kind", "asset_key", "partition", "clip_id", "theme", "uri", "bytes",
                    "content_hash", "code_version", "params", "run_id", "created_at", "status",
                    "reason", "info")
UNPARTITIONED = ""  # the partition value of assets without partitions
# the SQL console: the database file only, read-only; settings cannot be changed back
CONSOLE_CONFIG = {"enable_external_access": False, "autoload_known_extensions": False,
                  "autoinstall_known_extensions": False, "lock_configuration": True}


class LineageVersionError(ValueError):
    """The lineage file was written by a DuckDB newer than the pinned one."""


def _connect(path: Path, **kwargs) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, with a clear way out for a file written by a newer DuckDB (versions of this
    project before the DuckLake backend pinned DuckDB 2.0, whose files 1.5 cannot read)."""
    try:
        return duckdb.connect(str(path), **kwargs)
    except duckdb.IOException as exc:
        if "newer version" not in str(exc):
            raise
        raise LineageVersionError(
            f"{path} was written by a newer DuckDB than this project's {duckdb.__version__} (versions before the "
            f"DuckLake backend pinned DuckDB 2.0); convert it once with scripts/lineage_downgrade.sh "
            f"{path.parent}") from None


class LineageQueryError(ValueError):
    """A console query DuckDB refused or could not run, or a question this backend cannot answer (one line)."""


_ARROW_EXACT = {"VARCHAR", "DOUBLE", "BOOLEAN", "BIGINT", "INTEGER"}  # Arrow gives the same Python values


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while 100K+ row dicts are built: otherwise each
    generation-0 threshold crossed triggers collections over everything allocated so far."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _rows(cur: duckdb.DuckDBPyConnection) -> list[dict]:
    """A result's rows as dicts. Columns of plain types are fetched column-wise through Arrow
    (about 2x faster than `fetchall` over 100K+ rows: a curation decision); others row by row."""
    names = [d[0] for d in cur.description]
    with _gc_paused():
        if all(str(d[1]) in _ARROW_EXACT for d in cur.description):
            columns = [column.to_pylist() for column in cur.to_arrow_table().columns]
            return [dict(zip(names, values)) for values in zip(*columns)]
        return [dict(zip(names, row)) for row in cur.fetchall()]


_ARROW_TYPES = {"bytes": pa.int64(), "fresh": pa.bool_()}


# artifact rows as Python dicts, fast enough for a 140K-row partition (what every step reads first)
def _artifact_select(pinned: Collection[str] = ()) -> str:
    """The SELECT list of artifact columns for `_artifact_rows`, less the `pinned` ones (a query's
    own equality filters: every row has the value, so it is not fetched 140K times)."""
    return ", ".join("epoch_us(a.created_at) AS created_at" if c == "created_at" else f"a.{c}"
                     for c in ARTIFACT_COLUMNS if c not in pinned)


def _json_column(texts: list[str | None]) -> list:
    """A JSON column's values ({} for empty ones), parsed as one JSON array: one C-level parse
    instead of one json.loads per row. Each value is valid JSON (the column type checks it on
    insert), so the array has one element per value; anything else is an error."""
    values = json.loads("[" + ",".join(t or "{}" for t in texts) + "]")
    if len(values) != len(texts):
        raise ValueError(f"a JSON column of {len(texts)} values parsed as {len(values)}")
    return values


def _row_maker() -> Callable[..., dict]:
    """`make(*values) -> {column: value}` over `ARTIFACT_COLUMNS` (this module's identifiers, never
    data), as a dict display: about 1.4x faster than `dict(zip(...))` over 100K+ rows."""
    namespace: dict = {}
    exec(f"def make({', '.join(ARTIFACT_COLUMNS)}):\n"
         f"    return {{{', '.join(f'{c!r}: {c}' for c in ARTIFACT_COLUMNS)}}}\n", namespace)
    return namespace["make"]


_ROW_MAKER = _row_maker()


def _artifact_rows(table: pa.Table, pinned: Mapping[str, object] | None = None) -> list[dict]:
    """Artifact rows (selected with `_artifact_select(pinned)`) as dicts with every column of
    `ARTIFACT_COLUMNS`, in that order: params and info parsed, created_at an aware UTC datetime,
    each `pinned` column its one value. Column by column, with the garbage collector paused."""
    pinned = pinned or {}
    with _gc_paused():
        n = table.num_rows
        cols = {name: [pinned[name]] * n if name in pinned else table.column(name).to_pylist()
                for name in ARTIFACT_COLUMNS}
        cols["params"], cols["info"] = _json_column(cols["params"]), _json_column(cols["info"])
        utc, from_ts = timezone.utc, datetime.fromtimestamp  # exact to the microsecond before year 2200
        cols["created_at"] = [None if us is None else from_ts(us / 1e6, utc) for us in cols["created_at"]]
        return list(map(_ROW_MAKER, *cols.values()))


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class ArtifactRow:
    """One artifact as recorded. `fresh` rows (computed in this run) overwrite an earlier row with
    the same id; rows for reused artifacts are inserted when missing and otherwise only update the
    decision (status, reason), so a new threshold re-judges stored artifacts."""

    id: str
    kind: str
    asset_key: str
    status: str = "ok"
    partition: str = UNPARTITIONED
    clip_id: str | None = None
    theme: str | None = None
    uri: str | None = None
    bytes: int | None = None
    content_hash: str | None = None
    code_version: str | None = None
    params: dict = field(default_factory=dict)
    run_id: str | None = None
    created_at: str = field(default_factory=now_iso)
    reason: str | None = None
    info: dict = field(default_factory=dict)
    fresh: bool = True
    cost: Cost | None = None  # what computing it took in this run (recorded in `artifact_cost`)
    backend: str | None = None  # the backend that computed it, when the stage has one
    share: float = 1.0  # the part of the measured computation it carries (companions split it)
    measured: str = "clip"  # `clip`: around its per-clip function; `step`: a share of its step's own time


_ROW_FIELDS = tuple(f.name for f in fields(ArtifactRow) if f.name not in ("cost", "backend", "share", "measured"))


@dataclass
class LineageBatch:
    """Everything one step records: artifacts, their edges, scores, and its materialization."""

    artifacts: list[ArtifactRow] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (child, parent, role)
    scores: list[tuple[str, str, float]] = field(default_factory=list)  # (artifact, metric, value)
    materialization: dict | None = None

    def tables(self) -> dict[str, pa.Table]:
        """The batch as Arrow tables (a fragment's Parquet files); `seq` orders repeated keys."""
        cols = {name: [getattr(a, name) for a in self.artifacts] for name in _ROW_FIELDS}
        cols["params"] = [json.dumps(v, sort_keys=True) for v in cols["params"]]
        cols["info"] = [json.dumps(v, sort_keys=True, default=str) for v in cols["info"]]
        tables = _tables(cols, self.edges, self.scores)
        costed = [a for a in self.artifacts if a.cost is not None]
        tables["costs"] = pa.table({
            **{name: pa.array([getattr(a, name) for a in costed], pa.string()) for name in ("run_id", "backend")},
            "artifact_id": pa.array([a.id for a in costed], pa.string()),
            **{name: pa.array([getattr(a.cost, name) for a in costed], pa.float64())
               for name in ("wall_s", "cpu_s", "peak_rss_mb", "gpu_s", "gpu_peak_mb")},
            "device": pa.array([a.cost.device for a in costed], pa.string()),
            "share": pa.array([a.share for a in costed], pa.float64()),
            "measured": pa.array([a.measured for a in costed], pa.string()),
            "seq": pa.array(range(len(costed)), type=pa.int64())}).select([*COST_COLUMNS, "seq"])
        return tables


_EDGE_COLUMNS = ("child_id", "parent_id", "role")


def _tables(artifact_cols: dict[str, list], edges: list, scores: list) -> dict[str, pa.Table]:
    n = len(artifact_cols["id"])
    artifacts = {name: pa.array(artifact_cols[name], type=_ARROW_TYPES.get(name, pa.string())) for name in _ROW_FIELDS}
    return {
        "artifacts": pa.table({**artifacts, "seq": pa.array(range(n), type=pa.int64())}),
        "edges": pa.table({k: pa.array([e[i] for e in edges], pa.string()) for i, k in enumerate(_EDGE_COLUMNS)}),
        "scores": pa.table({"artifact_id": pa.array([x[0] for x in scores], pa.string()),
                            "metric": pa.array([x[1] for x in scores], pa.string()),
                            "value": pa.array([x[2] for x in scores], type=pa.float64()),
                            "seq": pa.array(range(len(scores)), type=pa.int64())}),
    }


def _legacy_fragment(path: Path) -> tuple[dict[str, pa.Table], dict | None]:
    """A JSON fragment left pending by an older version (artifacts as a list of rows)."""
    frag = json.loads(path.read_text())
    cols = {name: [a.get(name) for a in frag["artifacts"]] for name in _ROW_FIELDS}
    cols["params"] = [json.dumps(v or {}, sort_keys=True) for v in cols["params"]]
    cols["info"] = [json.dumps(v or {}, sort_keys=True) for v in cols["info"]]
    return _tables(cols, frag["edges"], frag["scores"]), frag["materialization"]


def open_lineage(home: str | os.PathLike) -> Lineage:
    """The lineage of a project home: the DuckDB file `<home>/lineage.duckdb` (default), or with
    ``SPARKLE_LINEAGE=ducklake`` a DuckLake (core.lineage_lake) whose catalog is in PostgreSQL
    (``SPARKLE_LINEAGE_CATALOG``, a libpq connection string without the password, default the server
    of PGHOST/PGPORT/PGUSER/PGDATABASE) and whose data are Parquet files under ``SPARKLE_LINEAGE_DATA``
    (default `<home>/lineage.lake/`, on the shared store); the password comes from PGPASSWORD or a
    .pgpass file, as libpq reads them."""
    backend = os.environ.get("SPARKLE_LINEAGE", "duckdb")
    if backend == "duckdb":
        return Lineage(Path(home) / "lineage.duckdb")
    if backend == "ducklake":
        from .lineage_lake import LakeLineage, catalog_from_env

        return LakeLineage(catalog_from_env(), os.environ.get("SPARKLE_LINEAGE_DATA") or Path(home) / "lineage.lake")
    raise ValueError(f"SPARKLE_LINEAGE must be 'duckdb' or 'ducklake', got {backend!r}")


READ_KEEPALIVE_S = 1.0  # how long a process keeps an idle read connection open


def _flock(fh, mode: int, timeout: float, what: Path) -> None:
    """flock with a deadline (polling, so a dead holder's lock is noticed as soon as it goes)."""
    deadline, delay = time.monotonic() + timeout, 0.005
    while True:
        try:
            fcntl.flock(fh, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"lineage database {what} stayed locked for {timeout}s") from None
            time.sleep(delay)
            delay = min(0.1, delay * 2)


class _Reader:
    """One read-only connection to a lineage file with its shared lock, lent out as cursors."""

    def __init__(self, db_path: Path, lock_path: Path):
        self.lock = open(lock_path, "a+")
        try:
            _flock(self.lock, fcntl.LOCK_SH, 600.0, db_path)
            self.con = _connect(db_path, read_only=True)
        except BaseException:
            self.lock.close()
            raise
        self.users, self.last_use, self.retired = 0, time.monotonic(), False

    def close(self) -> None:
        self.con.close()
        fcntl.flock(self.lock, fcntl.LOCK_UN)
        self.lock.close()


class _ReadConnections:
    """The process's read connections, one per lineage file, kept `READ_KEEPALIVE_S` after their last
    use. A writer announces itself with a marker file (`<db>.writer`) before it waits for the lock;
    an idle reader then closes within `_TICK` and new reads open and close their own connection, as
    they do while the marker stays. Idle connections are closed before the process forks."""

    _TICK = 0.05

    def __init__(self):
        self._readers: dict[Path, _Reader] = {}
        self._mutex = threading.Lock()
        self._reaper: threading.Thread | None = None
        os.register_at_fork(before=self._before_fork, after_in_parent=self._after_fork_in_parent,
                            after_in_child=self._after_fork_in_child)

    @contextlib.contextmanager
    def cursor(self, db_path: Path, lock_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
        writer_waiting = _writer_marker(db_path).exists()
        with self._mutex:
            reader = self._readers.get(db_path)
            if reader is not None and writer_waiting:
                self._retire(db_path)
                reader = None
            if reader is not None:
                reader.users += 1
        if reader is None:
            reader = _Reader(db_path, lock_path)  # outside the mutex: it may wait for a writer
            reader.users = 1
            with self._mutex:
                if writer_waiting or db_path in self._readers:
                    reader.retired = True  # used once, closed when given back
                else:
                    self._readers[db_path] = reader
                    self._start_reaper()
        cur = reader.con.cursor()
        try:
            yield cur
        finally:
            cur.close()
            self._give_back(reader)

    def release(self, db_path: Path) -> None:
        """Close this process's connection to `db_path` (at once if idle, else when given back)."""
        with self._mutex:
            self._retire(db_path)

    def _give_back(self, reader: _Reader) -> None:
        with self._mutex:
            reader.users -= 1
            reader.last_use = time.monotonic()
            done = reader.retired and reader.users == 0
        if done:
            reader.close()

    def _retire(self, db_path: Path) -> None:  # with the mutex held
        reader = self._readers.pop(db_path, None)
        if reader is not None:
            reader.retired = True
            if reader.users == 0:
                reader.close()

    def _start_reaper(self) -> None:  # with the mutex held
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap, name="lineage-readers", daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        while True:
            time.sleep(self._TICK)
            with self._mutex:
                now = time.monotonic()
                for path, reader in list(self._readers.items()):
                    if reader.users == 0 and (now - reader.last_use > READ_KEEPALIVE_S
                                              or _writer_marker(path).exists()):
                        self._retire(path)
                if not self._readers:
                    self._reaper = None
                    return

    def close_all(self) -> None:
        with self._mutex:
            for path in list(self._readers):
                self._retire(path)

    def _before_fork(self) -> None:
        """Close idle connections before the process forks: DuckDB cannot be used, nor even closed,
        in a forked child. One in use stays with the parent; the child only forgets it."""
        self._mutex.acquire()
        for path in [p for p, reader in self._readers.items() if reader.users == 0]:
            self._retire(path)

    def _after_fork_in_parent(self) -> None:
        self._mutex.release()

    def _after_fork_in_child(self) -> None:
        self._inherited = list(self._readers.values())  # never closed here: the parent owns them
        self._readers, self._reaper, self._mutex = {}, None, threading.Lock()


def _writer_marker(db_path: Path) -> Path:
    return db_path.with_suffix(".writer")


_READERS = _ReadConnections()
atexit.register(_READERS.close_all)


class Lineage:
    """The lineage database of one project home, with fragment-based safe writes.

    What every backend offers (core.lineage_lake.LakeLineage is the other one): `write(batch)`,
    `query(sql)` over the tables and views above, `session()`, `console_query(sql)`, the questions
    (`current_artifacts`, `latest_materialization`, `derived_from`, `sources_of`, `ancestors_of_kind`,
    `dataset(at)`), `snapshot(at)` (the lineage as it was at a time), `where` and `exists()`."""

    def __init__(self, db_path: str | os.PathLike):
        self.db_path = Path(db_path).resolve()
        self.pending_dir = self.db_path.with_suffix(".pending")
        self.lock_path = self.db_path.with_suffix(".lock")
        self._session = threading.local()

    @property
    def where(self) -> str:
        """Where the lineage is, for people (no secrets)."""
        return str(self.db_path)

    def exists(self) -> bool:
        return self.db_path.exists() or bool(self.pending())

    def snapshot(self, at: datetime) -> Lineage:
        """The lineage as it was at `at`: a DuckDB file keeps no snapshots (only `dataset(at)` can look
        back, through the materialization history)."""
        raise LineageQueryError("the local lineage database keeps no snapshots: only `sparkle lineage dataset --at` "
                                "looks back (through the materialization history); the DuckLake backend "
                                "(SPARKLE_LINEAGE=ducklake) answers every question at a past time")

    # -- locking ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, exclusive: bool, timeout: float = 600.0) -> Iterator[None]:
        """The file lock; an exclusive taker first sets the writer marker, so that idle read
        connections kept by other processes close instead of waiting out their keep-alive."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        marker = _writer_marker(self.db_path)
        with open(self.lock_path, "a+") as fh:
            if exclusive:
                self.release()
                marker.touch()
            try:
                _flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, timeout, self.db_path)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
            finally:
                if exclusive:
                    marker.unlink(missing_ok=True)

    # -- writes -------------------------------------------------------------------------------
    def stage(self, batch: LineageBatch) -> Path:
        """Write a batch as a pending fragment (atomic; safe from any process): a folder of Parquet
        files and the materialization, renamed into place complete."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        final = self.pending_dir / f"{name}.frag"
        tmp = self.pending_dir / f".{name}.tmp"
        tmp.mkdir(parents=True)
        try:
            for table_name, table in batch.tables().items():
                pq.write_table(table, tmp / f"{table_name}.parquet", compression="zstd")
            atomic_write_bytes(tmp / "materialization.json", json.dumps(batch.materialization, default=str).encode())
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def pending(self) -> list[Path]:
        """Fragments waiting to be merged, oldest first (`.frag` folders; `.json` from older versions)."""
        if not self.pending_dir.exists():
            return []
        return sorted([*self.pending_dir.glob("*.frag"), *self.pending_dir.glob("*.json")], key=lambda p: p.name)

    def write(self, batch: LineageBatch) -> None:
        """Stage a batch and merge everything pending."""
        self.stage(batch)
        self.merge()

    def merge(self) -> int:
        """Apply every pending fragment, oldest first, under the exclusive lock. Returns how many."""
        with self._locked(exclusive=True):
            fragments = self.pending()
            con = _connect(self.db_path)
            try:
                self._ensure_schema(con)
                for frag in fragments:
                    if frag.suffix == ".json":
                        tables, materialization = _legacy_fragment(frag)
                    else:
                        tables = {t: pq.read_table(frag / f"{t}.parquet") for t in ("artifacts", "edges", "scores", "costs")
                                  if t != "costs" or (frag / "costs.parquet").exists()}  # older fragments: no costs
                        materialization = json.loads((frag / "materialization.json").read_text())
                    con.execute("BEGIN")
                    self._apply(con, tables, materialization)
                    con.execute("COMMIT")
                    if frag.is_dir():
                        shutil.rmtree(frag)
                    else:
                        frag.unlink()
            finally:
                con.close()
        return len(fragments)

    @staticmethod
    def _ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(SCHEMA)
        con.execute(VIEWS.format(temp=""))
        version = con.execute("SELECT value FROM lineage_meta WHERE key = 'schema_version'").fetchone()
        if version is None or version[0] != SCHEMA_VERSION:
            Lineage._migrate(con)

    @staticmethod
    def _migrate(con: duckdb.DuckDBPyConnection) -> None:
        """Bring a database written by an older version up to date: rebuild the current-artifact
        tables from `materialization` (the latest materialization of each asset partition)."""
        con.execute("BEGIN")
        con.execute("DELETE FROM current_materialization")
        con.execute("DELETE FROM current_artifact")
        con.execute("""
            INSERT INTO current_materialization
            SELECT asset_key, partition, arg_max(run_id, created_at), max(created_at)
            FROM materialization GROUP BY asset_key, partition""")
        con.execute("""
            INSERT INTO current_artifact
            SELECT m.asset_key, m.partition, unnest(m.artifact_ids)
            FROM materialization m JOIN current_materialization c
              ON c.asset_key = m.asset_key AND c.partition = m.partition AND c.run_id = m.run_id""")
        con.execute("INSERT OR REPLACE INTO lineage_meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])
        con.execute("COMMIT")

    @staticmethod
    def _apply(con: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table], m: dict | None) -> None:
        """One fragment, in bulk: one statement per table (a key repeated in the fragment: last wins)."""
        if tables["artifacts"].num_rows:
            con.register("fragment_artifacts", tables["artifacts"])
            select = ", ".join(f"CAST({c} AS TIMESTAMPTZ)" if c == "created_at" else c for c in ARTIFACT_COLUMNS)
            updates = ", ".join(f"{c} = excluded.{c}" for c in ARTIFACT_COLUMNS if c != "id")
            insert = (f"INSERT INTO artifact ({', '.join(ARTIFACT_COLUMNS)}) SELECT {select} FROM fragment_artifacts "
                      "WHERE {} QUALIFY row_number() OVER (PARTITION BY id ORDER BY seq DESC) = 1")
            # a fresh row overwrites; a reused artifact keeps its row but takes this run's decision
            con.execute(f"{insert.format('fresh')} ON CONFLICT (id) DO UPDATE SET {updates}")
            con.execute(f"{insert.format('NOT fresh')} ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
                        "reason = excluded.reason")
            con.unregister("fragment_artifacts")
        if tables["edges"].num_rows:
            con.register("fragment_edges", tables["edges"])
            con.execute("INSERT OR IGNORE INTO artifact_edge SELECT DISTINCT child_id, parent_id, role FROM fragment_edges")
            con.unregister("fragment_edges")
        if tables["scores"].num_rows:
            con.register("fragment_scores", tables["scores"])
            con.execute("INSERT OR REPLACE INTO score SELECT artifact_id, metric, value FROM fragment_scores "
                        "QUALIFY row_number() OVER (PARTITION BY artifact_id, metric ORDER BY seq DESC) = 1")
            con.unregister("fragment_scores")
        if "costs" in tables and tables["costs"].num_rows:
            con.register("fragment_costs", tables["costs"])
            con.execute(f"INSERT OR REPLACE INTO artifact_cost SELECT {', '.join(COST_COLUMNS)} FROM fragment_costs "
                        "QUALIFY row_number() OVER (PARTITION BY artifact_id ORDER BY seq DESC) = 1")
            con.unregister("fragment_costs")
        if m:
            created = m.get("created_at") or now_iso()
            con.execute(
                "INSERT OR IGNORE INTO materialization VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [m["run_id"], m["asset_key"], m["partition"], m["code_version"], m["data_version"],
                 json.dumps(m.get("input_data_versions", {})), created, m["artifact_ids"],
                 json.dumps(m.get("summary", {}))])
            current = con.execute("SELECT created_at FROM current_materialization WHERE asset_key = ? AND partition = ?",
                                  [m["asset_key"], m["partition"]]).fetchone()
            if current is None or current[0] <= datetime.fromisoformat(created):
                con.execute("INSERT OR REPLACE INTO current_materialization VALUES (?, ?, ?, ?)",
                            [m["asset_key"], m["partition"], m["run_id"], created])
                con.execute("DELETE FROM current_artifact WHERE asset_key = ? AND partition = ?",
                            [m["asset_key"], m["partition"]])
                con.register("fragment_current", pa.table({"artifact_id": pa.array(m["artifact_ids"], pa.string())}))
                con.execute("INSERT INTO current_artifact SELECT DISTINCT ?, ?, artifact_id FROM fragment_current",
                            [m["asset_key"], m["partition"]])
                con.unregister("fragment_current")

    # -- reads --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def connect(self, console: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (pending fragments are merged first): inside `session()`, the
        session's; else a cursor on the process's kept read connection (`_ReadConnections`).
        `console=True`: always its own connection, also with no file system, no extensions and a
        locked configuration (`CONSOLE_CONFIG`), for SQL typed by a user."""
        held = getattr(self._session, "con", None)
        if held is not None and not console:
            yield held
            return
        if self.pending() or not self.db_path.exists():
            self.merge()
        if not console:
            with _READERS.cursor(self.db_path, self.lock_path) as cur:
                yield cur
            return
        self.release()  # DuckDB opens a file once per process, with one configuration
        with self._locked(exclusive=False):
            con = _connect(self.db_path, read_only=True, config=CONSOLE_CONFIG)
            try:
                yield con
            finally:
                con.close()

    def release(self) -> None:
        """Close this process's kept read connection to the file now (before opening the file some
        other way in this process, e.g. to write it directly)."""
        _READERS.release(self.db_path)

    @contextlib.contextmanager
    def session(self) -> Iterator[Lineage]:
        """Keep one read-only connection (and the shared lock) for every query inside the block;
        other processes' merges wait for it, so keep it to a burst of reads, never a long compute."""
        if getattr(self._session, "con", None) is not None:
            yield self
            return
        with self.connect() as con:
            self._session.con = con
            try:
                yield self
            finally:
                self._session.con = None

    def query(self, sql: str, params: Sequence | None = None) -> list[dict]:
        with self.connect() as con:
            return _rows(con.execute(sql, params or []))

    def console_query(self, sql: str) -> list[dict]:
        """Rows of any SQL a user types (`sparkle lineage sql`): it reads the lineage tables and
        nothing else, writes nothing (no COPY ... TO, ATTACH, read_text, INSTALL, SET); a refused or
        invalid statement raises LineageQueryError with DuckDB's first line."""
        try:
            with self.connect(console=True) as con:
                cur = con.execute(sql)
                return _rows(cur) if cur.description else []
        except duckdb.Error as exc:
            raise LineageQueryError(f"query refused: {str(exc).strip().splitlines()[0]}") from None

    def latest_materialization(self, asset_key: str, partition: str = UNPARTITIONED) -> dict | None:
        rows = self.query(
            "SELECT m.* FROM current_materialization c JOIN materialization m USING (run_id, asset_key, partition) "
            "WHERE c.asset_key = ? AND c.partition = ?", [asset_key, partition])
        return rows[0] if rows else None

    def current_artifacts(self, asset_key: str, partition: str = UNPARTITIONED,
                          status: str | None = "ok", kind: str | None = None) -> list[dict]:
        """The artifacts of an asset's latest materialization (optionally of one status / kind)."""
        pinned = {column: value for column, value in (("status", status), ("kind", kind)) if value is not None}
        sql = (f"SELECT {_artifact_select(pinned)} FROM current_artifact c JOIN artifact a ON a.id = c.artifact_id "
               f"WHERE {' AND '.join(['c.asset_key = ?', 'c.partition = ?'] + [f'a.{c} = ?' for c in pinned])} "
               "ORDER BY a.clip_id, a.id")
        with self.connect() as con:
            table = con.execute(sql, [asset_key, partition, *pinned.values()]).to_arrow_table()
        return _artifact_rows(table, pinned)

    def _walk_ids(self, seeds: Sequence[str], down: bool, max_depth: int = 64) -> dict[str, int]:
        """Breadth-first over the edges (index lookups, one query per level): every id reached from
        the seeds in one step or more -> the least number of steps (a seed reached from another seed
        is included)."""
        nxt, cur = ("child_id", "parent_id") if down else ("parent_id", "child_id")
        reached: dict[str, int] = {}
        visited, frontier, level = set(seeds), list(seeds), 0
        with self.session():
            while frontier and level < max_depth:
                level += 1
                found = [r["id"] for r in self.query(f"SELECT DISTINCT {nxt} AS id FROM artifact_edge "
                                                     f"WHERE {cur} IN (SELECT unnest(?::VARCHAR[]))", [frontier])]
                for i in found:
                    reached.setdefault(i, level)
                frontier = [i for i in found if i not in visited]
                visited.update(frontier)
        return reached

    def artifacts_by_id(self, ids: Sequence[str]) -> dict[str, dict]:
        """The artifact rows with these ids (params and info parsed), by id."""
        if not ids:
            return {}
        with self.connect() as con:
            table = con.execute(f"SELECT {_artifact_select()} FROM artifact a WHERE id IN (SELECT unnest(?::VARCHAR[]))",
                                [list(ids)]).to_arrow_table()
        return {r["id"]: r for r in _artifact_rows(table)}

    def ancestors_of_kind(self, ids: Sequence[str], kind: str) -> dict[str, list[dict]]:
        """For each artifact id: the artifacts of `kind` it was (transitively) made from (itself
        included when it is of that kind). One index lookup per level for all ids together."""
        pairs = {(root, root) for root in ids}
        frontier = sorted(pairs)
        with self.session():
            for _ in range(64):
                if not frontier:
                    break
                parents: dict[str, list[str]] = {}
                for r in self.query("SELECT child_id, parent_id FROM artifact_edge "
                                    "WHERE child_id IN (SELECT unnest(?::VARCHAR[]))",
                                    [sorted({node for _, node in frontier})]):
                    parents.setdefault(r["child_id"], []).append(r["parent_id"])
                frontier = [(root, p) for root, node in frontier for p in parents.get(node, [])
                            if (root, p) not in pairs]
                pairs.update(frontier)
            rows = {r["id"]: r for r in self.query(
                "SELECT id, status, uri FROM artifact WHERE id IN (SELECT unnest(?::VARCHAR[])) AND kind = ?",
                [sorted({node for _, node in pairs}), kind])}
        out: dict[str, list[dict]] = {root: [] for root in ids}
        for root, node in sorted(pairs):
            if node in rows:
                out[root].append({"root": root, **rows[node]})
        return out

    def _dataset_rows(self, at: datetime | None) -> list[dict]:
        """The dataset rows of every theme's latest export; with `at`, of the latest export made by
        then (from the materialization history; each row's status is today's)."""
        if at is None:
            return self.query("SELECT a.* FROM current_artifact c JOIN artifact a ON a.id = c.artifact_id "
                              "WHERE c.asset_key = ? AND a.status = 'ok'", [DATASET_ASSET])
        return self.query("""
            WITH made AS (SELECT partition, arg_max(artifact_ids, created_at) AS ids FROM materialization
                          WHERE asset_key = ? AND created_at <= ? GROUP BY partition)
            SELECT a.* FROM (SELECT DISTINCT unnest(ids) AS id FROM made) m JOIN artifact a USING (id)
            WHERE a.status = 'ok'""", [DATASET_ASSET, at])

    def dataset(self, at: datetime | None = None) -> list[dict]:
        """What was in the exported dataset (`sparkle_dataset`) at `at` (default: now), and from which
        clips: per row its theme, task, dataset-row id, clip, source clip and source file."""
        with self.session():
            rows = self._dataset_rows(at)
            ids = [r["id"] for r in rows]
            clips, files = self.ancestors_of_kind(ids, "source_clip"), self.ancestors_of_kind(ids, "source_file")
        out = []
        for r in rows:
            info = json.loads(r["info"]) if isinstance(r["info"], str) else (r["info"] or {})
            clip, file = (clips[r["id"]] or [{}])[0], (files[r["id"]] or [{}])[0]
            out.append({"theme": r["theme"], "task": info.get("task"), "dataset_row": r["id"], "clip_id": r["clip_id"],
                        "source_clip": clip.get("id"), "source_file": file.get("uri")})
        return sorted(out, key=lambda x: (x["theme"] or "", x["task"] or "", x["dataset_row"]))

    def seeds(self, ref: str) -> list[str]:
        """The artifact ids a user's reference names: an artifact id, a clip id (its source file and
        clip), or an id prefix of 6+ characters."""
        rows = self.query("SELECT id, 0 AS rank FROM artifact WHERE id = ? UNION ALL SELECT id, 1 FROM artifact "
                          "WHERE clip_id = ? AND kind IN ('source_file', 'source_clip')", [ref, ref])
        if rows:
            first = min(r["rank"] for r in rows)
            return [r["id"] for r in rows if r["rank"] == first]
        if len(ref) >= 6:
            return [r["id"] for r in self.query("SELECT id FROM artifact WHERE starts_with(id, ?)", [ref])]
        return []

    def derived_from(self, ref: str) -> list[dict]:
        """Every artifact derived (transitively) from a clip id or artifact id, nearest first."""
        return self._walk(ref, down=True)

    def sources_of(self, ref: str) -> list[dict]:
        """Every artifact (transitively) behind an artifact id, nearest first."""
        return self._walk(ref, down=False)

    def _walk(self, ref: str, down: bool) -> list[dict]:
        with self.session():
            seeds = self.seeds(ref)
            if not seeds:
                raise KeyError(f"no artifact or clip matches {ref!r}")
            depth = self._walk_ids(seeds, down)
            if not depth:
                return []
            rows = self.query(
                "SELECT a.id, a.kind, a.asset_key, a.partition, a.clip_id, a.theme, a.status, a.uri, w.depth "
                "FROM (SELECT unnest(?::VARCHAR[]) AS id, unnest(?::INTEGER[]) AS depth) w "
                "JOIN artifact a ON a.id = w.id ORDER BY w.depth, a.kind, a.id",
                [list(depth), list(depth.values())])
        return rows
