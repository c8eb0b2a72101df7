"""Foreground mask videos: the paper's bit-packed `.npz` layout, previews and quality measures.

A mask video is a boolean array (T, H, W). On disk it is an `.npz` holding `mask` (the
`np.packbits` of the flattened array, uint8) and `shape` (int64 [T, H, W]), as in the Sparkle
release's `source_video_mask/*.npz`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np


def save_mask_npz(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write a (T, H, W) boolean mask bit-packed (written in one go to the given path)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"mask must be (T, H, W), got shape {mask.shape}")
    buf = io.BytesIO()
    np.savez_compressed(buf, mask=np.packbits(mask.ravel()), shape=np.array(mask.shape, dtype=np.int64))
    Path(path).write_bytes(buf.getvalue())


def load_mask_npz(path: str | os.PathLike) -> np.ndarray:
    with np.load(path) as data:
        shape = tuple(int(s) for s in data["shape"])
        bits = np.unpackbits(data["mask"], count=int(np.prod(shape)))
    return bits.reshape(shape).astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def temporal_iou(mask: np.ndarray) -> np.ndarray:
    """IoU of each frame's mask with the next one's (length T-1)."""
    return np.array([iou(mask[t], mask[t + 1]) for t in range(len(mask) - 1)])


def overlay(frame: np.ndarray, mask: np.ndarray, color=(255, 48, 48), alpha: float = 0.45) -> np.ndarray:
    """The mask tinted over an RGB frame (uint8), for previews: each channel's tint of its 256
    values computed once in float32, then looked up where the mask is."""
    tint = (np.arange(256, dtype=np.float32)[:, None] * (1 - alpha) + np.asarray(color, np.float32) * alpha)
    tinted = cv2.LUT(frame, tint.astype(np.uint8)[:, None, :])
    return np.where(mask[..., None], tinted, frame)
