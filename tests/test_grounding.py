"""Grounding for BAIT (sparkle_model.grounding) and the VLM camera check: reply parsing, the VLM and
detector grounders, tracking a still object from its box, and both through the assets, with a fake
OpenAI-compatible endpoint giving recorded-style replies and with a tiny local Qwen2.5-VL."""

from __future__ import annotations

import json
import shutil

import cv2
import dagster as dg
import numpy as np
import pytest

from sparkle_assets.core.lineage import Lineage
from sparkle_assets.core.resources import (ArtifactStoreResource, ClipExecutorResource, LineageResource,
                                           MaskBackendResource, SourcesResource, VlmResource, default_resources)
from sparkle_assets.definitions import THEME_ASSETS, THEME_INDEPENDENT
from sparkle_assets.stages.per_clip.foreground_masks import foreground_masks
from sparkle_assets.stages.per_clip.source_clips import source_clips
from sparkle_assets.stages.per_clip.static_clips import StaticClipsConfig, check_state, static_clips
from sparkle_assets.stages.release.sparkle_dataset import sparkle_dataset_files
from sparkle_bench.sparkle_format import read_release
from sparkle_model import backends
from sparkle_model.bait import bait_track, sample_indices
from sparkle_model.foreground import ClassicalBackend
from sparkle_model.grounding import (GroundingError, RecordedGrounder, VlmGrounding, clean_bbox, parse_boxes,
                                     to_pixels)
from sparkle_model.masks import load_mask_npz
from sparkle_model.video import read_video, write_video

from conftest import REPO
from fake_chat import ChatServer

SUBJECT, THING = "person in red", "blue easel"
THING_BOX = (slice(30, 86), slice(88, 116))  # rows, columns of the still object


