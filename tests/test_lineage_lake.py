"""The DuckLake lineage against the local one: four processes writing one run's lineage at once (one
theme partition each) give exactly the same answers from `sparkle lineage` on both backends, now and
at a past time (`--at`); and a Dagster run records the same lineage through DuckLake."""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import time
from datetime import datetime, timezone

import pytest

from sparkle_assets.cli import main
from sparkle_assets.core.lineage import ArtifactRow, LineageBatch, now_iso, open_lineage

THEMES = ["location", "season", "style", "time"]
CLIPS = ["clip_a", "clip_b", "clip_c"]


@pytest.fixture
def lake_env(pg_server, monkeypatch, tmp_path):
    """Environment for a DuckLake lineage in a fresh database of the test's server."""
    database = pg_server.create_database(f"lake_{time.monotonic_ns()}")
    env = {"SPARKLE_LINEAGE": "ducklake", "SPARKLE_LINEAGE_DATA": str(tmp_path / "lake-data"),
           **pg_server.env(database)}
    return env


def independent_batch() -> LineageBatch:
    """Source files, clips and masks, shared by every theme."""
    batch = LineageBatch()
    for clip in CLIPS:
        batch.artifacts += [ArtifactRow(id=f"file_{clip}", kind="source_file", asset_key="source_clips", clip_id=clip,
                                        uri=f"/videos/{clip}.mp4"),
                            ArtifactRow(id=f"src_{clip}", kind="source_clip", asset_key="source_clips", clip_id=clip),
                            ArtifactRow(id=f"mask_{clip}", kind="foreground_mask", asset_key="foreground_masks",
                                        clip_id=clip)]
        batch.edges += [(f"src_{clip}", f"file_{clip}", "source"), (f"mask_{clip}", f"src_{clip}", "clip")]
    return batch


def theme_batches(theme: str, run: str, keep: list[str]) -> list[LineageBatch]:
    """One theme partition's steps: an edited video and a score per clip, then the export of `keep`."""
    steps = []
    video = LineageBatch()
    for clip in CLIPS:
        vid = f"video_{theme}_{clip}"
        video.artifacts.append(ArtifactRow(id=vid, kind="edited_video", asset_key="edited_videos", partition=theme,
                                           clip_id=clip, theme=theme, run_id=run))
        video.edges += [(vid, f"src_{clip}", "clip"), (vid, f"mask_{clip}", "mask")]
        video.scores.append((vid, "background_dynamics", 0.1 + CLIPS.index(clip)))
    video.materialization = {"run_id": run, "asset_key": "edited_videos", "partition": theme, "code_version": "1",
                             "data_version": "v", "artifact_ids": [a.id for a in video.artifacts],
                             "created_at": now_iso()}
    steps.append(video)
    export = LineageBatch()
    for clip in keep:
        row = f"row_{theme}_{clip}_{run}"
        export.artifacts.append(ArtifactRow(id=row, kind="dataset_row", asset_key="sparkle_dataset", partition=theme,
                                            clip_id=clip, theme=theme, run_id=run, info={"task": f"{theme}_{clip}"}))
        export.edges.append((row, f"video_{theme}_{clip}", "video"))
    export.materialization = {"run_id": run, "asset_key": "sparkle_dataset", "partition": theme, "code_version": "1",
                              "data_version": run, "artifact_ids": [a.id for a in export.artifacts],
                              "created_at": now_iso()}
    steps.append(export)
    return steps


def _write_theme(envs: list[dict], theme: str, run: str, keep: list[str], barrier) -> None:
    import os

    lineages = []
    for env in envs:
        os.environ.update(env)
        lineages.append(open_lineage(env["SPARKLE_HOME"]))
    barrier.wait()
    for batch in theme_batches(theme, run, keep):
        for lineage in lineages:
            lineage.write(batch)


