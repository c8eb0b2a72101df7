"""Stages 2-3 in Dagster: the theme sensor, a theme backfill that reuses every theme-independent
artifact, incrementality, thresholds re-judging stored artifacts, the real backends through the
assets (tiny random weights, a local VLM endpoint), and bad configuration."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import pytest

from sparkle_assets.stages.per_theme.curated_pairs import curated_pairs_have_masks, curated_pairs_pass_rates
from sparkle_assets.definitions import CHEAP_ASSETS, THEME_ASSETS, THEME_INDEPENDENT, defs, theme_taxonomy
from sparkle_assets.core.lineage import Lineage
from sparkle_assets.core.resources import (EditBackendResource, FinalBackendResource, MetricModelsResource,
                                      VideoBackendResource, VlmResource, default_resources)
from sparkle_assets.stages.release.sparkle_dataset import sparkle_dataset_files

from conftest import REPO
from sparkle_model.video import write_video
from test_theme_models import FakeChatServer

SMALL = {"ops": {"source_clips": {"config": {"max_side": 128, "max_frames": 17}}}}
THEME_CHECKS = [curated_pairs_pass_rates, curated_pairs_have_masks, sparkle_dataset_files]


def make_subject_clip(path, seed: int, frames: int = 17, size=(128, 96)):
    """A smooth textured wall and a textured oval subject drifting 1 px a frame."""
    import cv2
    import numpy as np

    w, h = size
    rng = np.random.default_rng(seed)
    wall = cv2.resize(rng.integers(40, 200, (h // 8, w // 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    skin = cv2.resize(rng.integers(120, 255, (8, 8, 3), dtype=np.uint8), (36, 50), interpolation=cv2.INTER_CUBIC)
    out = []
    for t in range(frames):
        f = wall.copy()
        oval = np.zeros((h, w), np.uint8)
        cx, cy = 40 + t, 52
        cv2.ellipse(oval, (cx, cy), (18, 25), 0, 0, 360, 1, -1)
        patch = np.zeros_like(f)
        patch[cy - 25:cy + 25, cx - 18:cx + 18] = skin
        f[oval > 0] = patch[oval > 0]
        out.append(f)
    return write_video(path, out, fps=16)


@pytest.fixture
def project(home, tmp_path, monkeypatch):
    """A home with two tiny static clips, a copy of the shipped themes, and the theme-independent
    assets materialized; returns (instance, resources, lineage)."""
    folder = tmp_path / "videos"
    folder.mkdir()
    make_subject_clip(folder / "a.mp4", seed=1)
    make_subject_clip(folder / "b.mp4", seed=2)
    themes = tmp_path / "themes"
    shutil.copytree(REPO / "themes", themes)
    monkeypatch.setenv("SPARKLE_THEMES_DIR", str(themes))
    monkeypatch.setenv("SPARKLE_SOURCE_FOLDERS", str(folder))
    instance = dg.DagsterInstance.ephemeral()
    resources = default_resources()
    assert dg.materialize(THEME_INDEPENDENT, resources=resources, run_config=SMALL, instance=instance).success
    return instance, resources, Lineage(home / "lineage.duckdb"), themes


def run_sensor(instance):
    ctx = dg.build_sensor_context(instance=instance, resources={"themes": default_resources()["themes"]})
    result = theme_taxonomy(ctx)
    if isinstance(result, dg.SensorResult):
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def build_theme(instance, resources, theme, run_config=None, assets=None, ok=True):
    result = dg.materialize([*(assets or THEME_ASSETS), *THEME_CHECKS], resources=resources, partition_key=theme,
                            instance=instance, run_config=run_config or {}, raise_on_error=False)
    assert result.success == ok
    return result


def summary(db, run_id):
    rows = db.query("SELECT asset_key, partition, summary FROM materialization WHERE run_id = ?", [run_id])
    return {(r["asset_key"], r["partition"]): json.loads(r["summary"]) for r in rows}


def test_sensor_backfill_builds_only_the_new_theme(project):
    instance, resources, db, themes = project
    first = run_sensor(instance)
    assert sorted(first.dynamic_partitions_requests[0].partition_keys) == ["location", "season", "style", "time"]
    assert isinstance(run_sensor(instance), dg.SkipReason)
    location = build_theme(instance, resources, "location")
    s = summary(db, location.run_id)
    assert s[("background_videos", "location")]["kept"] == 2
    sheet = db.db_path.parent / "contact_sheets" / "location" / "background_videos.png"
    assert sheet.is_file()

    before = db.query("SELECT count(*) AS n FROM artifact")[0]["n"]
    shutil.copy(REPO / "examples" / "themes" / "weather.yaml", themes / "weather.yaml")
    (themes / "broken.yaml").write_text("name: broken\nrender: transform\nopeners: [a, b]\n")
    result = run_sensor(instance)
    assert list(result.dynamic_partitions_requests[0].partition_keys) == ["weather"]
    skip = run_sensor(instance)
    assert "broken.yaml: subthemes: missing field" in skip.skip_message
    weather = build_theme(instance, resources, "weather")
    # only the weather partition was materialized, and no theme-independent artifact was touched
    assert set(summary(db, weather.run_id)) == {(a.key.path[-1], "weather") for a in THEME_ASSETS}
    rows = db.query("SELECT DISTINCT asset_key, theme FROM artifact WHERE run_id = ?", [weather.run_id])
    assert {r["theme"] for r in rows} == {"weather"}
    independent = [a.key.path[-1] for a in THEME_INDEPENDENT]
    fresh = db.query("SELECT count(*) AS n FROM artifact WHERE list_contains(?, asset_key) AND run_id = ?",
                     [independent, weather.run_id])[0]["n"]
    assert fresh == 0
    # lineage: each weather video derives from the same source clip and mask the location videos use
    video = db.query("SELECT id, clip_id FROM artifact WHERE kind = 'background_video' AND theme = 'weather' LIMIT 1")[0]
    kinds = {r["kind"]: r for r in db.sources_of(video["id"])}
    assert {"source_clip", "foreground_mask", "clean_background", "instruction", "background_plate"} <= set(kinds)
    assert db.query("SELECT count(*) AS n FROM artifact")[0]["n"] > before
    assert instance.get_dynamic_partitions("theme") == ["location", "season", "style", "time", "weather"]


def test_rerun_reuses_and_thresholds_rejudge_without_recompute(project):
    instance, resources, db, _ = project
    run_sensor(instance)
    build_theme(instance, resources, "time")
    again = build_theme(instance, resources, "time")
    assert all(v.get("computed", 0) == 0 for v in summary(db, again.run_id).values())
    strict = build_theme(instance, resources, "time", {"ops": {"edited_first_frames": {"config": {"min_edit_score": 10.0}}}})
    s = summary(db, strict.run_id)
    assert s[("edited_first_frames", "time")]["computed"] == 0
    assert s[("edited_first_frames", "time")]["dropped"] == s[("edited_first_frames", "time")]["clips"] - \
        s[("edited_first_frames", "time")]["kept"]
    rows = db.current_artifacts("edited_first_frames", "time", status=None, kind="edited_first_frame")
    scores = {r["clip_id"]: r["info"]["score"]["overall"] for r in rows}
    assert all(r["status"] == ("ok" if scores[r["clip_id"]] >= 10 else "dropped") for r in rows)
    reseeded = build_theme(instance, resources, "time", {"ops": {"instructions": {"config": {"seed": 5}}}})
    assert summary(db, reseeded.run_id)[("instructions", "time")]["computed"] == 2


def test_real_backends_through_the_assets(project, tmp_path, monkeypatch):
    """The diffusers edit and image-to-video pipelines (tiny random weights) and a VLM endpoint run
    inside the theme assets; this checks plumbing, not picture quality."""
    from tiny_models import build_random_alexnet, build_tiny_clip, build_tiny_inpaint, build_tiny_vace, build_tiny_wan_i2v

    instance, resources, db, _ = project
    run_sensor(instance)
    server = FakeChatServer({"instruction": "Place the subject on a windy beach with waves rolling in and palm "
                                            "fronds swaying, under a bright sky with clouds drifting slowly.",
                             "original_scene": "A red square in front of a textured wall.",
                             "prompt_following": 9, "consistency": 9, "perceptual_quality": 9})
    monkeypatch.setenv("SPARKLE_VLM_URL", server.url)  # the endpoint comes from the environment only
    try:
        res = {**resources,
               "vlm": VlmResource(backend="endpoint", model="judge"),
               "edit_backend": EditBackendResource(backend="diffusers", model_dir=str(build_tiny_inpaint(tmp_path / "inp")),
                                                   steps=2, max_side=64, scorer="vlm"),
               "video_backend": VideoBackendResource(backend="diffusers", model_dir=str(build_tiny_wan_i2v(tmp_path / "i2v")),
                                                     steps=2, max_side=64),
               "final_backend": FinalBackendResource(backend="diffusers", model_dir=str(build_tiny_vace(tmp_path / "vace")),
                                                     steps=2, max_side=64),
               "metric_models": MetricModelsResource(lpips_backbone=str(build_random_alexnet(tmp_path / "alex.pth")),
                                                     clip_dir=str(build_tiny_clip(tmp_path / "clip")))}
        # random weights make noise videos: judge only that they were made and scored
        loose = {"ops": {"background_videos": {"config": {"min_background_motion": 0.0}},
                         "curated_pairs": {"config": {"min_fg_structure": None, "max_fg_motion_error": None,
                                                      "max_warp_error": None, "max_flicker": None,
                                                      "min_background_dynamics": None, "min_pass_rate": 0.0}}}}
        result = build_theme(instance, res, "location", loose)
    finally:
        server.close()
    s = summary(db, result.run_id)
    assert s[("instructions", "location")]["computed"] == 2 and s[("background_videos", "location")]["failed"] == 0
    inst = db.current_artifacts("instructions", "location", kind="instruction")
    assert all(r["info"]["writer"] == "vlm" for r in inst)
    edits = db.current_artifacts("edited_first_frames", "location", status=None, kind="edited_first_frame")
    assert edits and all(r["info"]["score"]["scorer"] == "vlm" for r in edits)
    videos = db.current_artifacts("background_videos", "location", status=None, kind="background_video")
    assert len(videos) == 2 and all(v["info"]["frames"] == 17 for v in videos)
    edited = db.current_artifacts("edited_videos", "location", kind="edited_video")
    assert len(edited) == 2 and all(v["info"]["backend"] == "diffusers" and v["info"]["frames"] == 17 for v in edited)
    metrics = db.query("SELECT metric, count(value) AS n FROM pair_metric WHERE theme = 'location' GROUP BY metric")
    measured = {r["metric"]: r["n"] for r in metrics}
    assert measured["clip_score"] == 2 and measured["fg_lpips"] == 2 and measured["edit_score"] == 2
    frames = db.current_artifacts("pair_scores", "location", kind="pair_score")[0]["info"]["edit_score_frames"]
    assert [f["frame"] for f in frames] == [1, 4, 7, 10] and all(f["scorer"] == "vlm" for f in frames)


def test_bad_configuration_and_missing_model_are_clear(project):
    instance, resources, db, _ = project
    run_sensor(instance)
    bad = dg.materialize(THEME_ASSETS[:2], resources=resources, partition_key="style", instance=instance,
                         run_config={"ops": {"edited_first_frames": {"config": {"min_edit_score": 11}}}},
                         raise_on_error=False)
    assert not bad.success
    failure = [e for e in bad.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "min_edit_score must be in [0, 10]" in str(failure.event_specific_data.error.message)
    missing = {**resources, "video_backend": VideoBackendResource(backend="diffusers", model_dir="/nowhere")}
    res = dg.materialize(THEME_ASSETS, resources=missing, partition_key="style", instance=instance, raise_on_error=False)
    message = str([e for e in res.all_events if e.event_type_value == "STEP_FAILURE"][0].event_specific_data.error.message)
    assert "video_backend.model_dir (/nowhere)" in message
    from sparkle_assets.stages.per_theme.curated_pairs import curated_pairs
    from sparkle_assets.stages.per_theme.edited_videos import edited_videos
    for asset, config, expected in [
            (edited_videos, {"harmony": 2.0}, "harmony must be in [0, 1], got 2.0"),
            (curated_pairs, {"min_pass_rate": 0.5, "max_pass_rate": 0.2}, "need 0 <= min_pass_rate <= max_pass_rate"),
            (curated_pairs, {"rate_min_pairs": 0}, "rate_min_pairs must be >= 1")]:
        res = dg.materialize([asset], resources=resources, partition_key="style", instance=instance,
                             run_config={"ops": {asset.key.path[-1]: {"config": config}}}, raise_on_error=False)
        message = str([e for e in res.all_events if e.event_type_value == "STEP_FAILURE"][0]
                      .event_specific_data.error.message)
        assert expected in message, message


def test_definitions_expose_jobs_and_sensor():
    assert {j.name for j in defs.jobs} >= {"theme_independent", "theme_assets", "sparkle_main", "refilter"}
    assert defs.resolve_sensor_def("theme_taxonomy") is not None


def read_csv(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_final_stage_export_reads_back_and_refilters_without_decoding(project, monkeypatch):
    import cv2

    from sparkle_bench.sparkle_format import read_bench, read_release
    from sparkle_assets.core.store import file_sha256

    instance, resources, db, _ = project
    run_sensor(instance)
    build_theme(instance, resources, "time")
    root = db.db_path.parent / "dataset"
    rows = read_release(root, ["time"])
    exported = db.current_artifacts("sparkle_dataset", "time", kind="dataset_row")
    decisions = {d["clip_id"]: d for d in db.current_artifacts("curated_pairs", "time", status=None)}
    # clip a's mask covers only blobs of the moving oval in its later frames, so the composite shows the
    # subject see-through there: the final filter's edit score sees it and the pair is dropped
    assert decisions["a"]["status"] == "dropped" and "edit_score" in decisions["a"]["reason"]
    assert decisions["b"]["status"] == "ok"
    assert len(rows) == 1 and {r.task for r in rows} == {e["info"]["task"] for e in exported} == {"sparkle_time_b"}
    assert [list(r) for r in read_csv(root / "prompts" / "time_train.csv")][0] == ["prompt", "src_video", "tgt_video",
                                                                                 "task"]
    manifest = json.loads((root / "release_manifest" / "time.json").read_text())
    videos = {v["id"]: v for v in db.current_artifacts("edited_videos", "time", kind="edited_video")}
    for row, entry in zip(sorted(rows, key=lambda r: r.task), sorted(manifest["rows"], key=lambda m: m["task"])):
        assert row.task == entry["task"] and len(row.intermediates) == 6
        assert row.metadata["chosen_keyword"] and row.metadata["edit_type"] == "time"
        assert file_sha256(row.tgt_video) == entry["files"]["tgt_video"]["sha256"] == \
            videos[entry["lineage"]["edited_video"]]["content_hash"]
        assert {r["id"] for r in db.sources_of(entry["lineage"]["curated_pair"])} >= \
            {entry["lineage"]["foreground_mask"], entry["lineage"]["source_clip"], entry["lineage"]["guidance_video"]}
        assert set(row.scores) == {"edited_frame0_score", "edited_frame0_foreground_removed_score",
                                   "edited_video_score"}
    assert len(manifest["content_hash"]) == 64

    # a stricter threshold, re-applied by the cheap assets only: no video may be opened
    opened = []

    def no_decoding(*args, **kwargs):
        opened.append(args)
        raise AssertionError("the refilter tried to decode a video")

    monkeypatch.setattr(cv2, "VideoCapture", no_decoding)
    strict = {"ops": {"curated_pairs": {"config": {"min_edit_score": 10.0, "rate_min_pairs": 2}}}}
    blocked = build_theme(instance, resources, "time", strict, assets=CHEAP_ASSETS, ok=False)
    check = [e for e in blocked.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
             and e.event_specific_data.asset_check_key.name == "curated_pairs_pass_rates"][0]
    assert not check.event_specific_data.passed  # pass rate 0 < 0.05 over 2 pairs: the export is blocked
    assert len(read_release(root, ["time"])) == 1  # ...and the previous export is untouched
    strict["ops"]["curated_pairs"]["config"]["min_pass_rate"] = 0.0
    result = build_theme(instance, resources, "time", strict, assets=CHEAP_ASSETS)
    assert opened == []
    s = summary(db, result.run_id)
    assert s[("curated_pairs", "time")] ["kept"] == 0 and s[("sparkle_dataset", "time")]["rows"] == 0
    assert s[("bench_split", "time")]["rows"] == 2
    assert read_release(root, ["time"]) == [] and not list((root / "time" / "edited_video").glob("*.mp4"))
    bench = read_bench(db.db_path.parent / "bench", ["time"])
    dropped = db.current_artifacts("curated_pairs", "time", status="dropped")
    assert len(bench) == 2 and all(b.original_video.is_file() for b in bench)
    assert all("edit_score" in d["reason"] and "(need >= 10.0)" in d["reason"] for d in dropped)
    assert all(b.metadata["failed_filter"] for b in bench)
    unmeasured = build_theme(instance, resources, "time", {"ops": {"curated_pairs": {"config": {"min_clip_score": 20}}}},
                             assets=CHEAP_ASSETS, ok=False)
    failure = [e for e in unmeasured.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "clip_score is not measured" in str(failure.event_specific_data.error.message)


def test_nightly_schedule_requests_one_cheap_run_per_theme(home):
    from datetime import datetime, timezone

    from sparkle_assets.definitions import nightly_refilter

    when = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)
    with dg.instance_for_test() as instance:
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as ctx:
            assert isinstance(nightly_refilter(ctx), dg.SkipReason)  # no theme registered yet
        run_sensor(instance)
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as ctx:
            requests = nightly_refilter(ctx)
    assert sorted(r.partition_key for r in requests) == ["location", "season", "style", "time"]
    assert len({r.run_key for r in requests}) == 4 and all("2026-11-25" in r.run_key for r in requests)
    job = defs.resolve_job_def(nightly_refilter.job_name)
    assert job.name == "refilter"
    assert set(job.asset_layer.executable_asset_keys) == {a.key for a in CHEAP_ASSETS}
    assert {a.key.path[-1] for a in CHEAP_ASSETS} == {"curated_pairs", "sparkle_dataset", "bench_split"}
