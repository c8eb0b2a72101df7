"""BAIT foreground tracking (the paper's "Bbox-Anchor-In-Temporal"), generic over its parts.

1. grounding: foreground boxes on frames sampled at about 2 fps (a `Grounder`);
2. multi-pass tracking: N passes, each anchored on the boxes of a different sampled frame; the first
   anchor tracks forward, middle anchors both ways, the last backward (a `Tracker`);
3. a pixel-wise vote over the passes that cover each frame: a pixel is foreground when more than
   `vote_threshold` of them say so (0.5 = strict majority).

Backends implement `ground` and `track` (and optionally `prepare`, called once per clip before
either, e.g. to compute shared features); see sparkle_model.foreground and sparkle_model.sam2_tracker.
Both trackers also take their boxes from another `Grounder` (sparkle_model.grounding: a VLM's or an
open-vocabulary detector's stored boxes) instead of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Box:
    """A foreground box in pixels of the clip (x0, y0, x1, y1), with a label where known."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str = "foreground"
    score: float = 1.0

    def as_list(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]


class Grounder(Protocol):
    def ground(self, frames: np.ndarray, indices: Sequence[int]) -> dict[int, list[Box]]:
        """Foreground boxes for each requested frame index."""


class MaskBackend(Grounder, Protocol):
    def track(self, frames: np.ndarray, anchor: int, boxes: list[Box], direction: str) -> np.ndarray:
        """(T, H, W) bool masks of the entities in `boxes` at `anchor`, tracked `forward`,
        `backward` or `both` ways; frames outside the tracked range are ignored by the vote."""


@dataclass
class BaitResult:
    mask: np.ndarray  # (T, H, W) bool
    boxes: dict[int, list[Box]]
    anchors: list[int]
    directions: list[str]
    agreement: float  # mean share of passes agreeing with the vote, over covered pixels
    info: dict = field(default_factory=dict)


def sample_indices(n_frames: int, fps: float, hz: float = 2.0) -> list[int]:
    """Frame indices at about `hz` per second, always including the last frame."""
    step = max(1, int(round(fps / hz)))
    idx = list(range(0, n_frames, step))
    if idx[-1] != n_frames - 1:
        idx.append(n_frames - 1)
    return idx


def choose_anchors(candidates: Sequence[int], n: int) -> list[int]:
    """n anchors spread evenly over the candidate frames (first and last included)."""
    if not candidates:
        return []
    if n <= 1 or len(candidates) == 1:
        return [candidates[len(candidates) // 2]] if n == 1 else [candidates[0]]
    picks = np.linspace(0, len(candidates) - 1, min(n, len(candidates))).round().astype(int)
    return [candidates[i] for i in dict.fromkeys(picks.tolist())]


def directions_for(n: int) -> list[str]:
    if n == 1:
        return ["both"]
    return ["forward"] + ["both"] * (n - 2) + ["backward"]


def coverage(n_frames: int, anchor: int, direction: str) -> slice:
    return {"forward": slice(anchor, n_frames), "backward": slice(0, anchor + 1)}.get(direction, slice(0, n_frames))


def bait_track(frames: np.ndarray, fps: float, backend: MaskBackend, n_passes: int = 3,
               vote_threshold: float = 0.5, sample_hz: float = 2.0) -> BaitResult:
    """Run BAIT on a clip (T, H, W, 3) and return the voted mask."""
    if n_passes < 1:
        raise ValueError(f"n_passes must be >= 1, got {n_passes}")
    if not 0.0 <= vote_threshold < 1.0:
        raise ValueError(f"vote_threshold must be in [0, 1), got {vote_threshold}")
    t, h, w = frames.shape[:3]
    prepare = getattr(backend, "prepare", None)
    if prepare is not None:
        prepare(frames)
    sampled = sample_indices(t, fps, sample_hz)
    boxes = backend.ground(frames, sampled)
    grounded = [i for i in sampled if boxes.get(i)]
    anchors = choose_anchors(grounded, n_passes)
    directions = directions_for(len(anchors))
    if not anchors:  # nothing to track: an empty mask, flagged downstream
        return BaitResult(np.zeros((t, h, w), bool), boxes, [], [], 1.0, {"grounded_frames": 0})
    votes = np.zeros((t, h, w), np.uint8)
    covered = np.zeros(t, np.uint8)
    for anchor, direction in zip(anchors, directions):
        masks = backend.track(frames, anchor, boxes[anchor], direction)
        span = coverage(t, anchor, direction)
        votes[span] += masks[span].astype(np.uint8)
        covered[span] += 1
    mask = votes > (vote_threshold * covered)[:, None, None]
    share = votes[:, ::4, ::4] / np.maximum(covered, 1)[:, None, None].astype(np.float32)
    agreement = float(np.mean(np.where(mask[:, ::4, ::4], share, 1.0 - share)))
    return BaitResult(mask, boxes, anchors, directions, agreement, {"grounded_frames": len(grounded)})
