"""Shared fixtures: tiny synthetic clips (64-128 px, a few frames), an isolated project home, and
the shared real footage (tests that need it skip cleanly when ../shared is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sparkle_model.video import write_video

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SPARKLE_SHARED_DATA", REPO.parent / "shared" / "data"))  # the shared real footage


def make_clip(path: Path, frames: int = 24, size=(96, 64), fps: float = 16.0, pan: float = 0.0,
              seed: int = 0) -> Path:
    """A textured static background (panned by `pan` px/frame) with a moving square foreground."""
    w, h = size
    rng = np.random.default_rng(seed)
    big = rng.integers(0, 255, (h // 4 + 8, (w + int(abs(pan) * frames)) // 4 + 8, 3), dtype=np.uint8)
    import cv2

    texture = cv2.resize(big, (big.shape[1] * 4, big.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
    texture = cv2.GaussianBlur(texture, (5, 5), 0)
    out = []
    for t in range(frames):
        x0 = int(round(t * abs(pan)))
        frame = texture[:h, x0:x0 + w].copy()
        cx = 10 + (t * 2) % (w - 30)
        frame[h // 3:h // 3 + 20, cx:cx + 16] = (230, 40, 40)
        out.append(frame)
    return write_video(path, out, fps=fps)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An isolated project home, with the environment the definitions read pointed at it."""
    h = tmp_path / "home"
    monkeypatch.setenv("SPARKLE_HOME", str(h))
    monkeypatch.setenv("DAGSTER_HOME", str(h / "dagster"))
    monkeypatch.setenv("SPARKLE_BUNDLED", "0")
    monkeypatch.setenv("SPARKLE_EXECUTOR", "in_process")
    return h


@pytest.fixture
def video_folder(tmp_path) -> Path:
    """Two fixed-camera clips, one panning clip, and three bad files."""
    folder = tmp_path / "videos"
    folder.mkdir()
    make_clip(folder / "static_a.mp4", seed=1)
    make_clip(folder / "static_b.mp4", frames=40, seed=2, fps=25.0)
    make_clip(folder / "panning.mp4", pan=3.0, seed=3)
    good = (folder / "static_a.mp4").read_bytes()
    (folder / "corrupt.mp4").write_bytes(good[: len(good) // 2])
    (folder / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "readme.txt").write_text("not a video candidate")
    return folder


@pytest.fixture
def demo_dir() -> Path:
    d = SHARED / "sparkle_demo"
    if not (d / "pairs.csv").is_file():
        pytest.skip("../shared/data/sparkle_demo is absent")
    return d


@pytest.fixture(scope="session")
def _dagster_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dagster_home")


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch, _dagster_home):
    """Tests never touch a real Dagster instance (not the user's, nor ./.sparkle/dagster, where the
    repository's dagster.yaml keeps plain `dagster dev`'s history)."""
    monkeypatch.setenv("DAGSTER_HOME", str(_dagster_home))


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL server on 127.0.0.1 for the session (tests/pg_server.py); each test
    makes its own database with `pg_server.create_database(name)`."""
    import pg_server as pg

    reason = pg.unavailable()
    if reason:
        pytest.skip(reason)
    with pg.throwaway_server() as server:
        yield server
