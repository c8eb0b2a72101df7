"""The default first-frame edit and foreground erase, and the compositing they share.

`background_layer` makes the new background for a scene: a procedural render (`procedural`
themes) or a transformation of the clip's clean background (`transform` themes). `edit_first_frame`
puts the source foreground, feathered and harmonised to the new light, over it. `erase_foreground`
gives the background plate: by construction, the layer itself wherever the foreground was, and the
edited frame everywhere else. The same `composite` and `harmonise` serve the final edited videos.
"""

from __future__ import annotations

import cv2
import numpy as np

from .scene_grade import grade_background
from .scene_render import SceneRender, render_scene
from .taxonomy import Scene


def background_layer(scene: Scene, render: str, clean: np.ndarray, seed: int) -> SceneRender:
    """The new background (no foreground) at the clean background's size."""
    h, w = clean.shape[:2]
    if render == "procedural":
        return render_scene(scene.layout, h, w, seed)
    return grade_background(clean, scene.grade, scene.effects, seed)


def save_layer(path, layer: SceneRender) -> None:
    """A background layer as npz: the image, each animation region and the light spots (exact)."""
    with open(path, "wb") as f:
        np.savez_compressed(f, image=layer.image, lights=np.asarray(layer.lights, np.int64).reshape(-1, 3),
                            horizon=np.int64(layer.horizon), **{f"region_{k}": v for k, v in layer.regions.items()})


def load_layer(path) -> SceneRender:
    with np.load(path) as z:
        regions = {k[len("region_"):]: z[k] for k in z.files if k.startswith("region_")}
        return SceneRender(z["image"], regions, [tuple(int(v) for v in row) for row in z["lights"]], int(z["horizon"]))


def feathered(mask: np.ndarray, radius: float) -> np.ndarray:
    """A soft matte (float32 0-1) from a boolean mask, `radius` pixels of feathering."""
    m = mask.astype(np.float32)
    if radius <= 0:
        return m
    return cv2.GaussianBlur(m, (0, 0), radius)


def colour_stats(img: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of Lab colour over `where` (uint8 RGB image)."""
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)
    px = lab[where] if where.any() else lab.reshape(-1, 3)
    return px.mean(axis=0), px.std(axis=0) + 1e-3


def harmonise(fg: np.ndarray, fg_stats, bg_stats, strength: float) -> np.ndarray:
    """Move the foreground's Lab statistics part of the way toward the background's: a night scene
    darkens and tints the subject, a warm one warms it. `strength` 0 leaves it as filmed."""
    if strength <= 0:
        return fg
    (fm, fs), (bm, bs) = fg_stats, bg_stats
    target_m = fm + strength * (bm - fm)
    target_s = fs * (1 + strength * (np.clip(bs / fs, 0.5, 1.5) - 1))
    # each channel's transfer applied to its 256 possible uint8 Lab values, then looked up per pixel:
    # the same float32 arithmetic as on the whole image, done 256 times instead of once per pixel
    levels = np.repeat(np.arange(256, dtype=np.float32)[:, None], 3, axis=1)
    lut = np.clip((levels - fm) * (target_s / fs) + target_m, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.LUT(cv2.cvtColor(fg, cv2.COLOR_RGB2LAB), lut[:, None, :]), cv2.COLOR_LAB2RGB)


def composite(frame: np.ndarray, background: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """frame x matte + background x (1 - matte), rounded (float32, computed in place)."""
    a = matte[..., None]
    out = frame.astype(np.float32)
    out *= a
    behind = background.astype(np.float32)
    behind *= 1 - a
    out += behind
    return np.rint(out, out=out).astype(np.uint8)


def feather_radius(shape: tuple[int, ...]) -> float:
    return max(1.0, min(shape[:2]) / 360)


def edit_first_frame(frame0: np.ndarray, mask0: np.ndarray, layer: SceneRender,
                     harmony: float = 0.35) -> np.ndarray:
    """Frame 0 with its background replaced by `layer`, the foreground kept and harmonised."""
    stats_fg = colour_stats(frame0, mask0)
    stats_bg = colour_stats(layer.image, ~mask0)
    fg = harmonise(frame0, stats_fg, stats_bg, harmony)
    return composite(fg, layer.image, feathered(mask0, feather_radius(mask0.shape)))


def grown(mask: np.ndarray, scale: float = 3.0) -> np.ndarray:
    """The mask dilated by `scale` feather radii: what an eraser or inpainter repaints around it."""
    r = int(round(scale * feather_radius(mask.shape)))
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0


def erase_foreground(edited: np.ndarray, mask0: np.ndarray, layer: SceneRender) -> np.ndarray:
    """The background plate: the layer where the (dilated) foreground was, the edited frame elsewhere."""
    return composite(layer.image, edited, feathered(grown(mask0), feather_radius(mask0.shape)))
