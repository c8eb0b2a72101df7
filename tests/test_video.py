import numpy as np
import pytest

from sparkle_model.video import (VideoError, clip_lengths, probe, read_video, resample_indices, target_size,
                                 write_video)

from conftest import make_clip


def test_h264_roundtrip(tmp_path):
    path = make_clip(tmp_path / "a.mp4", frames=9, size=(64, 48))
    info = probe(path)
    assert (info.width, info.height, info.frames, info.fps) == (64, 48, 9, 16.0)
    frames = read_video(path)
    assert frames.shape == (9, 48, 64, 3) and frames.dtype == np.uint8
    assert path.read_bytes()[4:8] == b"ftyp"
    import subprocess, imageio_ffmpeg
    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(path)], capture_output=True, text=True).stderr
    assert "h264" in out


def test_write_is_atomic_on_error(tmp_path):
    def frames():
        yield np.zeros((32, 32, 3), np.uint8)
        raise RuntimeError("producer died")
    with pytest.raises(RuntimeError):
        write_video(tmp_path / "x.mp4", frames(), fps=16)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content,reason", [(b"", "empty file"), (b"hello\n" * 50, "not a readable video")])
def test_probe_refuses_non_videos(tmp_path, content, reason):
    p = tmp_path / "bad.mp4"
    p.write_bytes(content)
    with pytest.raises(VideoError, match=reason):
        probe(p)


def test_probe_refuses_absurd_resolution(tmp_path):
    write_video(tmp_path / "tiny.mp4", [np.zeros((16, 16, 3), np.uint8)] * 3, fps=16)
    with pytest.raises(VideoError, match="absurd resolution 16x16"):
        probe(tmp_path / "tiny.mp4")
    write_video(tmp_path / "strip.mp4", [np.zeros((32, 512, 3), np.uint8)] * 3, fps=16)
    with pytest.raises(VideoError, match="aspect"):
        probe(tmp_path / "strip.mp4")


def test_clip_lengths_are_4k_plus_1():
    assert clip_lengths(81) == [(0, 81)]
    assert clip_lengths(80) == [(0, 77)]
    assert clip_lengths(200) == [(0, 81), (81, 81), (162, 37)]
    assert clip_lengths(200, max_clips=2) == [(0, 81), (81, 81)]
    assert clip_lengths(10) == []
    assert all((n - 1) % 4 == 0 for _, n in clip_lengths(1000, max_frames=49, min_frames=5))
    with pytest.raises(ValueError):
        clip_lengths(100, max_frames=80)


def test_resample_and_size():
    assert resample_indices(30, 30.0, 15.0).tolist() == list(range(0, 30, 2))
    assert len(resample_indices(81, 16.0, 16.0)) == 81
    assert target_size(1920, 1080, 1280) == (1280, 720)
    assert target_size(176, 144, 1280) == (176, 144)
    w, h = target_size(770, 433, 512)
    assert w % 16 == 0 and h % 16 == 0 and w == 512


def test_sampled_frames_for_a_model_from_a_path_or_bytes(tmp_path):
    from sparkle_model.video import sample_frames
    from sparkle_model.vlm import VlmError, video_frames_for_model

    path = make_clip(tmp_path / "a.mp4", frames=17, size=(64, 48))
    every = read_video(path)
    picked = sample_frames(path, 4)
    assert len(picked) == 4 and np.array_equal(picked[0], every[0]) and np.array_equal(picked[-1], every[16])
    assert np.array_equal(picked[1], every[5])  # round(16 / 3)
    from_bytes = video_frames_for_model(path.read_bytes(), 4)
    assert all(np.array_equal(a, b) for a, b in zip(picked, from_bytes))
    with pytest.raises(VlmError, match="cannot read a video"):
        video_frames_for_model(b"not a video at all" * 10)


def test_picked_frames_are_the_only_ones_converted(tmp_path, monkeypatch):
    from sparkle_model import video

    path = make_clip(tmp_path / "a.mp4", frames=9, size=(64, 48))
    every = read_video(path)
    converted = []
    real = video.cv2.cvtColor
    monkeypatch.setattr(video.cv2, "cvtColor", lambda *a: converted.append(1) or real(*a))
    picked = video.read_frames(path, [6, 2, 40])
    assert list(picked) == [2, 6] and all(np.array_equal(picked[i], every[i]) for i in picked)
    assert len(converted) == 2
    at = video.frames_at(path, [0, 8])
    assert len(at) == 9 and np.array_equal(at[8], every[8]) and len(converted) == 4
    assert np.array_equal(video.first_frame(path), every[0]) and len(converted) == 5
