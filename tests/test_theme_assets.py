"""Stages 2-3 in Dagster: the theme sensor, a theme backfill that reuses every theme-independent
artifact, incrementality, thresholds re-judging stored artifacts, the real backends through the
assets (tiny random weights, a local VLM endpoint), and bad configuration."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import pytest

from sparkle_assets.definitions import THEME_ASSETS, THEME_INDEPENDENT, defs, theme_taxonomy
from sparkle_assets.lineage import Lineage
from sparkle_assets.resources import EditBackendResource, VideoBackendResource, VlmResource, default_resources

from conftest import REPO
from sparkle_model.video import write_video
from test_theme_models import FakeChatServer

SMALL = {"ops": {"source_clips": {"config": {"max_side": 128, "max_frames": 17}}}}


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


def build_theme(instance, resources, theme, run_config=None):
    result = dg.materialize(THEME_ASSETS, resources=resources, partition_key=theme, instance=instance,
                            run_config=run_config or {})
    assert result.success
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
    assert all(v["computed"] == 0 for v in summary(db, again.run_id).values())
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


def test_real_backends_through_the_assets(project, tmp_path):
    """The diffusers edit and image-to-video pipelines (tiny random weights) and a VLM endpoint run
    inside the theme assets; this checks plumbing, not picture quality."""
    from tiny_models import build_tiny_inpaint, build_tiny_wan_i2v

    instance, resources, db, _ = project
    run_sensor(instance)
    server = FakeChatServer({"instruction": "Place the subject on a windy beach with waves rolling in and palm "
                                            "fronds swaying, under a bright sky with clouds drifting slowly.",
                             "original_scene": "A red square in front of a textured wall.",
                             "prompt_following": 9, "consistency": 9, "perceptual_quality": 9})
    try:
        res = {**resources,
               "vlm": VlmResource(backend="endpoint", base_url=server.url, model="judge"),
               "edit_backend": EditBackendResource(backend="diffusers", model_dir=str(build_tiny_inpaint(tmp_path / "inp")),
                                                   steps=2, max_side=64, scorer="vlm"),
               "video_backend": VideoBackendResource(backend="diffusers", model_dir=str(build_tiny_wan_i2v(tmp_path / "i2v")),
                                                     steps=2, max_side=64)}
        result = build_theme(instance, res, "location")
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


def test_definitions_expose_jobs_and_sensor():
    assert {j.name for j in defs.jobs} >= {"theme_independent", "theme_assets", "sparkle_main"}
    assert defs.resolve_sensor_def("theme_taxonomy") is not None
