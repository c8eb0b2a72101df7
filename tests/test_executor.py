import pytest

from sparkle_assets.core.executor import InProcessExecutor, ProcessPoolExecutor, make_executor


def square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("bad clip 3")
    return x * x


@pytest.mark.parametrize("executor", [InProcessExecutor(), ProcessPoolExecutor(2)], ids=["in_process", "pool"])
def test_one_failure_does_not_fail_the_others(executor):
    outcomes = executor.map(square_or_fail, [1, 2, 3, 4])
    assert [o.value for o in outcomes] == [1, 4, None, 16]
    assert [o.ok for o in outcomes] == [True, True, False, True]
    assert outcomes[2].error == "ValueError: bad clip 3" and "Traceback" in outcomes[2].detail


def test_bad_executor_settings_are_refused():
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("ray-ish")
    with pytest.raises(ValueError, match="workers"):
        ProcessPoolExecutor(0)


def sleep_for(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def die_on(x: int) -> int:
    import os

    if x == 2:
        os._exit(9)
    return x


def test_pool_survives_a_dying_worker_and_is_reused():
    pool = ProcessPoolExecutor(2)
    outcomes = pool.map(die_on, [1, 2, 3, 4])
    assert [o.value for o in outcomes] == [1, None, 3, 4]
    assert "worker died (exit code 9)" in outcomes[1].error
    pids = {w.process.pid for w in pool._pool()}
    assert [o.value for o in pool.map(die_on, [5, 6])] == [5, 6]
    assert {w.process.pid for w in pool._pool()} == pids  # the same workers served the next map


def test_a_straggler_is_stopped_at_the_timeout_and_the_step_goes_on():
    import time

    start = time.monotonic()
    outcomes = ProcessPoolExecutor(2).map(sleep_for, [0.1, 30.0, 0.1, 0.1], timeout=3.0)
    elapsed = time.monotonic() - start
    assert outcomes[1].error == "timed out after 3 s"
    assert [o.value for i, o in enumerate(outcomes) if i != 1] == [0.1, 0.1, 0.1]
    assert elapsed < 10, elapsed


def test_every_outcome_carries_its_cost():
    outcome = InProcessExecutor().map(sleep_for, [0.2])[0]
    assert outcome.cost.wall_s >= 0.2 and outcome.cost.cpu_s < 0.2 and outcome.cost.device == "cpu"
    assert outcome.cost.peak_rss_mb is None or outcome.cost.peak_rss_mb > 10
    pooled = ProcessPoolExecutor(2).map(sleep_for, [0.2, 0.2])
    assert all(o.cost.wall_s >= 0.2 for o in pooled)


def loaded_modules(_) -> list[str]:
    import sys

    return sorted(sys.modules)


def test_pool_workers_run_a_stage_function_without_importing_dagster(tmp_path):
    """A worker that has run a real per-clip function (through `run_job`, as a step does) has not
    imported Dagster: the functions live in Dagster-free modules (`core.steps`, `core.ingest`)."""
    from conftest import make_clip
    from sparkle_assets.core.clipstep import ClipJob, Output, run_job
    from sparkle_assets.core.executor import shutdown_pools
    from sparkle_assets.core.steps import CAMERA_MOTION_VERSION, score_camera_motion

    clip = make_clip(tmp_path / "clip.mp4", frames=17)
    main = Output("camera_motion", "a" * 16, None, CAMERA_MOTION_VERSION, {"fps": 16.0}, {"clip": "b" * 16})
    job = ClipJob(fn=score_camera_motion, store_root=str(tmp_path / "store"), main=main, input_paths={"clip": str(clip)})
    shutdown_pools()  # a fresh worker: nothing an earlier test ran in it
    pool = ProcessPoolExecutor(1)
    done = pool.map(run_job, [job])[0]
    assert done.ok, done.detail
    assert done.value.artifact.info["score"] >= 0
    modules = pool.map(loaded_modules, [None])[0].value
    assert "sparkle_assets.core.steps" in modules and "cv2" in modules  # the same worker ran the step
    assert not [m for m in modules if m == "dagster" or m.startswith("dagster.")]


def torch_threads(_) -> int:
    import torch

    return torch.get_num_threads()


def test_torch_runs_on_the_configured_threads(monkeypatch):
    """Pool workers and the in-process path run torch on `threads` threads (SPARKLE_TORCH_THREADS,
    default 1); the in-process path gives the step's process its own count back."""
    import torch

    from sparkle_assets.core.config import ConfigError
    from sparkle_assets.core.resources import ClipExecutorResource, default_resources

    own = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert InProcessExecutor(threads=1).map(torch_threads, [None])[0].value == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(own)
    assert ProcessPoolExecutor(1, threads=1).map(torch_threads, [None])[0].value == 1
    assert ProcessPoolExecutor(1, threads=2).map(torch_threads, [None])[0].value == 2
    monkeypatch.setenv("SPARKLE_TORCH_THREADS", "2")
    assert default_resources()["clip_executor"].executor().threads == 2
    monkeypatch.delenv("SPARKLE_TORCH_THREADS")
    assert default_resources()["clip_executor"].executor().threads == 1
    with pytest.raises(ConfigError, match=r"clip_executor.threads \(SPARKLE_TORCH_THREADS\) must be in \[1, 256\], got 0"):
        ClipExecutorResource(threads=0).executor()
    monkeypatch.setenv("SPARKLE_TORCH_THREADS", "two")
    with pytest.raises(ConfigError, match="SPARKLE_TORCH_THREADS must be an integer"):
        default_resources()


def test_a_model_build_keeps_nothing_of_the_clip_that_asked(monkeypatch):
    """A library that keeps an import-time error (MediaPipe keeps sounddevice's) keeps its traceback:
    built on a fresh stack, that traceback holds none of the clip's arrays."""
    import weakref

    from sparkle_model import model_cache

    kept = []

    def make():
        try:
            raise ImportError("an optional dependency")
        except ImportError as exc:
            kept.append(exc)
        return "model"

    class Frames:
        pass

    def per_clip():
        frames = Frames()
        assert model_cache.cached("fresh-stack", make) == "model"
        return weakref.ref(frames)

    monkeypatch.setattr(model_cache, "_MODELS", {})
    assert per_clip()() is None and kept[0].__traceback__ is not None
