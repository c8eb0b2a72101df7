"""The lineage on DuckLake, for writers on many machines (``SPARKLE_LINEAGE=ducklake``).

The local backend (core.lineage) merges fragments under a file lock into one DuckDB file: one
filesystem with working locks. Run pods on Kubernetes and Ray workers on several nodes have neither,
so this backend keeps the lineage in a DuckLake: the catalog in PostgreSQL (the server Dagster's
storage uses, schema ``sparkle_lineage``), the data as Parquet files on the shared store. Every write
is one DuckLake transaction, a snapshot; PostgreSQL orders concurrent commits.

Writers only append (to ``artifact_log``, ``edge_log``, ``score_log``, ``cost_log``, ``materialization_log``), so
concurrent writers never conflict; the contract's tables (`core.lineage.CONTRACT`: ``artifact``,
``artifact_edge``, ``materialization``, ``score``, ``artifact_cost``, ``current_materialization``, ``current_artifact``,
``quarantine``, ``pair_metric``) are views that apply the local backend's merge rules in commit
order (DuckLake's ``snapshot_id`` of each row, then its order in the batch): a fresh artifact row
overwrites, a reused one only updates the decision; an edge is recorded once; the last score (and
cost) wins;
a materialization is recorded once; the current one of an asset partition is the latest by time.
Every other method (walks, current artifacts, the dataset question) is the local backend's, over
the same names. `snapshot(at)` attaches the lake as it was at a time (DuckLake keeps every snapshot),
so every question can be asked of the past.

The ducklake and postgres extensions are loaded from the pip packages pinned in requirements.txt
(no download at run time); DuckDB checks their signatures when it loads them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import duckdb

from .lineage import (ARTIFACT_COLUMNS, CONSOLE_CONFIG, COST_COLUMNS, CONTRACT, VIEWS, Lineage, LineageBatch, LineageQueryError,
                      _rows, now_iso)

METADATA_SCHEMA = "sparkle_lineage"
LAKE = "lake"  # the name the lake is attached under in each connection
EXTENSIONS = {"ducklake": "duckdb_extension_ducklake", "postgres_scanner": "duckdb_extension_postgres_scanner"}
TABLES = f"""
CREATE TABLE IF NOT EXISTS {LAKE}.artifact_log (
    id VARCHAR, kind VARCHAR, asset_key VARCHAR, partition VARCHAR, clip_id VARCHAR, theme VARCHAR, uri VARCHAR,
    bytes BIGINT, content_hash VARCHAR, code_version VARCHAR, params JSON, run_id VARCHAR, created_at TIMESTAMPTZ,
    status VARCHAR, reason VARCHAR, info JSON, fresh BOOLEAN, seq BIGINT);
CREATE TABLE IF NOT EXISTS {LAKE}.cost_log (
    artifact_id VARCHAR, run_id VARCHAR, wall_s DOUBLE, cpu_s DOUBLE, peak_rss_mb DOUBLE, device VARCHAR,
    backend VARCHAR, gpu_s DOUBLE, gpu_peak_mb DOUBLE, share DOUBLE, measured VARCHAR, seq BIGINT);
CREATE TABLE IF NOT EXISTS {LAKE}.edge_log (child_id VARCHAR, parent_id VARCHAR, role VARCHAR);
CREATE TABLE IF NOT EXISTS {LAKE}.score_log (artifact_id VARCHAR, metric VARCHAR, value DOUBLE, seq BIGINT);
CREATE TABLE IF NOT EXISTS {LAKE}.materialization_log (
    run_id VARCHAR, asset_key VARCHAR, partition VARCHAR, code_version VARCHAR, data_version VARCHAR,
    input_data_versions JSON, created_at TIMESTAMPTZ, artifact_ids VARCHAR[], summary JSON);
"""
_MATERIALIZATIONS = (f"SELECT *, snapshot_id AS snap FROM {LAKE}.materialization_log QUALIFY row_number() OVER "
                     "(PARTITION BY run_id, asset_key, partition ORDER BY snapshot_id) = 1")
CONTRACT_VIEWS = f"""
CREATE OR REPLACE TEMP VIEW artifact AS
    SELECT {', '.join('l.' + c if c in ('status', 'reason') else 'b.' + c for c in ARTIFACT_COLUMNS)}
    FROM (SELECT * FROM {LAKE}.artifact_log QUALIFY row_number() OVER (PARTITION BY id ORDER BY fresh DESC,
              CASE WHEN fresh THEN snapshot_id ELSE -snapshot_id END DESC, seq DESC) = 1) b
    JOIN (SELECT id, status, reason FROM {LAKE}.artifact_log
          QUALIFY row_number() OVER (PARTITION BY id ORDER BY snapshot_id DESC, seq DESC) = 1) l ON l.id = b.id;
