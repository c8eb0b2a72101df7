"""`editor_checkpoint` and `editor_outputs` in Dagster, on an export the real pipeline built (one
theme, two tiny clips: one curated pair to train on, one bench sample): training through the Pipes
process, killed with -9 after a save and resumed (live progress), lineage to exactly the rows
trained on, reuse, the bench edits, staleness after a refilter, Kiwi-Edit's stand-in through the
same client, and missing settings that name themselves."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from sparkle_assets.core.lineage import Lineage
from sparkle_assets.core.resources import default_resources
from sparkle_assets.definitions import BENCH_ASSETS, CHEAP_ASSETS, THEME_ASSETS, THEME_INDEPENDENT, defs, editor_retraining
from sparkle_assets.evaluation.editor_checkpoint import editor_checkpoint
from sparkle_assets.evaluation.editor_outputs import editor_outputs
from sparkle_assets.evaluation.resources import bench_resources
from sparkle_assets.evaluation.run_configs import training_configs
from sparkle_assets.evaluation.trainer import evaluation_resources
from sparkle_model.video import probe

from conftest import REPO
from test_editor_model import STANDIN
from test_theme_assets import SMALL, make_subject_clip

TINY = {"backend": "tiny", "steps": 16, "save_every": 2, "learning_rate": 0.01, "height": 32, "width": 64, "frames": 5,
        "pixel_factor": 4, "layers": 1, "heads": 2, "head_dim": 16, "ffn_dim": 64, "text_encoder": "hashed",
        "text_length": 16, "inference_steps": 2}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A home where the pipeline exported theme `time` from two clips, split by the edit score so
    that one pair is curated (training data) and one is the bench; training configs in a folder."""
    tmp = tmp_path_factory.mktemp("editor")
    home, folder, configs = tmp / "home", tmp / "videos", tmp / "training"
    folder.mkdir()
    configs.mkdir()
    make_subject_clip(folder / "a.mp4", seed=1)
    make_subject_clip(folder / "b.mp4", seed=2)
    env = {"SPARKLE_HOME": str(home), "SPARKLE_BUNDLED": "0",
           "SPARKLE_EXECUTOR": "in_process", "SPARKLE_SOURCE_FOLDERS": str(folder),
           "SPARKLE_THEMES_DIR": str(REPO / "themes"), "SPARKLE_TRAINING_DIR": str(configs)}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("theme", ["time"])
        resources = default_resources()
        assert dg.materialize(THEME_INDEPENDENT, resources=resources, run_config=SMALL, instance=instance).success
        assert dg.materialize(THEME_ASSETS, resources=resources, partition_key="time", instance=instance).success
        db = Lineage(home / "lineage.duckdb")
        scores = sorted(r["value"] for r in db.query("SELECT value FROM pair_metric WHERE metric = 'edit_score'"))
        split = {"ops": {"curated_pairs": {"config": {"min_edit_score": sum(scores) / 2}}}}
        assert len(scores) == 2 and scores[0] < scores[1]
        assert dg.materialize(CHEAP_ASSETS, resources=resources, partition_key="time", instance=instance,
                              run_config=split).success
        yield {"instance": instance, "db": db, "home": home, "configs": configs, "scores": scores, "mp": mp}


def write_config(built, name: str, **fields) -> str:
    (built["configs"] / f"{name}.yaml").write_text(yaml.safe_dump(fields))
    ctx = dg.build_sensor_context(instance=built["instance"], resources=evaluation_resources())
    result = training_configs(ctx)
    if isinstance(result, dg.SensorResult):
        for request in result.dynamic_partitions_requests:
            built["instance"].add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    assert name in built["instance"].get_dynamic_partitions("run_config")
    return name


def resources() -> dict:
    return {**default_resources(), **bench_resources(), **evaluation_resources()}


def run(built, assets, name, ok=True):
    result = dg.materialize(assets, resources=resources(), partition_key=name, instance=built["instance"],
                            raise_on_error=False, selection=assets)
    assert result.success == ok, [e.event_specific_data.error.message for e in result.all_events
                                  if e.event_type_value == "STEP_FAILURE"]
    return result


