"""Stage 5 pieces without Dagster: decoupled guidance, the composite, the pair metrics (with tiny
CLIP / random AlexNet for the optional models), the Wan-VACE backend, and the release layout."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sparkle_bench.metrics import PAIR_METRICS, IqaModels, pair_metrics, sample_indices
from sparkle_bench.sparkle_format import (BENCH_COLUMNS, TRAIN_COLUMNS, ReleaseFormatError, csv_text, jsonl_text,
                                          read_bench, read_release, train_paths)
from sparkle_model.edited_video import composite_video
from sparkle_model.guidance import canny, fuse_canny, guidance_frames

H, W, N = 96, 128, 9


def scene(t: int, moving_bg: bool = True, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured background (drifting 2 px/frame when `moving_bg`) and a textured subject moving
    1 px/frame; returns (frame, subject mask)."""
    rng = np.random.default_rng(seed)
    big = cv2.resize(rng.integers(0, 255, (H // 4, (W + 40) // 4, 3), dtype=np.uint8), (W + 40, H),
                     interpolation=cv2.INTER_CUBIC)
    x = 2 * t if moving_bg else 0
    frame = big[:, x:x + W].copy()
    subject = cv2.resize(np.random.default_rng(99).integers(60, 255, (10, 8, 3), dtype=np.uint8), (32, 48),
                         interpolation=cv2.INTER_CUBIC)
    mask = np.zeros((H, W), bool)
    mask[24:72, 40 + 2 * t:72 + 2 * t] = True
    frame[mask] = subject.reshape(-1, 3)
    return frame, mask


def clip(moving_bg=True, seed=0):
    frames, masks = zip(*(scene(t, moving_bg, seed) for t in range(N)))
    return list(frames), np.stack(masks)


def test_fuse_canny_takes_source_inside_and_background_outside():
    src = np.full((H, W), 255, np.uint8)
    bg = np.zeros((H, W), np.uint8)
    mask = np.zeros((H, W), bool)
    mask[:, : W // 2] = True
    from sparkle_model.first_frame_edit import feathered
    fused = fuse_canny(src, bg, feathered(mask, 2.0))
    assert fused[:, :10].min() == 255 and fused[:, -10:].max() == 0
    edge = fused[:, W // 2 - 3: W // 2 + 3]
    assert 0 < edge.mean() < 255  # soft along the boundary
    source, masks = clip(seed=1)
    background, _ = clip(seed=2)
    frames = list(guidance_frames(source, background, masks))
    assert len(frames) == N and frames[0].shape == (H, W, 3)
    inside, outside = masks[3] & (cv2.erode(masks[3].astype(np.uint8), np.ones((7, 7))) > 0), ~masks[3]
    np.testing.assert_allclose(frames[3][..., 0][inside], canny(source[3])[inside], atol=16)
    far = outside & (cv2.dilate(masks[3].astype(np.uint8), np.ones((15, 15))) == 0)
    np.testing.assert_array_equal(frames[3][..., 0][far], canny(background[3])[far])
    with pytest.raises(ValueError, match="differ in size"):
        list(guidance_frames(source, [f[:32] for f in background], masks))


def test_composite_darkens_subject_for_a_night_scene_without_flicker():
    source, masks = clip(moving_bg=False)
    night = [np.clip(f.astype(int) // 4 + np.array([0, 0, 30]), 0, 255).astype(np.uint8) for f in clip(seed=3)[0]]
    out = list(composite_video(source, night, masks, harmony=0.5))
    lum = lambda f, m: cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[m].mean()  # noqa: E731
    assert lum(out[4], masks[4]) < lum(source[4], masks[4]) - 10
    # a background whose brightness jumps every frame: the remembered grade keeps the subject steady
    flashing = [np.clip(f.astype(int) + (40 if t % 2 else -40), 0, 255).astype(np.uint8) for t, f in enumerate(night)]
    steady = [lum(f, m) for f, m in zip(composite_video(source, flashing, masks, 0.5, memory=0.85), masks)]
    jumpy = [lum(f, m) for f, m in zip(composite_video(source, flashing, masks, 0.5, memory=0.0), masks)]
    assert np.abs(np.diff(steady)).mean() < 0.5 * np.abs(np.diff(jumpy)).mean()
    with pytest.raises(ValueError, match="memory"):
        list(composite_video(source, night, masks, memory=1.0))


def test_pair_metrics_rank_what_they_claim_to():
    source, masks = clip(moving_bg=False)
    assert sample_indices(81) == [1, 26, 51, 76] and sample_indices(N) == [1, 2, 3, 4]
    same = pair_metrics(source, source, masks, 16, ["water"])
    assert set(same) == set(PAIR_METRICS)
    assert same["fg_structure"] > 0.99 and same["fg_psnr"] == 100 and same["fg_motion_error"] < 1e-6
    assert same["background_dynamics"] < 0.2  # only the uncovered edge behind the moving subject
    assert same["fg_lpips"] is None and same["clip_score"] is None  # not configured: missing, not faked
    moving, _ = clip(moving_bg=True)
    lively = [np.where(m[..., None], s, b) for s, b, m in zip(source, moving, masks)]
    live = pair_metrics(source, lively, masks, 16, ["water"])
    assert live["background_dynamics"] > 20 * same["background_dynamics"] and live["background_dynamics_vs_cues"] == 10
    assert live["fg_structure"] > 0.9
    frozen = [source[0]] * N  # the subject stops moving
    assert pair_metrics(source, frozen, masks, 16, [])["fg_motion_error"] > live["fg_motion_error"] + 0.2
    noisy = [np.clip(f + np.random.default_rng(t).normal(0, 40, f.shape), 0, 255).astype(np.uint8)
             for t, f in enumerate(lively)]
    bad = pair_metrics(source, noisy, masks, 16, ["water"])
    assert bad["warp_error"] > 3 * live["warp_error"] and bad["fg_structure"] < live["fg_structure"]
    assert bad["fg_gmsd"] > live["fg_gmsd"] and bad["fg_fsim"] < live["fg_fsim"]


def test_optional_metric_models_load_from_local_files(tmp_path):
    from tiny_models import build_random_alexnet, build_tiny_clip

    models = IqaModels(lpips_backbone=str(build_random_alexnet(tmp_path / "alexnet.pth")),
                       clip_dir=str(build_tiny_clip(tmp_path / "clip")))
    source, masks = clip(moving_bg=False)
    out = pair_metrics(source, source, masks, 16, [], "a lake at dusk", models)
    assert out["fg_lpips"] == pytest.approx(0, abs=1e-4) and isinstance(out["clip_score"], float)
    with pytest.raises(FileNotFoundError, match="AlexNet state dict"):
        IqaModels(lpips_backbone=str(tmp_path / "nope.pth")).lpips()


def test_vace_backend_generates_from_guidance_and_first_frame(tmp_path):
    from tiny_models import build_tiny_vace

    from sparkle_model.diffusion import DiffusersGuidedGenerator, DiffusionError

    gen = DiffusersGuidedGenerator(str(build_tiny_vace(tmp_path / "vace")), steps=2, max_side=64)
    source, masks = clip()
    guidance = np.stack(list(guidance_frames(source, clip(seed=4)[0], masks)))
    out = gen.generate(guidance, source[0], "the subject on a beach", seed=0)
    assert out.shape == (N, H, W, 3) and out.dtype == np.uint8
    from tiny_models import build_tiny_inpaint
    with pytest.raises(DiffusionError, match="Wan-VACE"):
        DiffusersGuidedGenerator(str(build_tiny_inpaint(tmp_path / "inp")))


def test_release_layout_reads_back_and_refuses_bad_folders(tmp_path):
    root = tmp_path / "release"
    rows = []
    for task in ("a1", "b2"):
        paths = train_paths("location", task)
        for rel in paths.values():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"x")
        rows.append({"prompt": f"prompt, with \"quotes\" {task}", "src_video": paths["src_video"],
                     "tgt_video": paths["tgt_video"], "task": task})
    (root / "prompts").mkdir()
    (root / "prompts" / "location_train.csv").write_text(csv_text(TRAIN_COLUMNS, rows))
    (root / "prompts" / "location_train_metadata.jsonl").write_text(jsonl_text(
        [{"id": "a1", "prompt": "p", "metadata": {"chosen_keyword": "coast: beach"}}]))
    got = read_release(root)
    assert [r.task for r in got] == ["a1", "b2"] and got[0].prompt == 'prompt, with "quotes" a1'
    from sparkle_assets.core.sources import discover, discover_csv
    items = discover([], [], False, releases=[str(root)])  # a release as a source: its source videos
    assert [(i.clip_id, i.prompt, i.path) for i in items] == [(r.task, r.prompt, str(r.src_video)) for r in got]
    assert [i.path for i in discover_csv(root / "prompts" / "location_train.csv")] == [str(r.src_video) for r in got]
    assert got[0].metadata["chosen_keyword"] == "coast: beach" and len(got[0].intermediates) == 6
    (root / "location" / "edited_video" / "b2.mp4").unlink()
    with pytest.raises(ReleaseFormatError, match="1 missing video"):
        read_release(root)
    rows[0]["src_video"] = "../../etc/passwd"
    (root / "prompts" / "location_train.csv").write_text(csv_text(TRAIN_COLUMNS, rows))
    with pytest.raises(ReleaseFormatError, match="leaves the release folder"):
        read_release(root, require_files=False)
    with pytest.raises(ReleaseFormatError, match="no prompts/"):
        read_release(tmp_path)
    bench = tmp_path / "bench"
    (bench / "source_videos" / "time").mkdir(parents=True)
    (bench / "source_videos" / "time" / "x.mp4").write_bytes(b"x")
    (bench / "time_bench.csv").write_text(csv_text(BENCH_COLUMNS, [
        {"edited_type": "time", "prompt": "night", "original_video": "source_videos/time/x.mp4"}]))
    assert [(r.task, r.prompt) for r in read_bench(bench)] == [("x", "night")]


def test_a_pairs_flows_are_computed_once_and_shared_with_the_same_result(monkeypatch):
    """pair_metrics and the automatic judge read one VideoFlow per video (each frame pair's DIS flow
    computed once), and give exactly what they give computing their own; a source clip's flow is
    reused for its next pair in the same process."""
    from sparkle_bench import flow as flow_module
    from sparkle_bench.automatic_judge import judge_videos
    from sparkle_bench.flow import VideoFlow, source_flow

    calls = []
    real = cv2.DISOpticalFlow_create

    class Counting:
        def __init__(self, engine):
            self.engine = engine

        def calc(self, *a):
            calls.append(1)
            return self.engine.calc(*a)

    monkeypatch.setattr(cv2, "DISOpticalFlow_create", lambda *a: Counting(real(*a)))
    monkeypatch.setattr(flow_module, "_SOURCES", type(flow_module._SOURCES)())
    source, masks = clip(moving_bg=False)
    edited = [np.where(m[..., None], s, b) for s, b, m in zip(source, clip(moving_bg=True)[0], masks)]
    alone = pair_metrics(source, edited, masks, 16, ["water"]), judge_videos(source, edited, masks, 16, "waves")
    unshared = len(calls)
    calls.clear()
    flows = (source_flow("clip-a", source), VideoFlow(edited))
    shared = (pair_metrics(source, edited, masks, 16, ["water"], flows=flows),
              judge_videos(source, edited, masks, 16, "waves", flows=flows))
    assert shared == alone
    # per pair: 2 x (N-1) forward flows shared by both, plus the edited video's backward flow (warp
    # error) and its flow at 320 px (background motion), which no other metric reads
    assert len(calls) == 4 * (N - 1) < unshared == 6 * (N - 1)
    calls.clear()
    again = pair_metrics(source, edited, masks, 16, ["water"], flows=(source_flow("clip-a", source), VideoFlow(edited)))
    assert again == alone[0] and len(calls) == 3 * (N - 1)  # the source's flow was kept
