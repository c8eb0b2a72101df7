"""Faults, small: a home checked and cleaned by hand-made damage, kill -9 of a run then the next run,
four runs at once on a fresh home, malformed inputs next to good clips, thresholds out of range.
(`benchmarks/faults.py` is the large version.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparkle_assets.core.config import ConfigError
from sparkle_assets.core.integrity import garbage, remove, verify_home
from sparkle_assets.core.lineage import ArtifactRow, Lineage, LineageBatch
from sparkle_assets.core.store import ArtifactStore
from sparkle_assets.stages.per_theme.curated_pairs import CuratedPairsConfig

from conftest import make_clip

DEAD_PID = 4_000_000 + os.getpid()  # above Linux's default pid_max: never a live process


def _artifact(store: ArtifactStore, kind: str, aid: str, payload: bytes | None, inputs=None) -> dict:
    if payload is not None:
        with store.writing(kind, aid, "bin") as tmp:
            tmp.write_bytes(payload)
    art = store.commit(kind, aid, code_version="1", params={}, inputs=inputs or {}, ext="bin" if payload else None)
    return art


def _record(db: Lineage, run: str, asset: str, arts, clip="c1") -> None:
    batch = LineageBatch()
    for a in arts:
        batch.artifacts.append(ArtifactRow(id=a.id, kind=a.kind, asset_key=asset, clip_id=clip, uri=a.uri,
                                           bytes=a.bytes, content_hash=a.content_hash, run_id=run))
        batch.edges.extend((a.id, parent, role) for role, parent in a.inputs.items())
    batch.materialization = {"run_id": run, "asset_key": asset, "partition": "", "code_version": "1",
                             "data_version": run, "artifact_ids": [a.id for a in arts]}
    db.write(batch)


def test_verify_and_gc_on_a_home_damaged_by_hand(tmp_path):
    home = tmp_path / "home"
    store, db = ArtifactStore(home / "store"), Lineage(home / "lineage.duckdb")
    clip = _artifact(store, "clip", "aaaa01", b"clip bytes")
    old_mask = _artifact(store, "mask", "bbbb01", b"old mask", {"clip": clip.id})
    _record(db, "run1", "clips", [clip])
    _record(db, "run1", "masks", [old_mask])
    time.sleep(0.01)
    mask = _artifact(store, "mask", "bbbb02", b"new mask", {"clip": clip.id})
    _record(db, "run2", "masks", [mask])  # the latest materialization of `masks` no longer has bbbb01
    _artifact(store, "mask", "cccc01", b"committed, then killed before the lineage")  # an orphan
    with store.writing("mask", "dddd01", "bin") as tmp:  # a payload killed before its sidecar
        tmp.write_bytes(b"uncommitted")
    stale = home / "store" / "mask" / "ee" / f".eeee01.tmp-{DEAD_PID}-0a1b2c3d.bin"
    live = home / "store" / "mask" / "ee" / f".eeee02.tmp-{os.getpid()}-0a1b2c3d.bin"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")

    assert verify_home(home).problems == []
    found = garbage(home, any_live_run=False)
    assert found.temporaries == [stale]
    assert list(found.orphans) == ["cccc01"] and list(found.uncommitted) == ["dddd01"]
    assert list(found.unreferenced) == ["bbbb01"]
    assert remove(found.temporaries + found.store_files) == 6
    assert live.exists() and store.lookup("mask", "bbbb02") and store.lookup("clip", "aaaa01")
    assert garbage(home, any_live_run=False).store_files == []
    assert verify_home(home).problems == []

    # damage that verify must report, one line each
    store.path_of(clip).write_bytes(b"clip bytez")
    batch = LineageBatch(edges=[(mask.id, "ffff99", "clip")])
    batch.artifacts.append(ArtifactRow(id="gggg01", kind="mask", asset_key="masks", clip_id="c1", status="ok"))
    db.write(batch)
    db.write(LineageBatch(materialization={"run_id": "run3", "asset_key": "masks", "partition": "",
                                           "code_version": "1", "data_version": "x",
                                           "artifact_ids": [mask.id, "gggg01", "hhhh01"]}))
    problems = verify_home(home).problems
    assert any("aaaa01" in p and "no sidecar that verifies" in p for p in problems), problems
    assert any("edge bbbb02 -> ffff99" in p and "ffff99 is not in the lineage" in p for p in problems), problems
    assert any("hhhh01" in p and "not in the lineage" in p for p in problems), problems
    assert any("2 mask artifacts for clip c1" in p for p in problems), problems
    assert len(problems) == 4, problems


def test_pool_workers_die_with_their_run(tmp_path):
    """A kill -9 of the process that runs a step takes its clip workers with it."""
    code = ("import time; from sparkle_assets.core.executor import ProcessPoolExecutor; "
            "ProcessPoolExecutor(2).map(time.sleep, [60, 60])")
    parent = subprocess.Popen([sys.executable, "-c", code])
    children_file = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while len(workers) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        # the spawn context starts a resource tracker too; the workers run multiprocessing's spawn_main
        workers = [int(p) for p in children_file.read_text().split()
                   if "spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
    assert len(workers) == 2
    parent.kill()
    parent.wait()
    time.sleep(2)
    assert [w for w in workers if Path(f"/proc/{w}").exists()
            and Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"] == []


def _sparkle(home: Path, folder: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sparkle_assets.cli", "--home", str(home), "run", "--no-bundled",
            "--folder", str(folder), "--shared-only", *extra]


ENV = {**os.environ, "SPARKLE_EXECUTOR": "in_process", "PYTHONUNBUFFERED": "1"}


def _instance(home: Path):
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home / "dagster")))


@pytest.fixture
def two_clips(tmp_path) -> Path:
    folder = tmp_path / "clips"
    make_clip(folder / "a.mp4", frames=17, size=(96, 64), seed=1)
    make_clip(folder / "b.mp4", frames=17, size=(96, 64), seed=2)
    return folder


@pytest.mark.integration
def test_killed_run_is_cleared_by_the_next_run(tmp_path, two_clips):
    folder, home = two_clips, tmp_path / "home"
    first = subprocess.Popen(_sparkle(home, folder), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, env=ENV)
    run_id = None
    for line in first.stdout:
        run_id = run_id or (line.split("run ")[-1].strip() if line.startswith("theme_independent: run") else None)
        if "foreground_masks ..." in line:
            first.send_signal(signal.SIGSTOP)  # hold it inside the step, then kill it there
            break
    leftover = home / "store" / "foreground_mask" / "ab" / f".ab12.tmp-{first.pid}-0a1b2c3d.npz"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"half a mask")  # what a kill during a write leaves
    first.kill()
    first.wait()
    # read only once it is dead: stopped inside a write, it could still hold the SQLite lock
    instance = _instance(home)
    assert [s.run_id for s in instance.event_log_storage.get_concurrency_info("gpu").claimed_slots] == [run_id]

    second = subprocess.run(_sparkle(home, folder), capture_output=True, text=True, env=ENV, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    out = second.stdout
    assert f"cleared dead run {run_id} (theme_independent, STARTED, pid {first.pid}" in out, out
    assert "freed pool slot(s): gpu (foreground_masks)" in out
    assert "removed 1 temporary file(s)" in out and not leftover.exists()
    assert "foreground_masks done: clips=2, computed=2" in out and "source_clips done:" in out
    assert "DEBUG" not in out  # one line per step, not Dagster's log
    dead = instance.get_run_by_id(run_id)
    assert dead.status.value == "FAILURE"
    assert instance.event_log_storage.get_concurrency_info("gpu").claimed_slots == []
    verify = subprocess.run([sys.executable, "-m", "sparkle_assets.cli", "--home", str(home), "verify"],
                            capture_output=True, text=True, env=ENV)
    assert verify.returncode == 0 and "sparkle verify: 0 problem(s)" in verify.stdout, verify.stdout


@pytest.mark.integration
def test_four_runs_at_once_on_a_fresh_home(tmp_path, two_clips):
    folder, home = two_clips, tmp_path / "home"
    procs = [subprocess.Popen(_sparkle(home, folder), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=ENV) for _ in range(4)]
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out[-2000:] + err[-3000:]
    db = Lineage(home / "lineage.duckdb")
    by_asset: dict[str, set] = {}
    for m in db.query("SELECT asset_key, artifact_ids FROM materialization"):
        by_asset.setdefault(m["asset_key"], set()).add(json.dumps(sorted(m["artifact_ids"])))
    assert sorted(by_asset) == ["clean_backgrounds", "foreground_masks", "source_clips", "static_clips"]
    assert all(len(v) == 1 for v in by_asset.values()), by_asset  # every run: the same artifacts
    counts = db.query("SELECT count(*) AS n, count(DISTINCT run_id) AS runs FROM materialization")[0]
    assert counts == {"n": 16, "runs": 4}
    assert verify_home(home, _instance(home)).problems == []


def test_thresholds_out_of_range_name_the_field_and_range():
    for value in (-5, 1000):
        with pytest.raises(ConfigError, match=rf"min_edit_score must be in \[0, 10\], got {value}"):
            CuratedPairsConfig(min_edit_score=value).check()


def test_a_home_broken_by_the_storage_race_is_repaired(tmp_path, monkeypatch):
    """Two first starts stamping the schema at once left `alembic_version` with two rows ("more than
    one head"), and every later run failed: the next `sparkle` command repairs it and says so."""
    import sqlite3

    from sparkle_assets.core.runs import open_instance

    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    open_instance(home)
    db = sqlite3.connect(home / "dagster" / "history" / "runs.db")
    with db:
        db.execute("INSERT INTO alembic_version VALUES ('5771160a95ad')")  # what the losing process stamped
    db.close()
    said: list[str] = []
    instance = open_instance(home, say=said.append)
    assert len(said) == 1 and "history/runs.db: schema versions" in said[0] and "5771160a95ad" in said[0]
    assert instance.get_runs() == []
    assert open_instance(home, say=said.append) and len(said) == 1  # repaired for good


def test_the_dead_runs_sensor_clears_a_run_whose_process_is_gone(tmp_path):
    """What the UI's daemon does every 30 s: a STARTED run holding the `gpu` slot with its process
    gone is marked failed with the reason and its slot freed; a live run's is left alone."""
    import socket

    import dagster as dg
    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

    from sparkle_assets.core.runs import TAG_HOST, TAG_PID
    from sparkle_assets.definitions import dead_runs

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("gpu", 2)
        for run_id, pid in (("dead-run", DEAD_PID), ("live-run", os.getpid())):
            instance.add_run(DagsterRun(job_name="theme_independent", run_id=run_id, status=DagsterRunStatus.STARTED,
                                        tags={TAG_PID: str(pid), TAG_HOST: socket.gethostname()}))
            storage.claim_concurrency_slot("gpu", run_id, "foreground_masks")
        result = dead_runs(dg.build_sensor_context(instance=instance))
        assert "cleared run dead-run (theme_independent, STARTED, pid" in result.skip_message
        assert "freed pool slot(s): gpu (foreground_masks)" in result.skip_message
        assert instance.get_run_by_id("dead-run").status == DagsterRunStatus.FAILURE
        assert instance.get_run_by_id("live-run").status == DagsterRunStatus.STARTED
        assert [s.run_id for s in storage.get_concurrency_info("gpu").claimed_slots] == ["live-run"]
        assert dead_runs(dg.build_sensor_context(instance=instance)).skip_message == "no run with its process gone"