def write_run(envs: dict[str, dict], run: str, keep: dict[str, list[str]]) -> None:
    """Four processes, one theme partition each, all writing at once, each to both backends."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(THEMES))
    procs = [ctx.Process(target=_write_theme, args=(list(envs.values()), theme, run, keep[theme], barrier))
             for theme in THEMES]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
        assert p.exitcode == 0


def cli(env: dict, monkeypatch, *args: str) -> tuple[int, str, str]:
    """`sparkle lineage ARGS` in this process, with `env`; every variable it sets is restored after."""
    import os

    with monkeypatch.context() as m:
        for k, v in {"DAGSTER_HOME": os.environ.get("DAGSTER_HOME", ""), **env}.items():
            m.setenv(k, v)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--home", env["SPARKLE_HOME"], "lineage", *args])
    return code, out.getvalue(), err.getvalue()


def test_four_writers_at_once_and_sparkle_lineage_answers_alike_now_and_at_a_past_time(lake_env, tmp_path,
                                                                                      monkeypatch):
    envs = {"duckdb": {"SPARKLE_HOME": str(tmp_path / "local"), "SPARKLE_LINEAGE": "duckdb"},
            "ducklake": {**lake_env, "SPARKLE_HOME": str(tmp_path / "lake")}}
    for env in envs.values():
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            open_lineage(env["SPARKLE_HOME"]).write(independent_batch())
    write_run(envs, "run1", {t: CLIPS for t in THEMES})
    time.sleep(0.5)
    between = datetime.now(timezone.utc)
    time.sleep(0.5)
    write_run(envs, "run2", {t: CLIPS[:1] for t in THEMES})  # a stricter re-curation keeps one clip per theme

    lake = None
    with monkeypatch.context() as m:
        for k, v in envs["ducklake"].items():
            m.setenv(k, v)
        lake = open_lineage(envs["ducklake"]["SPARKLE_HOME"])
        counts = lake.query("SELECT (SELECT count(*) FROM artifact) AS a, (SELECT count(DISTINCT id) FROM artifact) AS d, "
                            "(SELECT count(*) FROM artifact_edge) AS e, (SELECT count(*) FROM materialization) AS m")[0]
        assert counts == {"a": 9 + 4 * (3 + 3 + 1), "d": 9 + 4 * 7, "e": 6 + 4 * (6 + 3 + 1), "m": 16}
        assert lake.query("SELECT count(*) AS n FROM (SELECT child_id, parent_id, role FROM artifact_edge "
                          "GROUP BY ALL HAVING count(*) > 1)")[0]["n"] == 0

    questions = [("dataset",), ("derived", "clip_a"), ("sources", "row_time_clip_a_run2"),
                 ("sql", "SELECT kind, status, count(*) AS n FROM artifact GROUP BY ALL ORDER BY ALL"),
                 ("sql", "SELECT asset_key, partition, run_id FROM current_materialization ORDER BY ALL"),
                 ("dataset", "--at", between.isoformat())]
    answers = {}
    for name, env in envs.items():
        answers[name] = [cli(env, monkeypatch, *q) for q in questions]
        assert all(code == 0 for code, _, _ in answers[name]), answers[name]
    assert [out for _, out, _ in answers["ducklake"]] == [out for _, out, _ in answers["duckdb"]]
    now = [json.loads(line) for line in answers["duckdb"][0][1].splitlines()]
    assert [(r["theme"], r["clip_id"]) for r in now] == [(t, "clip_a") for t in THEMES]
    assert {r["source_file"] for r in now} == {"/videos/clip_a.mp4"} and now[0]["source_clip"] == "src_clip_a"
    before = [json.loads(line) for line in answers["duckdb"][-1][1].splitlines()]
    assert len(before) == 12 and {r["dataset_row"].endswith("run1") for r in before} == {True}

    # any question at a past time: DuckLake's snapshots answer it, the local file says why it cannot
    code, out, _ = cli(envs["ducklake"], monkeypatch, "sql", "SELECT count(*) AS n FROM current_artifact "
                       "WHERE asset_key = 'sparkle_dataset'", "--at", between.isoformat())
    assert code == 0 and json.loads(out) == {"n": 12}
    code, _, err = cli(envs["duckdb"], monkeypatch, "derived", "clip_a", "--at", between.isoformat())
    assert code == 2 and "keeps no snapshots" in err
    code, _, err = cli(envs["ducklake"], monkeypatch, "dataset", "--at", "2000-01-01T00:00:00+00:00")
    assert code == 2 and "no lineage snapshot" in err

    # the console reaches nothing but copies of the lineage tables
    for sql in ("SELECT * FROM ducklake_snapshots('lake')", "SELECT * FROM read_text('/etc/hostname')",
                f"ATTACH '{tmp_path / 'new.duckdb'}' AS mine", "SELECT * FROM lake.artifact_log",
                f"COPY artifact TO '{tmp_path / 'out.csv'}'", "SET enable_external_access = true", "INSTALL httpfs",
                "CREATE TABLE mine (a INT)", "SELECT * FROM postgres_query('lake', 'SELECT 1')"):
        code, _, err = cli(envs["ducklake"], monkeypatch, "sql", sql)
        assert code == 2 and err.startswith("query refused"), (sql, err)


def test_a_dagster_run_records_the_same_lineage_on_ducklake(lake_env, tmp_path, monkeypatch):
    from tiny_runs import theme_independent_run

    rows, answers = {}, {}
    for name, env in {"duckdb": {"SPARKLE_LINEAGE": "duckdb"}, "ducklake": lake_env}.items():
        env = {**env, "SPARKLE_HOME": str(tmp_path / name), "SPARKLE_EXECUTOR": "in_process"}
        home = theme_independent_run(tmp_path / "videos", tmp_path / name, env, monkeypatch)
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            db = open_lineage(home)
            rows[name] = db.query("SELECT kind, id, status, reason, clip_id FROM artifact ORDER BY ALL")
            mask = db.query("SELECT id FROM artifact WHERE kind = 'foreground_mask' ORDER BY id LIMIT 1")[0]["id"]
        answers[name] = [cli(env, monkeypatch, *q)[1] for q in [("derived", "a"), ("sources", mask)]]
    assert len(rows["ducklake"]) >= 8 and rows["ducklake"] == rows["duckdb"]
    assert answers["ducklake"] == answers["duckdb"] and all(answers["duckdb"])
