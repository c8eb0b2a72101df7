"""Transformed backgrounds for `transform` themes (season, time, style): the default backend.

The clip's own clean background (`clean_background`: a temporal median of the pixels the mask
leaves visible, the never-seen rest inpainted) is graded (brightness, contrast, saturation, tint,
foliage hue) and given the scene's effects (bloom, haze, sun glow, snow cover, night lights,
vignette, sepia, grain, scanlines, neon edges, painterly, sketch, cel shading). The result carries
the regions the animator needs, estimated from the image: open sky (bright, smooth, touching the
top edge), textured foliage-like areas, and light sources.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .scene_render import SceneRender, noise

HIDDEN = np.uint16(65535)  # above any uint8 value: sorts after every visible sample


def median_step(frames: int, max_samples: int = 24) -> int:
    """Every how many frames `clean_background` samples a video of `frames` frames."""
    return max(1, frames // max_samples)


def clean_background(frames: Sequence[np.ndarray], mask: np.ndarray, max_samples: int = 24) -> np.ndarray:
    """(H, W, 3) uint8: per pixel, the median over the frames where the (dilated) mask leaves it
    visible (the mean of the two middle values, rounded down, for an even count); pixels the
    foreground always covers are inpainted. A sort over uint16 with hidden samples pushed to the
    end: the same values as a NaN-aware median, at a fraction of its time and memory. Only every
    `median_step`-th frame is read (`frames` may hold only those, e.g. a `video.FramesAt`)."""
    step = median_step(len(frames), max_samples)
    f, m = np.stack(frames[::step]), mask[: len(frames)][::step]
    kernel = np.ones((9, 9), np.uint8)
    hidden = np.stack([cv2.dilate(x.astype(np.uint8), kernel) > 0 for x in m])
    data = np.moveaxis(f, 0, -1).astype(np.uint16)  # (H, W, 3, N): each pixel's samples contiguous
    data[np.moveaxis(hidden, 0, -1)[:, :, None, :].repeat(3, axis=2)] = HIDDEN
    data.sort(axis=-1)
    seen = (len(f) - np.moveaxis(hidden, 0, -1).sum(axis=-1)).astype(np.int64)[..., None, None]  # (H, W, 1, 1)
    lo = np.take_along_axis(data, np.maximum(seen - 1, 0) // 2, axis=-1)
    hi = np.take_along_axis(data, np.maximum(seen, 1) // 2 - (seen == 0), axis=-1)
    plate = ((lo.astype(np.uint32) + hi) // 2)[..., 0]
    never = seen[:, :, 0, 0] == 0
    plate[never] = 0
    plate = plate.astype(np.uint8)
    if never.any():
        plate = cv2.inpaint(plate, never.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    return plate


def _luma(img: np.ndarray) -> np.ndarray:
    return img @ np.array([0.299, 0.587, 0.114], np.float32)


def apply_grade(img: np.ndarray, grade: dict) -> np.ndarray:
    """Colour grade of a float32 RGB image (0-255)."""
    out = img.copy()
    if "foliage_hue" in grade:
        hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        green = (hsv[..., 0] > 25) & (hsv[..., 0] < 95) & (hsv[..., 1] > 40)
        hsv[..., 0] = np.where(green, (hsv[..., 0] + grade["foliage_hue"] / 2) % 180, hsv[..., 0])
        out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    lum = _luma(out)[..., None]
    out = lum + (out - lum) * grade.get("saturation", 1.0)
    out = np.clip((out - 128) * grade.get("contrast", 1.0) + 128, 0, 255)
    b = grade.get("brightness", 1.0)
    # brighten with a gamma curve (highlights do not clip), darken by scaling
    out = 255 * (out / 255) ** (1 / b) if b > 1 else out * b
    if "tint" in grade:
        s = grade.get("tint_strength", 0.2)
        tint = np.asarray(grade["tint"], np.float32)
        tint = tint / max(1.0, float(tint @ np.array([0.299, 0.587, 0.114], np.float32)))
        out = out * (1 - s) + (_luma(out)[..., None] * tint) * s
    return np.clip(out, 0, 255)


def bright_spots(img: np.ndarray, max_spots: int = 24) -> list[tuple[int, int, int]]:
    """Light sources: local maxima among the brightest pixels, as (x, y, radius)."""
    lum = cv2.GaussianBlur(_luma(img), (0, 0), 3)
    thr = max(np.percentile(lum, 99.3), 150)
    peaks = (lum >= cv2.dilate(lum, np.ones((15, 15), np.uint8))) & (lum >= thr)
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-lum[ys, xs])[:max_spots]
    r = max(3, img.shape[0] // 90)
    return [(int(xs[i]), int(ys[i]), r) for i in order]


def estimate_regions(img: np.ndarray) -> dict[str, np.ndarray]:
    """Sky (bright, smooth, connected to the top edge) and foliage-like texture, from an image."""
    h, w = img.shape[:2]
    gray = _luma(img)
    grad = cv2.GaussianBlur(np.abs(cv2.Laplacian(gray, cv2.CV_32F)), (0, 0), 4)
    smooth_bright = ((grad < 4) & (gray > 110)).astype(np.uint8)
    n, labels = cv2.connectedComponents(smooth_bright)
    top = set(np.unique(labels[0])) - {0}
    sky = np.isin(labels, list(top)) & (np.arange(h)[:, None] < 0.6 * h)
    if sky.mean() < 0.03:
        sky[:] = False
    hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
    leafy = (grad > 6) & (hsv[..., 1] > 50) & ~sky
    foliage = cv2.GaussianBlur(leafy.astype(np.float32), (0, 0), 6)
    return {"sky": sky.astype(np.float32), "water": np.zeros((h, w), np.float32),
            "foliage": np.clip(foliage * 1.5, 0, 1), "road": np.zeros((h, w), np.float32),
            "buildings": np.zeros((h, w), np.float32)}


def _vignette(h: int, w: int, strength: float) -> np.ndarray:
    yy, xx = np.ogrid[:h, :w]
    d = np.sqrt(((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2)
    return (1 - strength * np.clip(d - 0.4, 0, 1) ** 1.5).astype(np.float32)[..., None]


def apply_effect(img: np.ndarray, name: str, rng: np.random.Generator, tint) -> tuple[np.ndarray, list]:
    """One named effect; returns the image and any light sources it added."""
    h, w = img.shape[:2]
    u8 = np.clip(img, 0, 255).astype(np.uint8)
    added: list = []
    if name == "bloom":
        glow = np.clip(0.8 * cv2.GaussianBlur(np.clip(img - 170, 0, None), (0, 0), max(4, w / 80)), 0, 255)
        img = 255 - (255 - img) * (255 - glow) / 255  # screen blend: glows without clipping
    elif name == "haze":
        colour = np.asarray(tint if tint is not None else (220, 220, 225), np.float32) * 0.5 + 110
        fog = 0.35 * (0.6 + 0.4 * noise((h, w), w / 3, rng))[..., None]
        img = img * (1 - fog) + colour * fog
    elif name == "sun_glow":
        cx, cy = w * rng.choice([0.15, 0.85]), h * 0.1
        yy, xx = np.ogrid[:h, :w]
        glow = np.exp(-np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / (0.35 * w)).astype(np.float32)[..., None]
        img = 255 - (255 - img) * (1 - glow * np.array([0.45, 0.33, 0.15], np.float32))
    elif name == "snow_cover":
        gy = cv2.Sobel(_luma(img), cv2.CV_32F, 0, 1, ksize=5)
        ledges = cv2.GaussianBlur((gy < -30).astype(np.float32), (0, 0), 2)
        dust = np.clip((noise((h, w), w / 25, rng) - 0.5) * 3, 0, 1)
        snow = np.clip(0.5 * ledges + 0.3 * dust, 0, 0.6)[..., None]
        img = img * (1 - snow) + 245 * snow
    elif name == "night_lights":
        spots = bright_spots(img, 12)
        for _ in range(10):
            spots.append((int(rng.uniform(0.05, 0.95) * w), int(rng.uniform(0.1, 0.7) * h), max(3, h // 100)))
        layer = np.zeros((h, w), np.float32)
        for x, y, r in spots:
            cv2.circle(layer, (x, y), r, 1.0, -1)
        glow = cv2.GaussianBlur(layer, (0, 0), max(3, h / 60))
        img = img + (layer[..., None] * 0.8 + glow[..., None] * 2.5) * np.array([255, 200, 120], np.float32)
        added = spots
    elif name == "vignette":
        img = img * _vignette(h, w, 0.6)
    elif name == "sepia":
        m = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)
        img = 0.4 * img + 0.6 * (img @ m.T)
    elif name == "grain":
        img = img + rng.normal(0, 7, (h, w, 1)).astype(np.float32)
    elif name == "scanlines":
        img = img * (1 - 0.18 * (np.arange(h) % 3 == 0)[:, None, None])
    elif name == "neon_edges":
        edges = cv2.Canny(u8, 60, 140).astype(np.float32) / 255
        glow = cv2.GaussianBlur(edges, (0, 0), 3)[..., None]
        img = img * 0.7 + glow * np.array([255, 60, 230], np.float32) * 1.5 + edges[..., None] * np.array([80, 255, 255], np.float32)
    elif name == "painterly":
        img = cv2.stylization(u8, sigma_s=60, sigma_r=0.45).astype(np.float32)
    elif name == "sketch":
        gray, _ = cv2.pencilSketch(u8, sigma_s=50, sigma_r=0.08, shade_factor=0.04)
        img = np.repeat(gray[..., None], 3, axis=2).astype(np.float32) * np.array([1.0, 0.98, 0.93], np.float32)
    elif name == "cel":
        smooth = cv2.bilateralFilter(u8, 9, 60, 60).astype(np.float32)
        poster = np.round(smooth / 48) * 48
        edges = cv2.dilate(cv2.Canny(u8, 80, 160), np.ones((2, 2), np.uint8)).astype(np.float32)[..., None] / 255
        img = poster * (1 - 0.8 * edges)
    else:
        raise ValueError(f"unknown effect {name!r}")
    return np.clip(img, 0, 255), added


def grade_background(clean: np.ndarray, grade: dict, effects: tuple[str, ...], seed: int) -> SceneRender:
    """The scene's transformation of a clean background (uint8 RGB), with animation regions."""
    rng = np.random.default_rng(seed)
    regions = estimate_regions(clean.astype(np.float32))
    img = apply_grade(clean.astype(np.float32), grade)
    lights = []
    for name in effects:
        img, added = apply_effect(img, name, rng, grade.get("tint"))
        lights += added
    out = np.clip(img, 0, 255).astype(np.uint8)
    if not lights:
        lights = bright_spots(out.astype(np.float32))
    return SceneRender(out, regions, lights, horizon=int(0.5 * clean.shape[0]))
