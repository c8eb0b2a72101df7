"""Per-video metrics shared by the pipeline's filters and the benchmark (no Dagster import).

Each metric documents its range and direction.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from sparkle_model.camera_motion import WORK_WIDTH, work_gray


def background_motion(frames: Iterable[np.ndarray], fps: float, masks: np.ndarray | None = None,
                      width: int = WORK_WIDTH) -> dict:
    """How much the background moves: dense DIS optical flow between consecutive frames.

    `score`: mean flow magnitude outside the (dilated) foreground mask, in percent of the frame
    diagonal per second. Range [0, inf); higher is livelier; a frame repeated scores 0.
    `still_pairs`: fraction of consecutive frame pairs with no visible change (max pixel
    difference below 2 of 255); 1.0 means a still image.
    """
    engine = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    energies, still, prev, keep = [], [], None, None
    for t, frame in enumerate(frames):
        gray = work_gray(frame, width)
        if masks is not None:
            m = cv2.resize(masks[min(t, len(masks) - 1)].astype(np.uint8), gray.shape[::-1],
                           interpolation=cv2.INTER_NEAREST)
            keep = cv2.dilate(m, np.ones((7, 7), np.uint8)) == 0
        if prev is not None:
            flow = engine.calc(prev, gray, None)
            mag = np.linalg.norm(flow, axis=2)
            region = keep if keep is not None and keep.any() else np.ones_like(mag, bool)
            energies.append(float(mag[region].mean()))
            still.append(bool(np.abs(gray.astype(np.int16) - prev.astype(np.int16))[region].max() < 2))
        prev = gray
    if not energies:
        raise ValueError("background_motion needs at least two frames")
    diag = float(np.hypot(*prev.shape))
    return {"score": round(100.0 * float(np.mean(energies)) / diag * fps, 4),
            "still_pairs": round(float(np.mean(still)), 4), "pairs": len(energies)}
