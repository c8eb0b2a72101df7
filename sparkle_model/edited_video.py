"""The default final edit: the source foreground composited over the background video as one shot.

Per frame: the mask is smoothed over neighbouring frames and feathered (no crawling matte edge),
and the foreground's Lab colour statistics are moved part of the way toward the new background's,
so a night scene darkens and tints the subject (`first_frame_edit.harmonise`, the same transfer the
first-frame edit uses). The statistics are smoothed over time with an exponential moving average,
so the subject's grade follows slow light changes without flickering with every frame; they are
measured on a copy about `STATS_SIDE` pixels on its short side (means and spreads need no more).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import cv2
import numpy as np

from .first_frame_edit import colour_stats, composite, feather_radius, feathered, harmonise


STATS_SIDE = 180


def _small(img: np.ndarray, scale: float, nearest: bool = False) -> np.ndarray:
    if scale >= 1:
        return img
    size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def smoothed_mask(masks: np.ndarray, t: int) -> np.ndarray:
    """Mask t averaged with its neighbours (float 0-1): a pixel that flickers in and out of the
    mask for one frame gets a partial matte instead of popping."""
    n = len(masks)
    i = min(t, n - 1)
    window = masks[max(0, i - 1): min(n, i + 2)]
    k = len(window)
    # the float32 mean of k masks can only be c / k: each pixel's count looks up the value that
    # `mean(axis=0)` gives a column holding c ones (the same arithmetic, on k + 1 pixels)
    levels = (np.arange(k)[:, None] < np.arange(k + 1)[None, :]).astype(np.float32).mean(axis=0)
    return levels[window.sum(axis=0, dtype=np.uint8)]


def composite_video(source: Iterable[np.ndarray], background: Iterable[np.ndarray], masks: np.ndarray,
                    harmony: float = 0.35, memory: float = 0.85) -> Iterator[np.ndarray]:
    """The edited video, frame by frame (RGB uint8 in and out). `harmony` is how far the foreground's
    colour moves toward the background's (0 keeps it as filmed); `memory` is the weight of the past in
    the colour statistics' moving average (0 re-grades every frame independently)."""
    if not 0 <= memory < 1:
        raise ValueError(f"memory must be in [0, 1), got {memory}")
    stats = None
    for t, (src, bg) in enumerate(zip(source, background, strict=True)):
        soft = smoothed_mask(masks, t)
        if soft.shape != src.shape[:2] or src.shape != bg.shape:
            raise ValueError(f"frame {t}: source {src.shape}, background {bg.shape} and mask {soft.shape} differ")
        inside = soft >= 0.5
        scale = STATS_SIDE / min(inside.shape)
        small_inside = _small(inside.astype(np.uint8), scale, nearest=True) > 0
        fg_now, bg_now = colour_stats(_small(src, scale), small_inside), colour_stats(_small(bg, scale), ~small_inside)
        now = np.stack([*fg_now, *bg_now])
        stats = now if stats is None else memory * stats + (1 - memory) * now
        graded = harmonise(src, (stats[0], stats[1]), (stats[2], stats[3]), harmony)
        matte = np.clip(feathered(soft, feather_radius(soft.shape)), 0, 1)
        yield composite(graded, bg, matte)
