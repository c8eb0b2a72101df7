"""The lineage backends, each through the same tests: the local DuckDB file and DuckLake (catalog in
the test's PostgreSQL server, Parquet files in a temporary folder)."""

import itertools
import json
import multiprocessing

import pytest

from sparkle_assets.core.lineage import ArtifactRow, Lineage, LineageBatch

_databases = itertools.count()


def open_backend(spec: tuple):
    """A lineage from a picklable description (so that spawned writers open the same one)."""
    if spec[0] == "duckdb":
        return Lineage(spec[1])
    from sparkle_assets.core.lineage_lake import LakeLineage

    return LakeLineage(spec[1], spec[2])


@pytest.fixture(params=["duckdb", "ducklake"])
def backend(request, tmp_path) -> tuple:
    if request.param == "duckdb":
        return ("duckdb", str(tmp_path / "lineage.duckdb"))
    server = request.getfixturevalue("pg_server")
    database = server.create_database(f"lineage_{next(_databases)}")
    return ("ducklake", f"host={server.host} port={server.port} user={server.user} dbname={database}",
            str(tmp_path / "lineage.lake"))


def _batch(worker: int, n: int, run: str) -> LineageBatch:
    """n artifacts of this worker plus a shared artifact every worker also records."""
    batch = LineageBatch()
    batch.artifacts.append(ArtifactRow(id="shared", kind="source_file", asset_key="a", clip_id="shared", fresh=False))
    for i in range(n):
        aid = f"w{worker}a{i}"
        batch.artifacts.append(ArtifactRow(id=aid, kind="clip", asset_key="a", clip_id=f"c{i}", run_id=run))
        batch.edges.append((aid, "shared", "source"))
        batch.scores.append((aid, "m", float(i)))
    batch.materialization = {"run_id": run, "asset_key": "a", "partition": f"p{worker}", "code_version": "1",
                             "data_version": "dv", "artifact_ids": [f"w{worker}a{i}" for i in range(n)]}
    return batch


