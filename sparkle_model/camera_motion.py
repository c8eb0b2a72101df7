"""Camera-motion score of a clip: the paper's coarse fixed-camera test (optical flow + RANSAC).

Frames are sampled at about 4 Hz and downscaled; between consecutive samples, dense DIS optical
flow gives point correspondences on a grid, and a RANSAC homography fit separates the global
(camera) motion from moving objects. The camera's speed is the mean displacement of the grid under
that homography, in percent of the frame diagonal per second. The clip's score is the 75th
percentile of the speeds (robust to one glitchy pair, sensitive to pans, zooms and shake).
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

SAMPLE_HZ = 4.0
WORK_WIDTH = 320
GRID_STEP = 8


def work_gray(frame: np.ndarray, width: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = width / w
    small = cv2.resize(frame, (width, max(8, int(round(h * scale)))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def pair_motion(prev: np.ndarray, cur: np.ndarray, flow_engine=None) -> tuple[float, float]:
    """(mean grid displacement under the fitted homography in pixels, RANSAC inlier ratio)."""
    flow_engine = flow_engine or cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = flow_engine.calc(prev, cur, None)
    h, w = prev.shape
    ys, xs = np.mgrid[GRID_STEP // 2:h:GRID_STEP, GRID_STEP // 2:w:GRID_STEP]
    src = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    dst = src + flow[ys.ravel(), xs.ravel()]
    hom, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 1.0)
    if hom is None:
        # no consistent global motion: fall back to the median flow magnitude
        return float(np.median(np.linalg.norm(dst - src, axis=1))), 0.0
    warped = cv2.perspectiveTransform(src[None], hom)[0]
    return float(np.linalg.norm(warped - src, axis=1).mean()), float(inliers.mean())


def camera_motion(frames: Iterable[np.ndarray], fps: float, sample_hz: float = SAMPLE_HZ) -> dict:
    """Score a clip; returns {'score', 'speeds', 'inlier_ratio', 'pairs'} (score in %diag/s)."""
    stride = max(1, int(round(fps / sample_hz)))
    dt = stride / fps
    engine = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    speeds, ratios, prev, diag = [], [], None, None
    for i, frame in enumerate(frames):
        if i % stride:
            continue
        gray = work_gray(frame, WORK_WIDTH)
        if prev is not None:
            disp, ratio = pair_motion(prev, gray, engine)
            speeds.append(100.0 * disp / diag / dt)
            ratios.append(ratio)
        prev, diag = gray, float(np.hypot(*gray.shape))
    if not speeds:
        raise ValueError("clip too short to measure camera motion (needs two sampled frames)")
    return {"score": float(np.percentile(speeds, 75)), "speeds": [round(s, 4) for s in speeds],
            "inlier_ratio": float(np.mean(ratios)), "pairs": len(speeds)}