def metadata(result, key="editor_checkpoint"):
    return {k: v.value for k, v in result.asset_materializations_for_node(key)[0].metadata.items()}


def outputs_summary(db) -> dict:
    return json.loads(db.latest_materialization("editor_outputs", "time")["summary"])["per_system"]


def failure(result) -> str:
    return next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error.message


def stale_status(instance, name):
    from dagster._core.definitions.data_version import StaleStatus
    from dagster._utils.test.data_versions import get_stale_status_resolver

    return StaleStatus,  get_stale_status_resolver(instance, list(defs.assets)).get_status(dg.AssetKey("editor_checkpoint"), name)


def training_pid(work: Path) -> int | None:
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(work / "request.json").encode() in cmd:
            return int(proc.name)
    return None


def killed_mid_training(built, name: str) -> tuple[str, int]:
    """Materialize in a thread, kill -9 the training process after its first save; (failure, last saved step)."""
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("run", run(built, [editor_checkpoint], name, ok=False)))
    thread.start()
    deadline, state = time.monotonic() + 600, None
    while time.monotonic() < deadline and state is None and thread.is_alive():
        state = next(iter((built["home"] / "training").glob("*/state-0000002")), None)
        time.sleep(0.05)
    assert state is not None, "the training process saved no state"
    os.kill(training_pid(state.parent), signal.SIGKILL)
    thread.join(timeout=600)
    saved = int(sorted(state.parent.glob("state-*"))[-1].name.split("-")[1])
    return failure(outcome["run"]), saved