CREATE OR REPLACE TEMP VIEW artifact_edge AS SELECT DISTINCT child_id, parent_id, role FROM {LAKE}.edge_log;
CREATE OR REPLACE TEMP VIEW score AS
    SELECT artifact_id, metric, value FROM {LAKE}.score_log
    QUALIFY row_number() OVER (PARTITION BY artifact_id, metric ORDER BY snapshot_id DESC, seq DESC) = 1;
CREATE OR REPLACE TEMP VIEW artifact_cost AS
    SELECT {', '.join(COST_COLUMNS)} FROM {LAKE}.cost_log
    QUALIFY row_number() OVER (PARTITION BY artifact_id ORDER BY snapshot_id DESC, seq DESC) = 1;
CREATE OR REPLACE TEMP VIEW materialization AS
    SELECT * EXCLUDE (snap) FROM ({_MATERIALIZATIONS});
CREATE OR REPLACE TEMP VIEW current_materialization AS
    SELECT asset_key, partition, run_id, created_at FROM ({_MATERIALIZATIONS})
    QUALIFY row_number() OVER (PARTITION BY asset_key, partition ORDER BY created_at DESC, snap DESC) = 1;
CREATE OR REPLACE TEMP VIEW current_artifact AS
    SELECT DISTINCT c.asset_key, c.partition, unnest(m.artifact_ids) AS artifact_id
    FROM current_materialization c JOIN materialization m USING (run_id, asset_key, partition);
