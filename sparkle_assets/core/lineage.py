"""Per-file lineage in DuckDB: which artifact came from which, in which run, with what outcome.

Tables (their names and columns are a contract; other tools read them):

- ``artifact``: one row per artifact id (see store.py), with its status (``ok``, ``failed``,
  ``quarantined``, ``dropped``) and the reason when it is not ok.
- ``artifact_edge``: child -> parent with a role (``source``, ``clip``, ``score``...).
- ``materialization``: one row per asset materialization (run, asset, partition), with the data
  version Dagster was given, the input data versions, and the ids of the artifacts that make it up.
- ``score``: numeric scores per artifact and metric (for histograms and filters in SQL).
- view ``quarantine``: inputs refused at ingest, with their reason.
- view ``pair_metric``: one row per final pair and metric (theme, clip, pair-score and edited-video
  ids, metric, value; NULL when not measured), what `curated_pairs` filters.

DuckDB allows one writing process per file, while Dagster runs steps in parallel processes. So a
step never writes the database directly: it writes a *fragment* (a JSON file, atomically) and then
merges every pending fragment under an exclusive file lock. Merging is idempotent (upserts keyed by
id), so a fragment merged twice, or merged by another process, changes nothing. Readers take a
shared lock and open the database read-only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from .store import atomic_write_bytes, canonical_json

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
CREATE OR REPLACE VIEW quarantine AS
    SELECT clip_id, uri, reason, run_id, created_at FROM artifact WHERE status = 'quarantined';
CREATE OR REPLACE VIEW pair_metric AS
    SELECT a.theme, a.clip_id, a.id AS pair_score_id, e.parent_id AS edited_video_id, s.metric, s.value
    FROM score s JOIN artifact a ON a.id = s.artifact_id
    LEFT JOIN artifact_edge e ON e.child_id = a.id AND e.role = 'video'
    WHERE a.kind = 'pair_score';
"""

ARTIFACT_COLUMNS = ("id", "kind", "asset_key", "partition", "clip_id", "theme", "uri", "bytes",
                    "content_hash", "code_version", "params", "run_id", "created_at", "status",
                    "reason", "info")
UNPARTITIONED = ""  # the partition value of assets without partitions
# the SQL console: the database file only, read-only; settings cannot be changed back
CONSOLE_CONFIG = {"enable_external_access": False, "autoload_known_extensions": False,
                  "autoinstall_known_extensions": False, "lock_configuration": True}


class LineageQueryError(ValueError):
    """A console query DuckDB refused or could not run (one line)."""


def _rows(cur: duckdb.DuckDBPyConnection) -> list[dict]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


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


@dataclass
class LineageBatch:
    """Everything one step records: artifacts, their edges, scores, and its materialization."""

    artifacts: list[ArtifactRow] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (child, parent, role)
    scores: list[tuple[str, str, float]] = field(default_factory=list)  # (artifact, metric, value)
    materialization: dict | None = None

    def to_json(self) -> dict:
        return {"artifacts": [asdict(a) for a in self.artifacts], "edges": self.edges,
                "scores": self.scores, "materialization": self.materialization}


