"""foreground_masks: the npz layout, BAIT's parts, the backends, and the asset's incrementality."""

import json

import dagster as dg
import numpy as np
import pytest

from sparkle_assets.core.steps import mask_quality
from sparkle_assets.stages.per_clip.foreground_masks import foreground_masks, foreground_masks_quality
from sparkle_assets.core.lineage import Lineage
from sparkle_assets.core.resources import (ArtifactStoreResource, ClipExecutorResource, LineageResource,
                                      MaskBackendResource, SourcesResource, VlmResource)
from sparkle_assets.stages.per_clip.source_clips import source_clips
from sparkle_assets.stages.per_clip.static_clips import static_clips
from sparkle_model.bait import Box, bait_track, choose_anchors, directions_for, sample_indices
from sparkle_model.foreground import ClassicalBackend
from sparkle_model.masks import load_mask_npz, save_mask_npz
from sparkle_model.video import read_video, write_video

from conftest import make_clip


def test_npz_roundtrip_matches_the_release_layout(tmp_path):
    mask = np.random.default_rng(0).random((5, 37, 53)) > 0.6  # sizes that do not fill whole bytes
    save_mask_npz(tmp_path / "m.npz", mask)
    with np.load(tmp_path / "m.npz") as data:
        assert sorted(data.files) == ["mask", "shape"]
        assert data["mask"].dtype == np.uint8 and data["shape"].tolist() == [5, 37, 53]
        assert np.array_equal(np.unpackbits(data["mask"], count=mask.size).reshape(mask.shape).astype(bool), mask)
    assert np.array_equal(load_mask_npz(tmp_path / "m.npz"), mask)


def test_anchor_schedule():
    assert sample_indices(81, 16.0) == list(range(0, 81, 8))
    assert sample_indices(10, 16.0) == [0, 8, 9]
    assert choose_anchors(list(range(0, 81, 8)), 3) == [0, 40, 80]
    assert directions_for(3) == ["forward", "both", "backward"] and directions_for(1) == ["both"]


class FakeBackend:
    """Grounds one box everywhere; each pass returns a fixed mask so the vote can be checked."""

    def __init__(self, masks):
        self.masks, self.calls = list(masks), []

    def ground(self, frames, indices):
        return {i: [Box(0, 0, 4, 4, "person")] for i in indices}

    def track(self, frames, anchor, boxes, direction):
        self.calls.append((anchor, direction))
        return self.masks[len(self.calls) - 1]


def test_pixel_vote_is_a_strict_majority():
    t, h, w = 17, 4, 4
    a, b, c = (np.zeros((t, h, w), bool) for _ in range(3))
    a[:, 0, 0] = b[:, 0, 0] = True  # 2 of 3 -> kept
    c[:, 1, 1] = True  # 1 of 3 -> voted out
    backend = FakeBackend([a, b, c])
    result = bait_track(np.zeros((t, h, w, 3), np.uint8), 16.0, backend, n_passes=3)
    assert backend.calls == [(0, "forward"), (8, "both"), (16, "backward")]
    assert result.mask[:, 0, 0].all() and not result.mask[:, 1, 1].any()
    assert bait_track(np.zeros((t, h, w, 3), np.uint8), 16.0, FakeBackend([a, b, c]), 3, 0.0).mask[:, 1, 1].all()


def test_classical_backend_finds_the_moving_object(tmp_path):
    frames = read_video(make_clip(tmp_path / "c.mp4", frames=33, size=(128, 96)))
    result = bait_track(frames, 16.0, ClassicalBackend(), n_passes=3)
    assert result.anchors and result.mask.shape == frames.shape[:3]
    truth = np.zeros(result.mask.shape, bool)  # the moving square drawn by make_clip
    for t in range(len(truth)):
        cx = 10 + (t * 2) % (128 - 30)
        truth[t, 32:52, cx:cx + 16] = True
    hit = (result.mask & truth).sum() / truth.sum()
    assert hit > 0.9 and result.mask.mean() < 0.2


def test_empty_scene_is_flagged_not_crashed(tmp_path):
    still = np.full((17, 64, 96, 3), 120, np.uint8)
    result = bait_track(still, 16.0, ClassicalBackend(), n_passes=3)
    assert not result.mask.any() and result.anchors == []
    stats, reason = mask_quality(result.mask)
    assert reason.startswith("empty mask") and stats["coverage"] == 0.0


