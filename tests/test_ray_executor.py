"""The Ray executor on a local Ray cluster this module starts (2 CPUs, 127.0.0.1 only): failures and
costs per clip, a dying worker, timeouts, model stages on actors that load their model once, Ctrl-C,
requests the cluster cannot meet, and the asset graph giving the same artifact ids as the process pool."""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from pathlib import Path

import pytest

from conftest import REPO

if importlib.util.find_spec("ray") is None:  # not imported here: the local cluster's settings come first
    pytest.skip("ray is not installed (requirements.txt pins it)", allow_module_level=True)

from ray_clip_functions import load_once, misbehave, sleep_and_note, square_or_fail  # noqa: E402
from sparkle_assets.core import ray_executor  # noqa: E402
from sparkle_assets.core.ray_executor import RayExecutor, RayRequest  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster for this module; its workers import this test module (PYTHONPATH)."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"), *([saved] if saved else [])])
    try:
        ray_executor.connect(None, local_cpus=2)
        import ray

        node = ray.nodes()[0]
        assert node["NodeManagerAddress"] == "127.0.0.1"  # loopback only
        yield ray
    finally:
        ray_executor.disconnect()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def test_failures_are_rows_and_costs_are_measured_in_the_task(cluster):
    outcomes = RayExecutor(local_cpus=2).map(square_or_fail, [1, 2, 3, 4])
    assert [o.value for o in outcomes] == [1, 4, None, 16]
    assert outcomes[2].error == "ValueError: bad clip 3" and "Traceback" in outcomes[2].detail
    assert all(o.cost is not None and o.cost.wall_s >= 0 and o.cost.device == "cpu" for o in outcomes)
    assert all(o.cost.peak_rss_mb is None or o.cost.peak_rss_mb > 10 for o in outcomes)


def test_a_dying_worker_and_a_straggler_are_failed_rows_not_a_hung_step(cluster):
    start = time.monotonic()
    # two at a time: the clip that kills its worker takes the first free one, the straggler the second
    outcomes = RayExecutor(local_cpus=2).map(misbehave, [("ok", 0), ("sleep", 1), ("die", 0), ("sleep", 60)],
                                             timeout=6)
    elapsed = time.monotonic() - start
    assert outcomes[0].value.startswith("ok") and outcomes[1].value.startswith("sleep")
    assert outcomes[2].error.startswith("worker died (WorkerCrashedError)")
    assert outcomes[3].error == "timed out after 6 s"
    assert elapsed < 30, elapsed


def test_model_stages_run_on_actors_that_load_the_model_once(cluster, tmp_path):
    log = str(tmp_path / "loads.txt")
    gpu_stage = RayExecutor(local_cpus=2).for_pool("gpu")
    assert gpu_stage.request.actors and gpu_stage.request.gpus == 0  # no GPU asked on a CPU cluster
    outcomes = gpu_stage.map(load_once, [(log, i) for i in range(6)] + [(log, -1), (log, 7), (log, 8)])
    loads = Path(log).read_text().split()
    assert len(loads) == len(set(loads))  # one load per actor process
    served = [o.value[0] for o in outcomes if o.ok]
    assert len(served) == 8 and set(served) <= {int(p) for p in loads}
    assert len(loads) <= 3  # 2 actors, plus the one that replaced the actor that died
    assert outcomes[6].error.startswith("worker died") and [o.value[1] for o in outcomes[7:]] == [7, 8]


def test_ctrl_c_cancels_the_clips_in_flight(cluster, tmp_path):
    import threading

    note = tmp_path / "pids.txt"

    def started() -> list[int]:
        return [int(p) for p in note.read_text().split()] if note.exists() else []

    def press_ctrl_c():  # once two clips run (2 CPUs; the other two wait for a free CPU)
        deadline = time.monotonic() + 60
        while len(started()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    # Ctrl-C as a terminal's `sparkle run` gets it: Python's own handler, whatever an earlier test
    # in this process left installed (the map was once not interrupted in a full suite run)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=press_ctrl_c, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            outcomes = RayExecutor(local_cpus=2).map(sleep_and_note, [(str(note), 60)] * 4)
            pytest.fail(f"the map returned {outcomes}")
    finally:
        signal.signal(signal.SIGINT, previous)
    pids = started()
    assert len(pids) == 2

    def alive(pid):
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False

    deadline = time.monotonic() + 15
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in pids)  # the workers running them were stopped
    time.sleep(2)
    assert len(started()) == 2  # and the two waiting clips never started


def test_a_request_no_node_can_meet_is_refused_up_front(cluster):
    with pytest.raises(ValueError, match="no node of the Ray cluster can run a clip needing 3 CPU"):
        RayExecutor(request=RayRequest(cpus=3)).map(square_or_fail, [1])
    with pytest.raises(ValueError, match="0 GPU|1 GPU"):
        RayExecutor(gpus_for_models=1).for_pool("gpu").map(square_or_fail, [1])
    with pytest.raises(ValueError, match="cpus > 0"):
        RayRequest(cpus=0)


def test_the_graph_gives_the_same_artifact_ids_on_ray_and_in_process(cluster, tmp_path, monkeypatch):
    """The theme-independent assets on tiny clips (CPU stages on Ray tasks, the mask stage on actors),
    once per executor, each in its own home: content addressing holds across executors.
    (benchmarks/ray_overhead.py does the whole graph, Ray against the process pool.)"""
    from sparkle_assets.core.lineage import Lineage
    from tiny_runs import theme_independent_run

    ids = {}
    for kind in ("in_process", "ray"):
        home = theme_independent_run(tmp_path / "videos", tmp_path / kind, {"SPARKLE_EXECUTOR": kind}, monkeypatch)
        rows = Lineage(home / "lineage.duckdb").query("SELECT kind, id, status, reason FROM artifact ORDER BY ALL")
        ids[kind] = [tuple(r.values()) for r in rows]
    kinds = {row[0] for row in ids["ray"]}
    assert {"source_clip", "foreground_mask", "mask_preview", "clean_background"} <= kinds, kinds
    assert ids["ray"] == ids["in_process"]
