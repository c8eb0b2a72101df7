"""The run configs of the stages whose per-clip functions live in `core.ingest` and `core.steps`.

They are Dagster `Config` classes, so they live apart from those functions: a pool worker imports
the functions and never Dagster. The benchmark (`sparkle_assets.evaluation`) reads their defaults, so
a bench sample is processed with the stages' own settings.
"""

from __future__ import annotations

from .config import Range, StageConfig


class SourceClipsConfig(StageConfig):
    """Normalisation of source videos (defaults follow the paper: 16 fps, up to 81 = 4k+1 frames)."""

    RANGES = {"fps": Range(1, 60), "max_side": Range(64, 4096), "max_frames": Range(5, 1025),
              "min_frames": Range(5, 1025), "max_clips_per_video": Range(1, 1000)}
    fps: float = 16.0
    max_side: int = 1280
    max_frames: int = 81
    min_frames: int = 17
    max_clips_per_video: int = 4

    def problems(self) -> list[str]:
        found = [f"{name} must be of the form 4k+1, got {getattr(self, name)}"
                 for name in ("max_frames", "min_frames") if getattr(self, name) % 4 != 1]
        if self.min_frames > self.max_frames:
            found.append(f"min_frames ({self.min_frames}) must not exceed max_frames ({self.max_frames})")
        return found


class ForegroundMasksConfig(StageConfig):
    """BAIT settings: `n_passes` tracking passes anchored on different sampled frames, a pixel is
    foreground when more than `vote_threshold` of the passes covering its frame say so; grounding
    on frames sampled at `sample_hz`."""

    RANGES = {"n_passes": Range(1, 16), "vote_threshold": Range(0, 1, hi_open=True), "sample_hz": Range(0.1, 16)}
    n_passes: int = 3
    vote_threshold: float = 0.5
    sample_hz: float = 2.0


class EditedFirstFramesConfig(StageConfig):
    """`min_edit_score`: overall score (0-10) below which an edit is dropped (paper: 8).
    `harmony`: how far the default backend moves the subject's colour toward the new background."""

    RANGES = {"min_edit_score": Range(0, 10), "harmony": Range(0, 1)}
    min_edit_score: float = 8.0
    harmony: float = 0.35


class BackgroundPlatesConfig(StageConfig):
    """`min_plate_score`: overall score (0-10) below which a plate is dropped (paper: 8.5)."""

    RANGES = {"min_plate_score": Range(0, 10)}
    min_plate_score: float = 8.5


class BackgroundVideosConfig(StageConfig):
    """`min_background_motion`: background-motion score (% of the diagonal per second) below which
    a video counts as static and is dropped."""

    RANGES = {"min_background_motion": Range(0, 100)}
    min_background_motion: float = 0.05


class GuidanceVideosConfig(StageConfig):
    """Canny hysteresis thresholds (`canny_low` < `canny_high`, 0-255 gradient units) and the
    boundary `softness` (a multiple of the frame's feather radius)."""

    RANGES = {"canny_low": Range(0, 255), "canny_high": Range(0, 1020), "softness": Range(0, 20)}
    canny_low: int = 100
    canny_high: int = 200
    softness: float = 2.0

    def problems(self) -> list[str]:
        if self.canny_low >= self.canny_high:
            return [f"canny_low ({self.canny_low}) must be below canny_high ({self.canny_high})"]
        return []


class EditedVideosConfig(StageConfig):
    """`harmony`: how far the subject's colour moves toward the new background (0-1, composite
    backend); `memory`: weight of the past in the grade's moving average (0-1, higher is steadier)."""

    RANGES = {"harmony": Range(0, 1), "memory": Range(0, 1, hi_open=True)}
    harmony: float = 0.35
    memory: float = 0.85