""" + VIEWS.format(temp="TEMP")
SETUP_TRIES = 30  # first use by several writers at once races to create the catalog and tables


def catalog_from_env() -> str:
    """The DuckLake catalog's libpq connection string: SPARKLE_LINEAGE_CATALOG, else the server of
    PGHOST/PGPORT/PGUSER/PGDATABASE. A password is never part of it (libpq reads PGPASSWORD / .pgpass)."""
    given = os.environ.get("SPARKLE_LINEAGE_CATALOG", "").strip()
    if given:
        if re.search(r"\bpassword\s*=", given):
            raise ValueError("SPARKLE_LINEAGE_CATALOG must not hold the password: set PGPASSWORD (or a .pgpass file)")
        return given
    parts = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE"}
    found = {k: os.environ[v] for k, v in parts.items() if os.environ.get(v)}
    if "host" not in found or "dbname" not in found:
        raise ValueError("SPARKLE_LINEAGE=ducklake needs its PostgreSQL catalog: SPARKLE_LINEAGE_CATALOG (a libpq "
                         "connection string, e.g. 'host=pg dbname=sparkle user=sparkle') or PGHOST and PGDATABASE")
    return " ".join(f"{k}={v}" for k, v in found.items())


def _extension_path(name: str) -> str | None:
    """The extension binary shipped by its pip package for this DuckDB version (None: not installed)."""
    spec = importlib.util.find_spec(EXTENSIONS[name])
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    return str(path) if path.is_file() else None


def _load_extensions(con: duckdb.DuckDBPyConnection) -> None:
    for name, package in EXTENSIONS.items():
        path = _extension_path(name)
        if path is None:
            raise LineageQueryError(f"the DuckLake lineage needs DuckDB's {name} extension for DuckDB "
                                    f"{duckdb.__version__}: pip install {package.replace('_', '-')}=={duckdb.__version__} "
                                    "(requirements.txt pins it)")
        con.execute(f"LOAD '{path}'")


def _retry(fn, what: str):
    """Run a set-up step again while other processes race it (creating the catalog, the tables)."""
    for attempt in range(SETUP_TRIES):
        try:
            return fn()
        except duckdb.Error as exc:
            if attempt == SETUP_TRIES - 1:
                raise LineageQueryError(f"{what} failed: {str(exc).strip().splitlines()[0]}") from exc
            time.sleep(random.uniform(0.02, 0.1) * (attempt + 1))


class LakeLineage(Lineage):
    """The lineage in a DuckLake (see the module docstring): `catalog` is a libpq connection string
    (no password), `data_path` the folder of its Parquet files (used when the lake is created)."""

    def __init__(self, catalog: str, data_path: str | os.PathLike, at: datetime | None = None):
        self.catalog = catalog
        self.data_path = str(data_path).rstrip("/") + "/"
        self.at = at
        self._session = threading.local()
        self._local = threading.local()  # this thread's connection, with the lake attached

    @property
    def where(self) -> str:
        at = f" as of {self.at.isoformat()}" if self.at else ""
        return f"ducklake:postgres:{self.catalog} (schema {METADATA_SCHEMA}), data in {self.data_path}{at}"

    def exists(self) -> bool:
        return True  # the catalog is created on first use

    def pending(self) -> list[Path]:
        return []  # every write is committed at once; nothing waits to be merged

    def snapshot(self, at: datetime) -> LakeLineage:
        """The lineage as it was at `at` (read-only); LineageQueryError when the lake is younger."""
        past = LakeLineage(self.catalog, self.data_path, at=at)
        with past.connect():
            pass
        return past

    def dataset(self, at: datetime | None = None) -> list[dict]:
        """What was in the exported dataset at `at`, read from the lake's snapshot of that time."""
        if at is None:
            return super().dataset()
        past = self.snapshot(at)
        try:
            return past.dataset()
        finally:
            past.close()

    # -- connections ----------------------------------------------------------------------------
    def _attach(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        con.execute("SET enable_progress_bar = false")
        _load_extensions(con)
        options = [f"METADATA_SCHEMA '{METADATA_SCHEMA}'"]
        if self.at is not None:
            options += [f"SNAPSHOT_TIME '{self.at.isoformat()}'", "READ_ONLY"]
        else:
            options.append(f"DATA_PATH '{self.data_path}'")
        attach = f"ATTACH 'ducklake:postgres:{self.catalog}' AS {LAKE} ({', '.join(options)})"
        if self.at is not None:
            try:
                con.execute(attach)
            except duckdb.Error as exc:
                con.close()
                raise LineageQueryError(f"no lineage snapshot at {self.at.isoformat()}: "
                                        f"{str(exc).strip().splitlines()[0]}") from None
        else:
            _retry(lambda: con.execute(attach), "attaching the DuckLake lineage")
            _retry(lambda: con.execute(TABLES), "creating the DuckLake lineage tables")
        con.execute(CONTRACT_VIEWS)
        return con

    @contextlib.contextmanager
    def connect(self, console: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """This thread's connection (the lake attached, the contract's views made); `console=True`:
        an in-memory database holding only copies of the contract's tables, see `console_query`."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self._attach()
        yield con

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    # -- writes ---------------------------------------------------------------------------------
    def write(self, batch: LineageBatch) -> None:
        """Append a batch in one DuckLake transaction (one snapshot, its commit message naming the
        materialization)."""
        if self.at is not None:
            raise LineageQueryError("a lineage snapshot is read-only")
        tables = batch.tables()
        m = batch.materialization
        select = ", ".join(f"CAST({c} AS TIMESTAMPTZ)" if c == "created_at" else c for c in ARTIFACT_COLUMNS)
        with self.connect() as con:
            con.execute("BEGIN")
            try:
                for name, table in tables.items():
                    con.register(f"batch_{name}", table)
                if tables["artifacts"].num_rows:
                    con.execute(f"INSERT INTO {LAKE}.artifact_log SELECT {select}, fresh, seq FROM batch_artifacts")
                if tables["edges"].num_rows:
                    con.execute(f"INSERT INTO {LAKE}.edge_log SELECT DISTINCT child_id, parent_id, role FROM batch_edges")
                if tables["scores"].num_rows:
                    con.execute(f"INSERT INTO {LAKE}.score_log SELECT artifact_id, metric, value, seq FROM batch_scores")
                if tables["costs"].num_rows:
                    con.execute(f"INSERT INTO {LAKE}.cost_log SELECT * FROM batch_costs")
                if m:
                    con.execute(f"INSERT INTO {LAKE}.materialization_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                [m["run_id"], m["asset_key"], m["partition"], m["code_version"], m["data_version"],
                                 json.dumps(m.get("input_data_versions", {})), m.get("created_at") or now_iso(),
                                 m["artifact_ids"], json.dumps(m.get("summary", {}))])
                    con.execute(f"CALL {LAKE}.set_commit_message('sparkle', ?)",
                                [f"{m['asset_key']}[{m['partition'] or '-'}] run {m['run_id']}"])
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            finally:
                for name in tables:
                    with contextlib.suppress(duckdb.Error):
                        con.unregister(f"batch_{name}")

    def merge(self) -> int:
        return 0

    # -- reads ----------------------------------------------------------------------------------
    def console_query(self, sql: str) -> list[dict]:
        """Rows of the SELECT statements a user types. They run on an in-memory database that holds
        copies of the contract's tables they name and nothing else, with the local console's
        locked-down settings: they can reach neither the catalog server nor any file."""
        try:
            kinds = {st.type.name for st in duckdb.extract_statements(sql)}
            names = {n.split(".")[-1] for n in duckdb.get_table_names(sql)} & set(CONTRACT)
        except duckdb.Error as exc:
            raise LineageQueryError(f"query refused: {str(exc).strip().splitlines()[0]}") from None
        if not kinds or not kinds <= {"SELECT", "EXPLAIN"}:
            raise LineageQueryError(f"query refused: only SELECT statements read the lineage (got {', '.join(sorted(kinds))})")
        box = duckdb.connect(":memory:")
        try:
            with self.connect() as con:
                for name in sorted(names):
                    box.register("copy_src", con.execute(f"SELECT * FROM {name}").fetch_arrow_table())
                    box.execute(f"CREATE TABLE {name} AS SELECT * FROM copy_src")
                    box.unregister("copy_src")
            for key, value in CONSOLE_CONFIG.items():
                box.execute(f"SET {key} = {str(value).lower()}")
            cur = box.execute(sql)
            return _rows(cur) if cur.description else []
        except duckdb.Error as exc:
            raise LineageQueryError(f"query refused: {str(exc).strip().splitlines()[0]}") from None
        finally:
            box.close()
