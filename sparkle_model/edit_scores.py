"""Automatic, EditScore-shaped scores (0-10) for first-frame edits and background plates.

Each score has the rubric's three parts and VIEScore's overall (sqrt(min(semantic) * quality)):

- edit: `prompt_following` = how much the background changed outside the mask (mean Lab distance),
  `consistency` = how well the foreground's structure is kept inside the mask (the structure term of
  SSIM on luminance, so harmonised colour does not count as damage), `perceptual_quality` = 10 minus
  penalties for clipping beyond the input's and for a flat, empty background;
- plate: `prompt_following` = the foreground is gone (inside the mask the plate differs in colour
  from the edited frame, which shows the foreground there), `consistency` = everything outside the mask is unchanged from the edited frame
  (PSNR), `perceptual_quality` as above.

They check what can be checked without a model; they do not judge whether the new background
matches the instruction's words (a VLM scorer does that when one is configured).
"""

from __future__ import annotations

import cv2
import numpy as np

from .vlm import overall_score


def _lin(x: float, lo: float, hi: float) -> float:
    """0 at lo, 10 at hi, clipped."""
    return float(np.clip((x - lo) / (hi - lo), 0, 1) * 10)


def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)


def local_stats(a: np.ndarray, b: np.ndarray, sigma: float = 1.5):
    """SSIM's Gaussian-window statistics of two RGB images' luminance: means, variances, covariance."""
    x, y = _gray(a), _gray(b)
    mx, my = cv2.GaussianBlur(x, (0, 0), sigma), cv2.GaussianBlur(y, (0, 0), sigma)
    vx = cv2.GaussianBlur(x * x, (0, 0), sigma) - mx * mx
    vy = cv2.GaussianBlur(y * y, (0, 0), sigma) - my * my
    cxy = cv2.GaussianBlur(x * y, (0, 0), sigma) - mx * my
    return mx, my, vx, vy, cxy


def structure_similarity(a: np.ndarray, b: np.ndarray, where: np.ndarray, sigma: float = 1.5) -> float:
    """Mean of SSIM's structure term (local correlation of luminance) over `where`."""
    if not where.any():
        return 0.0
    _, _, vx, vy, cxy = local_stats(a, b, sigma)
    c3 = (0.03 * 255) ** 2 / 2
    s = (cxy + c3) / (np.sqrt(np.maximum(vx, 0) * np.maximum(vy, 0)) + c3)
    return float(s[where].mean())


def _ring(mask: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    m = mask.astype(np.uint8)
    inner = cv2.erode(m, k) > 0
    outer = cv2.dilate(m, k) > 0
    return inner, outer


def clipped_fraction(img: np.ndarray) -> float:
    return float(((img.max(axis=2) >= 254) | (img.min(axis=2) <= 1)).mean())


def quality(img: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> tuple[float, dict]:
    """10 minus penalties for clipping beyond the reference's and for a flat (empty) background."""
    clipped = clipped_fraction(img) - clipped_fraction(reference)
    bg = ~mask
    bg_std = float(_gray(img)[bg].std()) if bg.any() else 0.0
    penalty = min(6.0, 30 * max(0.0, clipped - 0.03)) + (4.0 if bg_std < 4 else 0.0)
    return max(0.0, 10 - penalty), {"clipped_excess": round(clipped, 4), "background_std": round(bg_std, 2)}


def score_edit(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> dict:
    """Score an edited first frame against its source (RGB uint8) and foreground mask."""
    inner, outer = _ring(mask, max(2, min(mask.shape) // 180))
    lab_s = cv2.cvtColor(source, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab_e = cv2.cvtColor(edited, cv2.COLOR_RGB2LAB).astype(np.float32)
    bg = ~outer
    change = float(np.linalg.norm(lab_s - lab_e, axis=2)[bg].mean()) if bg.any() else 0.0
    keep = structure_similarity(source, edited, inner)
    pq, checks = quality(edited, source, mask)
    pf, cons = _lin(change, 2.0, 15.0), _lin(keep, 0.5, 0.95)
    return {"prompt_following": round(pf, 3), "consistency": round(cons, 3), "perceptual_quality": round(pq, 3),
            "overall": overall_score(pf, cons, pq), "scorer": "automatic",
            "checks": {"background_change": round(change, 2), "foreground_structure": round(keep, 4), **checks}}


def score_plate(edited: np.ndarray, plate: np.ndarray, mask: np.ndarray) -> dict:
    """Score a background plate: foreground gone, the rest as in the edited frame, no artifacts."""
    r = max(3, min(mask.shape) // 60)
    inner, outer = _ring(mask, r)
    region = inner if inner.any() else mask
    lab_e = cv2.cvtColor(edited, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab_p = cv2.cvtColor(plate, cv2.COLOR_RGB2LAB).astype(np.float32)
    left = float(np.linalg.norm(lab_e - lab_p, axis=2)[region].mean())
    rest = ~outer
    mse = float(((plate.astype(np.float32) - edited.astype(np.float32)) ** 2)[rest].mean()) if rest.any() else 0.0
    psnr = 10 * np.log10(255 ** 2 / max(mse, 1e-6))
    pq, checks = quality(plate, edited, np.zeros_like(mask))
    pf, cons = _lin(left, 3.0, 20.0), _lin(psnr, 20.0, 40.0)
    return {"prompt_following": round(pf, 3), "consistency": round(cons, 3), "perceptual_quality": round(pq, 3),
            "overall": overall_score(pf, cons, pq), "scorer": "automatic",
            "checks": {"foreground_difference": round(left, 2), "outside_psnr": round(float(psnr), 2), **checks}}
