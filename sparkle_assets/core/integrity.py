"""Whether a project home holds together (`sparkle verify`), and what it can shed (`sparkle gc`).

The artifacts a home *references* are those of every asset partition's latest materialization in
the lineage database, and (transitively) their parents. `verify` checks that:

- every referenced artifact with a payload in the store has a sidecar whose size and sha256 match
  the payload (hashed in full, whatever a store lookup trusts) and the lineage row;
- no lineage edge and no latest materialization points at an artifact the lineage does not have;
- no artifact appears twice (in a table, in a materialization, or as two artifacts of one kind for
  one clip in one materialization);
- no Dagster run is left in progress by a process that is gone;
- every source file whose hash ingest remembers (`core.source_hashes`) and whose size, time and
  inode still match has that hash (hashed in full).

`garbage` lists, under the home: temporaries whose writer is gone (removed by every `sparkle run`),
and store files no latest materialization references: *orphans* (payload and sidecar committed, but
the run died before its lineage was written), *uncommitted* payloads (no sidecar), and files of
artifacts only older materializations used. Removing those waits until no run is live.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .lineage import Lineage
from .runs import dead_runs, in_progress_runs, process_alive
from .source_hashes import changed_sources, hash_dir
from .store import ArtifactStore, StoreError, file_sha256, stale_temporaries

REFERENCED = """
WITH RECURSIVE latest AS (
    SELECT artifact_ids FROM materialization
    QUALIFY row_number() OVER (PARTITION BY asset_key, partition ORDER BY created_at DESC, run_id) = 1
), walk(id) AS (
    SELECT DISTINCT unnest(artifact_ids) FROM latest
    UNION
    SELECT e.parent_id FROM artifact_edge e JOIN walk w ON e.child_id = w.id
)
SELECT a.* FROM walk JOIN artifact a USING (id)
"""


def referenced_artifacts(db: Lineage) -> list[dict]:
    """Rows of every artifact the home references (see the module docstring)."""
    if not db.db_path.exists():
        return []
    return db.query(REFERENCED)


def _in_store(uri: str | None) -> bool:
    return bool(uri) and "://" not in uri  # source files are recorded as file:// URIs outside the store


@dataclass
class Verification:
    problems: list[str] = field(default_factory=list)  # one line each; none: the home holds together
    checked: dict[str, int] = field(default_factory=dict)  # what was looked at, by kind


def verify_home(home: Path, instance=None) -> Verification:
    """Every problem found in the home (runs are checked when the Dagster `instance` is given)."""
    home = Path(home)
    db, store = Lineage(home / "lineage.duckdb"), ArtifactStore(home / "store")
    problems: list[str] = []
    checked = {"payloads hashed": 0, "lineage edges": 0, "materializations": 0, "runs in progress": 0}
    if db.db_path.exists():
        checked["lineage edges"] = db.query("SELECT count(*) AS n FROM artifact_edge")[0]["n"]
        checked["materializations"] = db.query("SELECT count(*) AS n FROM materialization")[0]["n"]
        verified: dict[str, object] = {}  # payload uri -> its owner's verified sidecar (or None)
        for row in referenced_artifacts(db):
            uri = row["uri"]
            if not _in_store(uri):
                continue
            what = f"artifact {row['id']} ({row['kind']}, clip {row['clip_id']})"
            if uri not in verified:
                checked["payloads hashed"] += 1
                verified[uri] = _verified_in_full(store, uri)
            art = verified[uri]
            if art is None:
                problems.append(f"{what}: references {uri}, which has no sidecar that verifies "
                                "(missing, or size/sha256 differ)")
            elif (art.uri, art.content_hash) != (uri, row["content_hash"]):
                problems.append(f"{what}: the lineage says {uri} sha256 {row['content_hash']}, "
                                f"its sidecar {art.uri} sha256 {art.content_hash}")
        for e in db.query("""
                SELECT e.child_id, e.parent_id, e.role, c.id IS NULL AS no_child, p.id IS NULL AS no_parent
                FROM artifact_edge e LEFT JOIN artifact c ON c.id = e.child_id LEFT JOIN artifact p ON p.id = e.parent_id
                WHERE c.id IS NULL OR p.id IS NULL ORDER BY ALL"""):
            missing = e["child_id"] if e["no_child"] else e["parent_id"]
            problems.append(f"lineage edge {e['child_id']} -> {e['parent_id']} ({e['role']}): artifact {missing} "
                            "is not in the lineage")
        for m in db.query("""
                SELECT m.asset_key, m.partition, m.run_id, list(x.id ORDER BY x.id) AS missing FROM (
                    SELECT * FROM materialization
                    QUALIFY row_number() OVER (PARTITION BY asset_key, partition ORDER BY created_at DESC, run_id) = 1
                ) m, unnest(m.artifact_ids) AS x(id) WHERE x.id NOT IN (SELECT id FROM artifact) GROUP BY ALL"""):
            problems.append(f"materialization {m['asset_key']}[{m['partition'] or '-'}] (run {m['run_id']}) lists "
                            f"artifact(s) not in the lineage: {', '.join(m['missing'])}")
        problems += _duplicates(db)
    checked["source hashes"], changed = changed_sources(hash_dir(home))
    problems += changed
    if instance is not None:
        checked["runs in progress"] = len(in_progress_runs(instance))
        for run, proc in dead_runs(instance):
            problems.append(f"run {run.run_id} ({run.job_name}) is {run.status.value} but its process ({proc}) is "
                            "gone: `sparkle run` or `sparkle gc` marks it failed and frees its pool slots")
    return Verification(problems, checked)


def _verified_in_full(store: ArtifactStore, uri: str):
    """The sidecar of the artifact whose payload is at `uri`, if the payload's size and sha256 (hashed
    here in full, whatever a lookup would trust) match it; else None."""
    try:
        art = store.lookup(*store.owner_of(uri))
        if art is None or art.uri is None:
            return None
        path = store.path_of(art)
        if path.stat().st_size != art.bytes or file_sha256(path) != art.content_hash:
            return None
    except (OSError, StoreError):
        return None
    return art


def _duplicates(db: Lineage) -> list[str]:
    out = []
    for table, key in (("artifact", "id"), ("artifact_edge", "child_id, parent_id, role"),
                       ("materialization", "run_id, asset_key, partition"), ("score", "artifact_id, metric")):
        for r in db.query(f"SELECT {key}, count(*) AS n FROM {table} GROUP BY ALL HAVING count(*) > 1"):
            out.append(f"{table}: {r['n']} rows for {', '.join(str(v) for k, v in r.items() if k != 'n')}")
    for r in db.query("""
            SELECT m.asset_key, m.partition, len(m.artifact_ids) - len(list_distinct(m.artifact_ids)) AS n
            FROM materialization m WHERE n > 0"""):
        out.append(f"materialization {r['asset_key']}[{r['partition'] or '-'}]: {r['n']} artifact id(s) listed twice")
    for r in db.query("""
            WITH latest AS (
                SELECT * FROM materialization
                QUALIFY row_number() OVER (PARTITION BY asset_key, partition ORDER BY created_at DESC, run_id) = 1)
            SELECT m.asset_key, m.partition, a.kind, a.clip_id, list(a.id ORDER BY a.id) AS ids
            FROM latest m, unnest(m.artifact_ids) AS x(id) JOIN artifact a ON a.id = x.id
            WHERE a.clip_id IS NOT NULL AND a.status = 'ok' GROUP BY ALL HAVING count(*) > 1 ORDER BY ALL"""):
        out.append(f"materialization {r['asset_key']}[{r['partition'] or '-'}]: {len(r['ids'])} {r['kind']} "
                   f"artifacts for clip {r['clip_id']} ({', '.join(r['ids'])})")
    return out


@dataclass
class Garbage:
    """What `sparkle gc` found (paths under the home)."""

    temporaries: list[Path] = field(default_factory=list)
    orphans: dict[str, list[Path]] = field(default_factory=dict)  # artifact id -> its files
    uncommitted: dict[str, list[Path]] = field(default_factory=dict)
    unreferenced: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def store_files(self) -> list[Path]:
        return sorted(p for group in (self.orphans, self.uncommitted, self.unreferenced)
                      for paths in group.values() for p in paths)

    def size(self, paths) -> int:
        return sum(p.stat().st_size for p in paths if p.exists())


def stale_home_temporaries(home: Path, any_live_run: bool) -> list[Path]:
    """Temporaries anywhere in the home (store, lineage fragments, exports) whose writer is gone."""
    home = Path(home)
    if not home.is_dir():
        return []
    return [p for child in sorted(home.iterdir()) if child.is_dir() and child.name != "dagster"
            for p in stale_temporaries(child, process_alive, any_live_run)]


def remove(paths) -> int:
    """Remove files (already gone is fine); returns how many were removed."""
    n = 0
    for p in paths:
        try:
            p.unlink()
            n += 1
        except FileNotFoundError:
            pass
    return n


def garbage(home: Path, any_live_run: bool) -> Garbage:
    home = Path(home)
    db, store = Lineage(home / "lineage.duckdb"), ArtifactStore(home / "store")
    found = Garbage(temporaries=stale_home_temporaries(home, any_live_run))
    referenced = {r["id"] for r in referenced_artifacts(db)}
    known = {r["id"] for r in db.query("SELECT id FROM artifact")} if db.db_path.exists() else set()
    files: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for kind, aid, path in store.files():
        files[(kind, aid)].append(path)
    for (kind, aid), paths in files.items():
        if aid in referenced:
            continue
        committed = any(p.name.endswith(".artifact.json") for p in paths)
        group = found.uncommitted if not committed else found.unreferenced if aid in known else found.orphans
        group[aid] = sorted(paths)
    return found