def _writer(spec: tuple, worker: int, n: int, barrier) -> None:
    lineage = open_backend(spec)
    barrier.wait()
    for chunk in range(4):  # several writes per process, interleaved with the other processes
        batch = _batch(worker, n, f"run{worker}")
        batch.artifacts = [batch.artifacts[0]] + batch.artifacts[1 + chunk * n // 4: 1 + (chunk + 1) * n // 4]
        lineage.write(batch)


def test_concurrent_writers_lose_and_duplicate_nothing(backend):
    workers, n = 4, 40
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_writer, args=(backend, w, n, barrier)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    lineage = open_backend(backend)
    (count, distinct), = [tuple(r.values()) for r in lineage.query("SELECT count(*), count(DISTINCT id) FROM artifact")]
    assert count == distinct == workers * n + 1
    assert lineage.query("SELECT count(*) AS n FROM artifact_edge")[0]["n"] == workers * n
    assert lineage.query("SELECT count(*) AS n FROM score")[0]["n"] == workers * n
    assert lineage.query("SELECT count(*) AS n FROM materialization")[0]["n"] == workers
    assert not lineage.pending()


def test_merge_is_idempotent_and_fresh_rows_win(backend):
    lineage = open_backend(backend)
    failed = LineageBatch([ArtifactRow(id="x", kind="clip", asset_key="a", status="failed", reason="boom")])
    lineage.write(failed)
    lineage.write(failed)
    ok = LineageBatch([ArtifactRow(id="x", kind="clip", asset_key="a", run_id="r2")])
    lineage.write(ok)
    reused = LineageBatch([ArtifactRow(id="x", kind="clip", asset_key="a", run_id="r3", fresh=False)])
    lineage.write(reused)
    rows = lineage.query("SELECT status, reason, run_id FROM artifact")
    assert rows == [{"status": "ok", "reason": None, "run_id": "r2"}]


def test_recursive_queries(backend):
    lineage = open_backend(backend)
    batch = LineageBatch()
    for aid, kind, clip in [("f", "source_file", "clipA"), ("c", "source_clip", "clipA"),
                            ("m", "mask", "clipA"), ("e", "edit", "clipA"), ("other", "source_file", "clipB")]:
        batch.artifacts.append(ArtifactRow(id=aid, kind=kind, asset_key=kind, clip_id=clip))
    batch.edges += [("c", "f", "source"), ("m", "c", "clip"), ("e", "m", "mask"), ("e", "c", "clip")]
    lineage.write(batch)
    assert {r["id"] for r in lineage.derived_from("clipA")} == {"c", "m", "e"}
    assert [(r["id"], r["depth"]) for r in lineage.sources_of("e")] == [("m", 1), ("c", 1), ("f", 2)]  # by depth, kind
    assert lineage.derived_from("other") == []


def test_unknown_reference_raises(backend):
    lineage = open_backend(backend)
    lineage.write(LineageBatch())
    try:
        lineage.sources_of("nope")
    except KeyError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("expected KeyError")


def test_a_database_and_fragment_from_the_previous_version_are_migrated(tmp_path):
    """A lineage database written before the current-artifact tables existed, and a JSON fragment
    left pending by that version, read the same through today's code."""
    import json

    import duckdb

    db_path = tmp_path / "l.duckdb"
    con = duckdb.connect(str(db_path))
    con.execute("""CREATE TABLE artifact (id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, asset_key VARCHAR NOT NULL,
        partition VARCHAR, clip_id VARCHAR, theme VARCHAR, uri VARCHAR, bytes BIGINT, content_hash VARCHAR,
        code_version VARCHAR, params JSON, run_id VARCHAR, created_at TIMESTAMPTZ, status VARCHAR NOT NULL,
        reason VARCHAR, info JSON);
        CREATE TABLE materialization (run_id VARCHAR NOT NULL, asset_key VARCHAR NOT NULL, partition VARCHAR NOT NULL,
        code_version VARCHAR, data_version VARCHAR, input_data_versions JSON, created_at TIMESTAMPTZ,
        artifact_ids VARCHAR[], summary JSON, PRIMARY KEY (run_id, asset_key, partition));""")
    con.execute("INSERT INTO artifact (id, kind, asset_key, clip_id, status, info) VALUES "
                "('a1', 'clip', 'a', 'c1', 'ok', '{\"n\": 1}'), ('a2', 'clip', 'a', 'c2', 'ok', '{}')")
    con.execute("INSERT INTO materialization VALUES ('r1', 'a', '', '1', 'dv1', '{}', '2026-01-01', ['a1'], '{}'), "
                "('r2', 'a', '', '1', 'dv2', '{}', '2026-01-02', ['a1', 'a2'], '{}')")
    con.close()
    lineage = Lineage(db_path)
    lineage.pending_dir.mkdir()
    (lineage.pending_dir / "00000000000000000001-1-abcd.json").write_text(json.dumps({
        "artifacts": [{"id": "a3", "kind": "clip", "asset_key": "b", "status": "ok", "clip_id": "c3", "params": {},
                       "info": {}, "fresh": True, "partition": "", "created_at": "2026-01-03T00:00:00+00:00"}],
        "edges": [["a3", "a2", "clip"]], "scores": [["a3", "m", 1.0]],
        "materialization": {"run_id": "r3", "asset_key": "b", "partition": "", "code_version": "1",
                            "data_version": "dv3", "artifact_ids": ["a3"]}}))
    assert [r["id"] for r in lineage.current_artifacts("a")] == ["a1", "a2"]
    assert lineage.latest_materialization("a")["data_version"] == "dv2"
    assert [r["id"] for r in lineage.current_artifacts("b")] == ["a3"]
    assert [r["id"] for r in lineage.sources_of("a3")] == ["a2"]
    assert not lineage.pending()


def test_curation_decision_with_and_without_filters(tmp_path):
    from sparkle_assets.core.judging import decide_pairs

    lineage = Lineage(tmp_path / "l.duckdb")
    lineage.write(LineageBatch([ArtifactRow(id="p1", kind="pair_score", asset_key="pair_scores", clip_id="c1"),
                                ArtifactRow(id="p2", kind="pair_score", asset_key="pair_scores", clip_id="c2")],
                               scores=[("p1", "edit_score", 9.0), ("p2", "edit_score", 7.0)]))
    assert [r["reason"] for r in decide_pairs(lineage, ["p1", "p2"], {})] == [None, None]  # every filter off
    rows = decide_pairs(lineage, ["p1", "p2"], {"min_edit_score": ("edit_score", ">=", 8.0)})
    assert [r["reason"] for r in rows] == [None, "edit_score 7.000 (need >= 8.0)"]



def test_rows_read_column_wise_are_the_rows_read_one_by_one(tmp_path):
    """The column-wise reads (Arrow, a query's own filter values not fetched) give exactly the rows,
    keys, order and Python types that reading row by row gives; the curation decision reads only
    the filtered metrics and still says which is unmeasured."""
    import duckdb

    from sparkle_assets.core.judging import decide_pairs
    from sparkle_assets.core.lineage import ARTIFACT_COLUMNS, _rows

    lineage = Lineage(tmp_path / "l.duckdb")
    lineage.write(LineageBatch(
        [ArtifactRow(id="p2", kind="pair_score", asset_key="s", clip_id="c1", params={"k": [1, 2]}, info={"i": 1.5}),
         ArtifactRow(id="p1", kind="pair_score", asset_key="s", clip_id="c1", status="dropped", reason="r"),
         ArtifactRow(id="v1", kind="edited_video", asset_key="s", clip_id="c0")],
        edges=[("p1", "v1", "video"), ("p2", "v1", "video")],
        scores=[("p1", "edit_score", 9.0), ("p1", "flicker", None), ("p1", "niqe", 3.0), ("p2", "edit_score", 7.0),
                ("p2", "flicker", 1.0)],
        materialization={"run_id": "r1", "asset_key": "s", "partition": "", "code_version": "1",
                         "data_version": "dv", "artifact_ids": ["p1", "p2", "v1"]}))
    with duckdb.connect(str(tmp_path / "l.duckdb"), read_only=True) as con:
        by_row = [dict(zip(ARTIFACT_COLUMNS, r)) for r in con.execute(
            f"SELECT {', '.join(ARTIFACT_COLUMNS)} FROM artifact ORDER BY clip_id, id").fetchall()]
        sql = ("SELECT 'a' AS s, NULL::VARCHAR AS n, 1.5::DOUBLE AS d, 'nan'::DOUBLE AS nan, true AS b, "
               "2::BIGINT AS i, 3::INTEGER AS j, TIMESTAMPTZ '2026-01-02 03:04:05+00' AS t")
        for query in (sql, sql.split(", TIMESTAMPTZ")[0]):  # with a timestamp: row by row; without: Arrow
            got, want = _rows(con.execute(query)), con.execute(query).fetchall()
            assert list(got[0]) == [d for d in ("s", "n", "d", "nan", "b", "i", "j", "t") if d in got[0]]
            assert [type(v) for v in got[0].values()] == [type(v) for v in want[0]]
            assert repr(list(got[0].values())) == repr(list(want[0]))
    for row in by_row:
        row["params"], row["info"] = json.loads(row["params"] or "{}"), json.loads(row["info"] or "{}")
    for status, kind in [(None, None), ("ok", None), (None, "pair_score"), ("dropped", "pair_score")]:
        got = lineage.current_artifacts("s", status=status, kind=kind)
        assert got == [r for r in by_row if status in (None, r["status"]) and kind in (None, r["kind"])]
        assert all(list(r) == list(ARTIFACT_COLUMNS) for r in got)
    rows = decide_pairs(lineage, ["p1", "p2"], {"min_edit_score": ("edit_score", ">=", 8.0),
                                                "max_flicker": ("flicker", "<=", 3.0)})
    assert sorted((r["pair_score_id"], r["edited_video_id"], r["reason"]) for r in rows) == [
        ("p1", "v1", "flicker not measured"), ("p2", "v1", "edit_score 7.000 (need >= 8.0)")]
    assert "niqe" not in rows[0]
    with pytest.raises(ValueError, match="not metric names"):
        decide_pairs(lineage, ["p1"], {"x": ("edit_score; DROP TABLE score", ">=", 1.0)})


def _write_one(path: str, aid: str) -> float:
    """Write one artifact to the lineage at `path`; how long the write took."""
    import time

    start = time.monotonic()
    Lineage(path).write(LineageBatch(artifacts=[ArtifactRow(id=aid, kind="clip", asset_key="a")]))
    return time.monotonic() - start


def test_kept_read_connection_never_hides_writes_or_blocks_writers(tmp_path, monkeypatch):
    """A process keeps its read connection between queries, yet a writer in another process (or a
    forked child) does not wait for the keep-alive, and the next read sees what it wrote."""
    import time

    from sparkle_assets.core import lineage as lineage_mod

    monkeypatch.setattr(lineage_mod, "READ_KEEPALIVE_S", 60.0)
    path = str(tmp_path / "lineage.duckdb")
    db = Lineage(path)
    db.write(LineageBatch(artifacts=[ArtifactRow(id="first", kind="clip", asset_key="a")]))
    assert [r["id"] for r in db.query("SELECT id FROM artifact")] == ["first"]
    kept = lineage_mod._READERS._readers[db.db_path]
    assert db.query("SELECT count(*) AS n FROM artifact") == [{"n": 1}]
    assert lineage_mod._READERS._readers[db.db_path] is kept  # the same connection, not reopened

    for context, aid in (("spawn", "from_spawned"), ("fork", "from_forked")):
        db.query("SELECT 1")  # a connection kept open, holding the shared lock
        with multiprocessing.get_context(context).Pool(1) as pool:
            took = pool.apply(_write_one, (path, aid))
        assert took < 30, f"a {context} writer waited {took:.1f}s for an idle reader"
        assert aid in {r["id"] for r in db.query("SELECT id FROM artifact")}
    assert not (tmp_path / "lineage.writer").exists()

    db.query("SELECT 1")
    monkeypatch.setattr(lineage_mod, "READ_KEEPALIVE_S", 0.2)
    deadline = time.monotonic() + 10
    while db.db_path in lineage_mod._READERS._readers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.db_path not in lineage_mod._READERS._readers, "an idle read connection outlived its keep-alive"