def make_scene_clip(path, seed: int = 0, frames: int = 17, size=(128, 96), objects: bool = True):
    """A grey textured wall; with `objects`, a red oval subject drifting 1 px a frame and a blue
    object that never moves (what person segmentation and motion cannot see)."""
    w, h = size
    rng = np.random.default_rng(seed)
    wall = np.repeat(cv2.resize(rng.integers(70, 170, (h // 8, w // 8), dtype=np.uint8), (w, h),
                                interpolation=cv2.INTER_CUBIC)[..., None], 3, axis=2)
    low, high = rng.integers(20, 60, (2, h, w)), rng.integers(170, 240, (h, w))
    blue = np.stack([low[0], low[1], high], -1).astype(np.uint8)
    red = np.stack([high, low[0], low[1]], -1).astype(np.uint8)
    out = []
    for t in range(frames):
        f = wall.copy()
        if objects:
            f[THING_BOX] = blue[THING_BOX]
            oval = subject_mask(t, (h, w))
            f[oval] = red[oval]
        out.append(f)
    return write_video(path, out, fps=16)


def subject_mask(t: int, shape) -> np.ndarray:
    oval = np.zeros(shape, np.uint8)
    cv2.ellipse(oval, (30 + t, 50), (12, 20), 0, 0, 360, 1, -1)
    return oval > 0


def color_box(rgb: np.ndarray, color: str) -> list[int] | None:
    """The [0, 1000] box of the saturated red or blue pixels of an image (None if there are none)."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hue = hsv[..., 0]
    found = ((hue < 10) | (hue > 170)) if color == "red" else ((hue > 100) & (hue < 130))
    ys, xs = np.nonzero(found & (hsv[..., 1] > 120) & (hsv[..., 2] > 80))
    if len(xs) < 20:
        return None
    h, w = found.shape
    return [round(xs.min() / w * 1000), round(ys.min() / h * 1000), round((xs.max() + 1) / w * 1000),
            round((ys.max() + 1) / h * 1000)]


def scene_replies(prompt: str, images: list[np.ndarray]) -> str:
    """The replies a grounding VLM would give on the scene clips: the subject and the object it is with,
    boxed where they are, both rounds; the camera check; instructions. A wall alone gets prose."""
    red, blue = color_box(images[0], "red"), color_box(images[0], "blue")
    if "whether the camera moves" in prompt:
        verdict = ("static", 0.9) if blue else ("moving", 0.7)
        return json.dumps({"reasoning": "The wall texture stays in place.", "camera": verdict[0],
                           "confidence": verdict[1]})
    if "You write instructions" in prompt:
        return json.dumps({"instruction": "Place the subject on a windy beach with waves rolling in and palm fronds "
                                          "swaying, under a bright sky with clouds drifting slowly.",
                           "original_scene": "A figure in red beside a blue board in front of a grey wall."})
    boxes = [{"bbox_2d": red or [], "label": SUBJECT}, {"bbox_2d": blue or [], "label": THING}]
    if "Locate each of these objects" in prompt:
        return "```json\n" + json.dumps(boxes) + "\n```"
    if "foreground object that must be kept" in prompt and (red or blue):
        return "Here they are:\n```json\n" + json.dumps([b for b in boxes if b["bbox_2d"]]) + "\n```"
    return "I can only see a grey wall."


class ScriptedVlm:
    """A VLM client answering from a list of replies, in order."""

    def __init__(self, replies):
        self.replies, self.prompts = list(replies), []

    def generate(self, prompt, images):
        self.prompts.append(prompt)
        return self.replies.pop(0)


def test_replies_boxes_and_coordinates():
    cookbook = '```json\n[\n\t{"bbox_2d": [765, 394, 891, 550], "label": "top right brown cake"}\n]\n```'
    assert parse_boxes(cookbook) == [{"bbox_2d": [765, 394, 891, 550], "label": "top right brown cake"}]
    assert parse_boxes('Sure: [{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [], "label": "b"}] done') == \
        [{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [], "label": "b"}]
    assert parse_boxes('{"bbox_2d": [1, 2, 3, 4], "label": "x"}') == [{"bbox_2d": [1, 2, 3, 4], "label": "x"}]
    assert parse_boxes("[]") == [] and parse_boxes("```json\n[]\n```") == []
    assert parse_boxes("no boxes here") is None and parse_boxes('[{"box": [1, 2, 3, 4]}]') is None
    assert clean_bbox([900, 1200, 100, -5]) == [100, 0, 900, 1000]
    assert clean_bbox([]) == [] and clean_bbox([5, 5, 5, 9]) == [] and clean_bbox([[1, 2, 30, 40]]) == [1, 2, 30, 40]
    assert clean_bbox([1, 2, 3]) is None and clean_bbox(["a", 1, 2, 3]) is None and clean_bbox("1,2,3,4") is None
    assert to_pixels([447, 27, 765, 998], 1280, 720) == (572, 19, 979, 718)  # the release README's example


def test_vlm_grounding_retries_then_names_the_reply():
    frames = {0: np.zeros((32, 48, 3), np.uint8), 8: np.zeros((32, 48, 3), np.uint8)}
    client = ScriptedVlm(["Let me think...", '[{"bbox_2d": [0, 0, 500, 500], "label": "dog"}, '
                                             '{"bbox_2d": [10, 10, 20, 20], "label": "dog"}]',
                          '[{"bbox_2d": [0, 0, 400, 400], "label": "dog 2"}]', "```json\n[]\n```"])
    record = VlmGrounding(client).ground_clip(frames)
    assert record["round1"]["labels"] == ["dog", "dog 2"] and record["size"] == [48, 32]
    assert "previous reply could not be read" in client.prompts[1] and '"dog 2"' in client.prompts[2]
    assert record["round2"]["frame_objects"] == [[{"bbox_2d": [], "label": "dog"},
                                                  {"bbox_2d": [0, 0, 400, 400], "label": "dog 2"}],
                                                 [{"bbox_2d": [], "label": "dog"}, {"bbox_2d": [], "label": "dog 2"}]]
    assert [len(e) for e in record["round2"]["exchanges"]] == [1, 1] and len(record["round1"]["exchanges"]) == 2
    with pytest.raises(GroundingError, match="round 1 .* after 3 tries; last reply: 'nope 3'"):
        VlmGrounding(ScriptedVlm(["nope 1", "nope 2", "nope 3"])).ground_clip(frames)


def test_a_still_object_is_tracked_from_its_box(tmp_path):
    frames = read_video(make_scene_clip(tmp_path / "scene.mp4"))
    sampled = sample_indices(len(frames), 16.0)

    class Client:
        def generate(self, prompt, images):
            return scene_replies(prompt, images)

    record = VlmGrounding(Client()).ground_clip({i: frames[i] for i in sampled})
    assert record["round1"]["labels"] == [SUBJECT, THING] and record["frames"] == sampled
    own = bait_track(frames, 16.0, ClassicalBackend(), n_passes=3).mask
    grounded = bait_track(frames, 16.0, ClassicalBackend(grounder=RecordedGrounder(record)), n_passes=3).mask
    thing = lambda m: m[(slice(None), *THING_BOX)].mean(axis=(1, 2))  # noqa: E731
    subject = [grounded[t][subject_mask(t, frames.shape[1:3])].mean() for t in range(len(frames))]
    assert thing(own).max() < 0.2  # neither a person nor moving: the classical evidence misses it
    assert thing(grounded).min() > 0.85 and np.mean(subject) > 0.7 and grounded.mean() < 0.3


def test_detector_grounding_with_tiny_owlv2_and_grounding_dino(tmp_path):
    """Plumbing: random tiny detectors (threshold 0) fill the same record BAIT follows."""
    from tiny_models import build_tiny_grounding_dino, build_tiny_owlv2

    frames = read_video(make_scene_clip(tmp_path / "scene.mp4", frames=9))
    sampled = {i: frames[i] for i in sample_indices(len(frames), 16.0)}
    for build in (build_tiny_owlv2, build_tiny_grounding_dino):
        settings = {"name": "detector", "model_dir": str(build(tmp_path / build.__name__)), "vocabulary": ["bicycle"],
                    "threshold": 0.0, "device": "cpu"}
        record = backends.grounding(settings).ground_clip(sampled)
        labels = record["round1"]["labels"]
        assert record["backend"] == "detector" and 1 <= len(labels) <= 8 and len(set(labels)) == len(labels)
        assert {o["query"] for o in record["round1"]["objects"]} <= {"person", "bicycle"}
        assert all(clean_bbox(o["bbox_2d"]) == o["bbox_2d"] for o in record["round1"]["objects"])
        assert [[o["label"] for o in f] for f in record["round2"]["frame_objects"]] == [labels] * len(sampled)
        mask = bait_track(frames, 16.0, ClassicalBackend(grounder=RecordedGrounder(record)), n_passes=2).mask
        assert mask.shape == frames.shape[:3] and mask.any()


def test_grounding_settings_name_what_is_missing(tmp_path):
    none, local = {"name": "none"}, {"name": "local", "model_dir": str(tmp_path), "device": "cpu"}
    assert MaskBackendResource().grounding_settings(local) == {"name": "classical"}
    assert MaskBackendResource(grounding="vlm").grounding_settings(local) == {"name": "vlm", "vlm": local}
    with pytest.raises(ValueError, match="vlm.backend is 'none'.*SPARKLE_VLM_BACKEND"):
        MaskBackendResource(grounding="vlm").grounding_settings(none)
    with pytest.raises(ValueError, match="mask_backend.detector_dir .*SPARKLE_DETECTOR_DIR"):
        MaskBackendResource(grounding="detector", detector_dir=str(tmp_path / "nowhere")).grounding_settings(none)
    with pytest.raises(ValueError, match="'classical', 'vlm' or 'detector'"):
        MaskBackendResource(grounding="yolo").grounding_settings(none)
    with pytest.raises(ValueError, match="SPARKLE_VLM_URL"):
        VlmResource(backend="endpoint").settings()


def _summary(db, run_id, key, partition=""):
    rows = db.query("SELECT summary FROM materialization WHERE run_id = ? AND asset_key = ? AND partition = ?",
                    [run_id, key, partition])
    return json.loads(rows[0]["summary"])


def test_vlm_grounding_camera_check_and_export_through_an_endpoint(home, tmp_path, monkeypatch):
    """The paper's VLM steps through an OpenAI-compatible endpoint (a local fake with recorded-style
    replies): the camera check (threshold re-decided without new requests), both grounding rounds as
    a stored artifact behind the mask (which covers the still object), a clip whose replies never parse
    failing alone, and the release's two grounding JSONL files in the export."""
    folder, themes = tmp_path / "videos", tmp_path / "themes"
    make_scene_clip(folder / "with_object.mp4", seed=1)
    make_scene_clip(folder / "wall_only.mp4", seed=2, objects=False)
    shutil.copytree(REPO / "themes", themes)
    server = ChatServer(scene_replies)
    for name, value in {"SPARKLE_SOURCE_FOLDERS": str(folder), "SPARKLE_THEMES_DIR": str(themes),
                        "SPARKLE_VLM_BACKEND": "endpoint", "SPARKLE_VLM_URL": server.url,
                        "SPARKLE_VLM_MODEL": "grounder", "SPARKLE_GROUNDING": "vlm"}.items():
        monkeypatch.setenv(name, value)
    resources, db, instance = default_resources(), Lineage(home / "lineage.duckdb"), dg.DagsterInstance.ephemeral()
    small = {"ops": {"source_clips": {"config": {"max_side": 128, "max_frames": 17}}}}
    try:
        first = dg.materialize(THEME_INDEPENDENT, resources=resources, run_config=small, instance=instance)
        # the camera check: the wall-only clip looks moving to the VLM (0.7 > 0.5) and is dropped
        decisions = {r["clip_id"]: r for r in db.current_artifacts("static_clips", status=None, kind="static_clip")}
        assert decisions["with_object"]["status"] == "ok"
        assert decisions["wall_only"]["status"] == "dropped" and "VLM camera check: moving" in \
            decisions["wall_only"]["reason"]
        checks = db.current_artifacts("static_clips", kind="camera_check")
        assert len(checks) == 2 and all(c["info"]["reply"] and c["info"]["verdict"] for c in checks)
        event = instance.get_latest_materialization_event(dg.AssetKey("static_clips")).asset_materialization
        assert event.metadata["vlm_camera_check"].value.startswith("on (endpoint)")
        asked = len(server.requests)
        assert asked == 2 + 1 + 3  # two camera checks, round 1, round 2 on frames 0, 8, 16

        # the grounding record: both rounds with prompts and raw replies, a parent of the mask
        grounding = db.current_artifacts("foreground_masks", kind="foreground_grounding")[0]
        record = json.loads((home / "store" / grounding["uri"]).read_text())
        assert record["round1"]["labels"] == [SUBJECT, THING] and record["frames"] == [0, 8, 16]
        assert "must be kept" in record["round1"]["exchanges"][0]["prompt"]
        assert record["round1"]["exchanges"][0]["reply"].startswith("Here they are")
        mask_row = db.current_artifacts("foreground_masks", kind="foreground_mask")[0]
        roles = {r["role"] for r in db.query("SELECT role FROM artifact_edge WHERE child_id = ?", [mask_row["id"]])}
        assert roles == {"clip", "grounding"}
        mask = load_mask_npz(home / "store" / mask_row["uri"])
        assert mask[(slice(None), *THING_BOX)].mean(axis=(1, 2)).min() > 0.85

        # a new camera threshold re-decides from the stored checks: no request; then the wall-only
        # clip's grounding replies never parse: it fails with the reply, the partition goes on
        loose = {"ops": {"static_clips": {"config": {"max_camera_moving": 0.8}}}}
        assert dg.materialize([static_clips], resources=resources, run_config=loose, instance=instance).success
        assert len(server.requests) == asked and len(db.current_artifacts("static_clips", kind="static_clip")) == 2
        masks = dg.materialize([foreground_masks], resources=resources, instance=instance)
        assert masks.success and len(server.requests) == asked + 3  # round 1 on the wall, tried 3 times
        failed = db.current_artifacts("foreground_masks", status="failed", kind="foreground_grounding")
        assert [f["clip_id"] for f in failed] == ["wall_only"]
        assert "after 3 tries; last reply: 'I can only see a grey wall.'" in failed[0]["reason"]
        s = _summary(db, masks.run_id, "foreground_masks")
        assert (s["failed"], s["usable"], s["grounding_computed"], s["computed"]) == (1, 1, 0, 0)
        revote = dg.materialize([foreground_masks], resources=resources, instance=instance,
                                run_config={"ops": {"foreground_masks": {"config": {"vote_threshold": 0.3}}}})
        assert _summary(db, revote.run_id, "foreground_masks")["computed"] == 1
        assert len(server.requests) == asked + 6  # only the failed clip asked again

        # a theme: the export carries both grounding files in the release's field layout
        instance.add_dynamic_partitions("theme", ["location"])
        accept = {"ops": {"edited_first_frames": {"config": {"min_edit_score": 0.0}},
                          "background_plates": {"config": {"min_plate_score": 0.0}},
                          "background_videos": {"config": {"min_background_motion": 0.0}},
                          "curated_pairs": {"config": {"min_edit_score": 0.0, "min_fg_structure": None,
                                                       "max_fg_motion_error": None, "max_warp_error": None,
                                                       "max_flicker": None, "min_background_dynamics": None,
                                                       "min_judge_dimension": None, "min_pass_rate": 0.0}}}}
        built = dg.materialize([*THEME_ASSETS, sparkle_dataset_files], resources=resources, partition_key="location",
                               instance=instance, run_config=accept)
        assert built.success and first.success
    finally:
        server.close()
    rows = read_release(home / "dataset", ["location"])
    assert [r.task for r in rows] == ["sparkle_location_with_object"]
    r1, r2 = rows[0].grounding["foreground_grounding_r1"], rows[0].grounding["foreground_grounding_r2"]
    assert list(r1) == ["id", "prompt", "edit_type", "round1_labels", "round1_objects"]
    assert list(r2) == list(r1) + ["frame_objects"] and {k: r2[k] for k in r1} == r1
    assert r1["id"] == rows[0].task and r1["edit_type"] == "location" and r1["prompt"] == rows[0].prompt
    assert r1["round1_labels"] == [SUBJECT, THING]
    assert all(set(o) == {"bbox_2d", "label"} for o in r1["round1_objects"])
    assert [[o["label"] for o in f] for f in r2["frame_objects"]] == [[SUBJECT, THING]] * 3
    manifest = json.loads((home / "dataset" / "release_manifest" / "location.json").read_text())
    assert manifest["rows"][0]["lineage"]["foreground_grounding"] == grounding["id"]


def test_local_qwen_vl_answers_through_the_same_client(home, tmp_path):
    """A tiny random-weight Qwen2.5-VL directory (built offline) behind `vlm.backend = local`: its replies
    are noise, so the camera check and round 1 fail after their retries, each recorded with the reply,
    and neither fails the partition."""
    from tiny_models import build_tiny_qwen25vl

    folder = tmp_path / "videos"
    make_scene_clip(folder / "scene.mp4")
    res = {"artifact_store": ArtifactStoreResource(home=str(home)), "lineage": LineageResource(home=str(home)),
           "sources": SourcesResource(folders=[str(folder)], bundled=False),
           "clip_executor": ClipExecutorResource(kind="in_process"),
           "vlm": VlmResource(backend="local", model_dir=str(build_tiny_qwen25vl(tmp_path / "qwen"))),
           "mask_backend": MaskBackendResource(grounding="vlm")}
    db = Lineage(home / "lineage.duckdb")
    assert dg.materialize([source_clips, static_clips], resources=res).success
    failed = db.current_artifacts("static_clips", status="failed", kind="camera_check")
    assert len(failed) == 1 and "camera check: no usable verdict after 2 tries" in failed[0]["reason"]
    assert "last reply: '" in failed[0]["reason"]
    assert db.current_artifacts("static_clips", kind="static_clip") == []  # no verdict, no decision
    skip_check = {"ops": {"static_clips": {"config": {"vlm_camera_check": False}}}}
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([static_clips, foreground_masks], resources=res, run_config=skip_check,
                          instance=instance).success
    event = instance.get_latest_materialization_event(dg.AssetKey("static_clips")).asset_materialization
    assert event.metadata["vlm_camera_check"].value == "off: vlm_camera_check is false"
    assert check_state(StaticClipsConfig(), {"name": "none"}) == "off: no VLM configured (vlm.backend is 'none')"
    failed = db.current_artifacts("foreground_masks", status="failed", kind="foreground_grounding")
    assert len(failed) == 1 and "round 1 (frame 0): no JSON list of boxes in the VLM reply after 3 tries" in \
        failed[0]["reason"]
    assert failed[0]["params"]["grounding"]["vlm"]["name"] == "local"