def test_whole_frame_and_jumping_masks_are_flagged():
    full = np.ones((5, 10, 10), bool)
    assert "whole frame" in mask_quality(full)[1]
    jump = np.zeros((5, 40, 40), bool)
    jump[::2, :10, :10] = True
    jump[1::2, 30:, 30:] = True
    assert "jumps between frames 0 and 1" in mask_quality(jump)[1]


def test_sam2_backend_plumbing_with_random_weights(tmp_path):
    """Plumbing only: a random-weight SAM 2.1 (hiera-t config, 256 px) runs the real predictor code
    (init_state, add_new_points_or_box, propagate forward and backward); the masks mean nothing."""
    from sparkle_model.sam2_tracker import Sam2Backend

    frames = read_video(make_clip(tmp_path / "s.mp4", frames=9, size=(96, 64)))
    result = bait_track(frames, 16.0, Sam2Backend(None, random_weights=True, image_size=256), n_passes=2)
    assert result.mask.shape == (9, 64, 96) and result.mask.dtype == bool
    assert result.directions == ["forward", "backward"]


def test_sam2_without_checkpoint_names_the_setting(tmp_path):
    with pytest.raises(ValueError, match="sam2_checkpoint"):
        MaskBackendResource(backend="sam2").settings()
    with pytest.raises(ValueError, match="sam2_checkpoint"):
        MaskBackendResource(backend="sam2", sam2_checkpoint=str(tmp_path / "missing.pt")).settings()
    with pytest.raises(ValueError, match="'classical' or 'sam2'"):
        MaskBackendResource(backend="yolo").settings()


def _summary(lineage, run_id, key):
    return json.loads(lineage.query("SELECT summary FROM materialization WHERE run_id = ? AND asset_key = ?",
                                    [run_id, key])[0]["summary"])


def test_masks_asset_incrementality_and_check(home, tmp_path):
    folder = tmp_path / "clips"
    make_clip(folder / "moving.mp4", frames=17, size=(128, 96), seed=4)
    write_video(folder / "empty_scene.mp4", [np.full((96, 128, 3), 90, np.uint8)] * 17, fps=16)
    res = {"artifact_store": ArtifactStoreResource(home=str(home)), "lineage": LineageResource(home=str(home)),
           "sources": SourcesResource(folders=[str(folder)], bundled=False),
           "clip_executor": ClipExecutorResource(kind="in_process"), "mask_backend": MaskBackendResource(),
           "vlm": VlmResource()}
    instance = dg.DagsterInstance.ephemeral()
    assets = [source_clips, static_clips, foreground_masks, foreground_masks_quality]
    first = dg.materialize(assets, resources=res, instance=instance)
    assert first.success
    lineage = Lineage(home / "lineage.duckdb")
    rows = {r["clip_id"]: r for r in lineage.current_artifacts("foreground_masks", status=None,
                                                              kind="foreground_mask")}
    assert rows["moving"]["status"] == "ok"
    assert rows["empty_scene"]["status"] == "dropped" and "empty mask" in rows["empty_scene"]["reason"]
    mask = load_mask_npz(home / "store" / rows["moving"]["uri"])
    assert mask.shape == (17, 96, 128)
    edges = lineage.query("SELECT role FROM artifact_edge WHERE child_id = ?", [rows["moving"]["id"]])
    assert edges == [{"role": "clip"}]
    check = first.get_asset_check_evaluations()[0]
    assert not check.passed and check.metadata["flagged"].value == 1
    assert len(lineage.current_artifacts("foreground_masks", kind="mask_preview")) == 2

    # nothing changed: nothing recomputed anywhere
    again = dg.materialize(assets, resources=res, instance=instance)
    assert [_summary(lineage, again.run_id, k)["computed"] for k in
            ("source_clips", "static_clips", "foreground_masks")] == [0, 0, 0]

    # only the vote threshold changed: masks recomputed, clips and camera scores are not
    cfg = {"ops": {"foreground_masks": {"config": {"vote_threshold": 0.3}}}}
    third = dg.materialize(assets, resources=res, instance=instance, run_config=cfg)
    assert [_summary(lineage, third.run_id, k)["computed"] for k in
            ("source_clips", "static_clips", "foreground_masks")] == [0, 0, 2]