class Lineage:
    """The lineage database of one project home, with fragment-based safe writes."""

    def __init__(self, db_path: str | os.PathLike):
        self.db_path = Path(db_path).resolve()
        self.pending_dir = self.db_path.with_suffix(".pending")
        self.lock_path = self.db_path.with_suffix(".lock")

    # -- locking ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, exclusive: bool, timeout: float = 600.0) -> Iterator[None]:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as fh:
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fh, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"lineage database {self.db_path} stayed locked for {timeout}s")
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- writes -------------------------------------------------------------------------------
    def stage(self, batch: LineageBatch) -> Path:
        """Write a batch as a pending fragment (atomic; safe from any process)."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        path = self.pending_dir / name
        atomic_write_bytes(path, canonical_json(batch.to_json()).encode())
        return path

    def write(self, batch: LineageBatch) -> None:
        """Stage a batch and merge everything pending."""
        self.stage(batch)
        self.merge()

    def merge(self) -> int:
        """Apply every pending fragment, oldest first, under the exclusive lock. Returns how many."""
        with self._locked(exclusive=True):
            fragments = sorted(self.pending_dir.glob("*.json")) if self.pending_dir.exists() else []
            con = duckdb.connect(str(self.db_path))
            try:
                con.execute(SCHEMA)
                for frag in fragments:
                    batch = json.loads(frag.read_text())
                    con.execute("BEGIN")
                    self._apply(con, batch)
                    con.execute("COMMIT")
                    frag.unlink()
            finally:
                con.close()
        return len(fragments)

    @staticmethod
    def _apply(con: duckdb.DuckDBPyConnection, batch: dict) -> None:
        cols = ", ".join(ARTIFACT_COLUMNS)
        marks = ", ".join("?" for _ in ARTIFACT_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in ARTIFACT_COLUMNS if c != "id")
        for a in batch["artifacts"]:
            values = [json.dumps(a[c]) if c in ("params", "info") else a[c] for c in ARTIFACT_COLUMNS]
            # a reused artifact keeps its row, but takes this run's decision (status, reason)
            conflict = f"DO UPDATE SET {updates}" if a["fresh"] else \
                "DO UPDATE SET status = excluded.status, reason = excluded.reason"
            con.execute(f"INSERT INTO artifact ({cols}) VALUES ({marks}) ON CONFLICT (id) {conflict}", values)
        if batch["edges"]:
            con.executemany("INSERT OR IGNORE INTO artifact_edge VALUES (?, ?, ?)", batch["edges"])
        if batch["scores"]:
            con.executemany("INSERT OR REPLACE INTO score VALUES (?, ?, ?)", batch["scores"])
        m = batch["materialization"]
        if m:
            con.execute(
                "INSERT OR IGNORE INTO materialization VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [m["run_id"], m["asset_key"], m["partition"], m["code_version"], m["data_version"],
                 json.dumps(m.get("input_data_versions", {})), m.get("created_at", now_iso()),
                 m["artifact_ids"], json.dumps(m.get("summary", {}))],
            )

    # -- reads --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def connect(self, console: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (pending fragments are merged first). `console=True`: also no
        file system, no extensions and a locked configuration (`CONSOLE_CONFIG`), for SQL typed by
        a user."""
        pending = self.pending_dir.exists() and any(self.pending_dir.glob("*.json"))
        if pending or not self.db_path.exists():
            self.merge()
        with self._locked(exclusive=False):
            con = duckdb.connect(str(self.db_path), read_only=True, config=CONSOLE_CONFIG if console else {})
            try:
                yield con
            finally:
                con.close()

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
            "SELECT * FROM materialization WHERE asset_key = ? AND partition = ? "
            "ORDER BY created_at DESC LIMIT 1", [asset_key, partition])
        return rows[0] if rows else None

    def current_artifacts(self, asset_key: str, partition: str = UNPARTITIONED,
                          status: str | None = "ok", kind: str | None = None) -> list[dict]:
        """The artifacts of an asset's latest materialization (optionally of one status / kind)."""
        m = self.latest_materialization(asset_key, partition)
        if m is None:
            return []
        sql = "SELECT * FROM artifact WHERE list_contains(?, id)"
        params: list = [m["artifact_ids"]]
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        rows = self.query(sql + " ORDER BY clip_id, id", params)
        for r in rows:
            r["params"] = json.loads(r["params"]) if r["params"] else {}
            r["info"] = json.loads(r["info"]) if r["info"] else {}
        return rows

    def artifacts_by_id(self, ids: Sequence[str]) -> dict[str, dict]:
        """The artifact rows with these ids (params and info parsed), by id."""
        if not ids:
            return {}
        rows = self.query("SELECT * FROM artifact WHERE list_contains(?, id)", [list(ids)])
        for r in rows:
            r["params"] = json.loads(r["params"]) if r["params"] else {}
            r["info"] = json.loads(r["info"]) if r["info"] else {}
        return {r["id"]: r for r in rows}

    def ancestors_of_kind(self, ids: Sequence[str], kind: str) -> dict[str, list[dict]]:
        """For each artifact id: the artifacts of `kind` it was (transitively) made from."""
        if not ids:
            return {}
        rows = self.query("""
            WITH RECURSIVE walk(root, id, depth) AS (
                SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), 0
                UNION
                SELECT w.root, e.parent_id, w.depth + 1 FROM artifact_edge e JOIN walk w ON e.child_id = w.id
                WHERE w.depth < 64
            )
            SELECT DISTINCT w.root, a.id, a.status, a.uri FROM walk w JOIN artifact a ON a.id = w.id
            WHERE a.kind = ? ORDER BY w.root, a.id""", [list(ids), list(ids), kind])
        out: dict[str, list[dict]] = {i: [] for i in ids}
        for r in rows:
            out[r["root"]].append(r)
        return out

    def _seeds(self, ref: str) -> list[str]:
        rows = self.query(
            "SELECT id FROM artifact WHERE id = ? OR (clip_id = ? AND kind IN ('source_file', 'source_clip')) "
            "OR (length(?) >= 6 AND starts_with(id, ?))", [ref, ref, ref, ref])
        return [r["id"] for r in rows]

    def derived_from(self, ref: str) -> list[dict]:
        """Every artifact derived (transitively) from a clip id or artifact id, nearest first."""
        return self._walk(ref, down=True)

    def sources_of(self, ref: str) -> list[dict]:
        """Every artifact (transitively) behind an artifact id, nearest first."""
        return self._walk(ref, down=False)

    def _walk(self, ref: str, down: bool) -> list[dict]:
        seeds = self._seeds(ref)
        if not seeds:
            raise KeyError(f"no artifact or clip matches {ref!r}")
        nxt, cur = ("child_id", "parent_id") if down else ("parent_id", "child_id")
        sql = f"""
            WITH RECURSIVE walk(id, depth) AS (
                SELECT unnest(?::VARCHAR[]), 0
                UNION
                SELECT e.{nxt}, w.depth + 1 FROM artifact_edge e JOIN walk w ON e.{cur} = w.id
                WHERE w.depth < 64
            )
            SELECT a.id, a.kind, a.asset_key, a.partition, a.clip_id, a.theme, a.status, a.uri,
                   min(w.depth) AS depth
            FROM walk w JOIN artifact a ON a.id = w.id
            WHERE w.depth > 0
            GROUP BY ALL ORDER BY depth, a.kind, a.id
        """
        return self.query(sql, [seeds])
