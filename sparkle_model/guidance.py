"""Decoupled Canny guidance (paper stage 5): what the final generation is told about structure.

Foreground edges come from the source video (the subject must move exactly as filmed), background
edges from the generated background video (the new scene and its motion), fused along a softened
mask boundary so no hard seam of missing or doubled edges marks the matte. Frames are RGB uint8;
the guidance is white edges on black, three channels, like the release's `edited_video_canny`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import cv2
import numpy as np

from .first_frame_edit import feather_radius, feathered


def canny(frame: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """Canny edges (uint8 0/255) of an RGB frame, after a light blur against sensor noise."""
    gray = cv2.GaussianBlur(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (3, 3), 0)
    return cv2.Canny(gray, low, high)


def fuse_canny(source_edges: np.ndarray, background_edges: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """Source edges where the matte is 1, background edges where it is 0, blended in between."""
    fused = matte * source_edges.astype(np.float32) + (1 - matte) * background_edges.astype(np.float32)
    return fused.round().astype(np.uint8)


def guidance_frames(source: Iterable[np.ndarray], background: Iterable[np.ndarray], masks: np.ndarray,
                    low: int = 100, high: int = 200, softness: float = 2.0) -> Iterator[np.ndarray]:
    """The fused guidance video, frame by frame. `masks` is (T, H, W) bool at the frames' size (the
    last mask repeats if the video is longer); `softness` scales the boundary feather."""
    radius = None
    for t, (src, bg) in enumerate(zip(source, background, strict=True)):
        if src.shape != bg.shape:
            raise ValueError(f"frame {t}: source {src.shape} and background {bg.shape} differ in size")
        mask = masks[min(t, len(masks) - 1)]
        if mask.shape != src.shape[:2]:
            raise ValueError(f"frame {t}: mask {mask.shape} does not match the frames {src.shape[:2]}")
        radius = radius or softness * feather_radius(mask.shape)
        edges = fuse_canny(canny(src, low, high), canny(bg, low, high), feathered(mask, radius))
        yield np.repeat(edges[..., None], 3, axis=2)