def test_checkpoint_resumes_after_kill_links_its_rows_is_reused_edits_the_bench_and_goes_stale(built):
    db, home = built["db"], built["home"]
    name = write_config(built, "tiny", **TINY)
    message, saved = killed_mid_training(built, name)
    assert "exited with code -9" in message and "rematerialize to resume" in message and 2 <= saved < 16
    resumed = run(built, [editor_checkpoint], name)
    meta = metadata(resumed)
    assert meta["reused"] is False and meta["resumed_from_step"] == saved and meta["steps"] == 16
    assert meta["pairs"] == 1 and len(meta["loss_per_step"]["loss"]) == 16
    assert "data:image/png;base64," in meta["loss_curve"] and len(meta["loss_curve"]) < 1000  # shown inline
    assert Path(meta["loss_curve_png"]).read_bytes()[:4] == b"\x89PNG"
    live = [e for e in resumed.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert [o.event_specific_data.asset_observation.metadata["step"].value for o in live] == \
        list(range(saved + 1, 17))
    ckpt = meta["checkpoint"]
    assert {p.name for p in (home / "checkpoints" / name).iterdir()} == {
        "editor.safetensors", "editor_config.json", "data_manifest.json", "loss.json", "loss.png"}

    # lineage: exactly the dataset rows it trained on, and the checkpoint is reached from the clip
    rows = db.current_artifacts("sparkle_dataset", "time", kind="dataset_row")
    trained = [r for r in db.sources_of(ckpt) if r["kind"] == "dataset_row"]
    assert len(rows) == 1 and [r["id"] for r in trained] == [rows[0]["id"]]
    assert ckpt in {r["id"] for r in db.derived_from(rows[0]["clip_id"]) if r["kind"] == "editor_checkpoint"}
    bench = db.current_artifacts("bench_split", "time", kind="bench_row")
    assert ckpt not in {r["id"] for r in db.derived_from(bench[0]["clip_id"]) if r["kind"] == "editor_checkpoint"}

    again = run(built, [editor_checkpoint], name)
    assert metadata(again)["reused"] is True and metadata(again)["checkpoint"] == ckpt
    assert not [e for e in again.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert not (home / "training" / ckpt).exists()

    # the bench: the checkpoint's edits are a system of bench_outputs, next to the baselines
    run(built, [a for a in BENCH_ASSETS if a.key.path[-1] != "bench_judgments"], "time")
    systems = json.loads(db.latest_materialization("bench_outputs", "time")["summary"])["per_system"]
    assert {"identity", "static_composite", "pipeline", "editor_tiny"} <= set(systems)
    assert systems["editor_tiny"]["outputs"] == 1
    sample = db.current_artifacts("bench_samples", "time", kind="bench_sample")
    made = db.current_artifacts("editor_outputs", "time", kind="bench_output")
    task = bench[0]["info"]["task"]
    assert len(sample) == 1 and [(m["clip_id"], m["info"]["system"]) for m in made] == [(task, "editor_tiny")]
    edited = home / "editor_outputs" / name / "time" / f"{task}_edited.mp4"
    source = home / "bench" / "source_videos" / "time" / f"{task}.mp4"
    assert probe(edited).frames == probe(source).frames and probe(edited).width == probe(source).width
    edges = {(e["parent_id"], e["role"]) for e in db.query("SELECT * FROM artifact_edge WHERE child_id = ?",
                                                             [made[0]["id"]])}
    assert edges == {(ckpt, "checkpoint"), (sample[0]["id"], "sample")}
    assert outputs_summary(db)["editor_tiny"]["computed"] == 1
    run(built, [editor_outputs], "time")
    assert outputs_summary(db)["editor_tiny"] == {"checkpoint": ckpt, "outputs": 1, "computed": 0, "reused": 1,
                                                  "failed": 0}

    # the nightly refilter with a stricter threshold changes the export: the checkpoint shows stale
    stale, status = stale_status(built["instance"], name)
    assert status == stale.FRESH
    strict = {"ops": {"curated_pairs": {"config": {"min_edit_score": built["scores"][1] + 0.01}}}}
    assert dg.materialize(CHEAP_ASSETS, resources=default_resources(), partition_key="time",
                          instance=built["instance"], run_config=strict).success
    assert stale_status(built["instance"], name)[1] == stale.STALE
    assert "no exported dataset rows" in failure(run(built, [editor_checkpoint], name, ok=False))
    assert editor_retraining.default_status == dg.DefaultSensorStatus.STOPPED
    assert editor_checkpoint.automation_conditions_by_key[editor_checkpoint.key] is not None
    split = {"ops": {"curated_pairs": {"config": {"min_edit_score": sum(built["scores"]) / 2}}}}
    assert dg.materialize(CHEAP_ASSETS, resources=default_resources(), partition_key="time",
                          instance=built["instance"], run_config=split).success


def test_kiwi_edit_through_the_same_client_and_missing_settings_name_themselves(built):
    name = write_config(built, "kiwi", backend="kiwi_edit", epochs=3, learning_rate=0.5, save_every=2, height=32,
                        width=64, frames=9, inference_frames=9, kiwi_args=["--trainable_models", "dit"])
    lora = write_config(built, "lora", backend="lora", height=32, width=32, frames=5)
    mp = built["mp"]
    mp.delenv("SPARKLE_KIWI_EDIT_DIR", raising=False)
    assert "SPARKLE_KIWI_EDIT_DIR" in failure(run(built, [editor_checkpoint], name, ok=False))
    mp.setenv("SPARKLE_TRAIN_BASE_DIR", str(built["home"] / "nothing-here"))
    assert "SPARKLE_TRAIN_BASE_DIR" in failure(run(built, [editor_checkpoint], lora, ok=False))
    mp.setenv("SPARKLE_KIWI_EDIT_DIR", str(STANDIN))
    meta = metadata(run(built, [editor_checkpoint], name))
    assert meta["backend"] == "kiwi_edit" and meta["steps"] == 3 and meta["final_loss"] < meta["first_loss"]
    assert (built["home"] / "checkpoints" / name / "model.safetensors").is_file()
    (built["configs"] / "tiny.yaml").unlink()  # a checkpoint whose configuration is gone is not edited
    run(built, [editor_outputs], "time")
    per_system = outputs_summary(built["db"])
    assert per_system["editor_kiwi"]["computed"] == 1 and "editor_tiny" not in per_system
    assert len(list((built["home"] / "editor_outputs" / name / "time").glob("*_edited.mp4"))) == 1
    failures = json.loads(built["db"].latest_materialization("editor_outputs", "time")["summary"])["failures"]
    assert "no training configuration file" in failures["editor_tiny"]["*"]
