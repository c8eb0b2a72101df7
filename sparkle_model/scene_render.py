"""Procedural scenes for `procedural` themes (location): the default backend's new backgrounds.

`render_scene(layout, height, width, seed)` paints a sky (preset gradient, sun or moon, stars,
clouds), a terrain silhouette on the horizon (hills, mountains with snow caps, dunes, cliffs, a
tree line or a city skyline with lit windows), a textured ground (grass, meadow, field, vineyard
rows, water reflecting the sky, sand, desert, rock, snow, street) and features (trees, palms,
flowers, a road, lights). It returns the image and the regions the animator needs: where sky,
water, foliage and road are, and where the lights are. Deterministic in `seed`; everything is
drawn with numpy/OpenCV, so any size renders in a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

SKY_PRESETS = {  # zenith, horizon colours (RGB)
    "day": ((70, 130, 210), (190, 215, 240)),
    "dawn": ((70, 90, 160), (250, 180, 160)),
    "golden": ((90, 130, 190), (255, 200, 120)),
    "dusk": ((40, 40, 100), (250, 120, 60)),
    "night": ((5, 10, 30), (30, 45, 80)),
    "overcast": ((150, 155, 165), (200, 202, 205)),
}
GROUND_COLOURS = {
    "grass": (70, 130, 50), "meadow": (95, 150, 60), "field": (200, 170, 80), "vineyard": (90, 120, 50),
    "water": (40, 90, 130), "sand": (225, 205, 160), "desert": (215, 150, 80), "rock": (150, 80, 55),
    "snow": (235, 240, 248), "street": (95, 95, 100),
}
FOLIAGE_GROUNDS = {"grass", "meadow", "field", "vineyard"}


@dataclass
class SceneRender:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    regions: dict[str, np.ndarray]  # name -> (H, W) float32 in [0, 1]
    lights: list[tuple[int, int, int]] = field(default_factory=list)  # (x, y, radius)
    horizon: int = 0  # row of the horizon


def noise(shape: tuple[int, int], scale: float, rng: np.random.Generator, octaves: int = 4) -> np.ndarray:
    """Fractal value noise in [0, 1]: `scale` is the largest feature size in pixels."""
    h, w = shape
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gh, gw = max(2, int(h / scale) + 2), max(2, int(w / scale) + 2)
        grid = rng.random((gh, gw)).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
        scale = max(2.0, scale / 2)
    out /= total
    return np.clip((out - out.min()) / max(1e-6, out.max() - out.min()), 0, 1)


def ridge(width: int, base: float, amp: float, scale: float, rng: np.random.Generator, sharp: bool = False) -> np.ndarray:
    """A 1-D terrain profile (row per column) around `base` rows."""
    line = noise((1, width), scale, rng, octaves=5)[0] if width > 1 else np.zeros(1, np.float32)
    if sharp:
        line = 1 - np.abs(2 * line - 1)
    return base - amp * line


def _lerp(a, b, t):
    return np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t


def _paint(img: np.ndarray, mask: np.ndarray, colour, alpha: float | np.ndarray = 1.0) -> None:
    a = (mask.astype(np.float32) * alpha)[..., None]
    img[:] = img * (1 - a) + np.asarray(colour, np.float32) * a


def _sky(h: int, w: int, horizon: int, sky: str, rng) -> np.ndarray:
    top, bottom = SKY_PRESETS[sky]
    t = np.clip(np.arange(h, dtype=np.float32) / max(1, horizon), 0, 1) ** 1.4
    img = np.repeat(_lerp(top, bottom, t[:, None])[:, None, :], w, axis=1).reshape(h, w, 3)
    clouds = noise((h, w), max(h, w) / 3, rng)
    cover = {"overcast": 0.3, "day": 0.55, "golden": 0.6, "dawn": 0.6, "dusk": 0.6, "night": 0.8}[sky]
    c = np.clip((clouds - cover) / (1 - cover), 0, 1) ** 0.8
    cloud_col = {"night": (45, 55, 85), "dusk": (240, 150, 110), "dawn": (250, 205, 200),
                 "golden": (255, 225, 180), "overcast": (185, 188, 195)}.get(sky, (250, 250, 252))
    _paint(img, c, cloud_col, 0.85)
    if sky == "night":
        ys, xs = rng.integers(0, max(1, horizon), 400), rng.integers(0, w, 400)
        for y, x in zip(ys, xs):
            img[y, x] = 200 + 55 * rng.random()
    return img


def _disc(img, cx, cy, r, colour, glow: float) -> None:
    h, w = img.shape[:2]
    yy, xx = np.ogrid[:h, :w]
    d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2).astype(np.float32)
    _paint(img, np.exp(-np.maximum(d - r, 0) / (r * glow)) * 0.6, colour)
    _paint(img, d < r, colour)


def render_scene(layout: dict, height: int, width: int, seed: int) -> SceneRender:
    rng = np.random.default_rng(seed)
    h, w = height, width
    hz = int(layout["horizon"] * h)
    sky, terrain, ground = layout["sky"], layout["terrain"], layout["ground"]
    features = set(layout.get("features", ()))
    img = _sky(h, w, hz, sky, rng)
    regions = {k: np.zeros((h, w), np.float32) for k in ("sky", "water", "foliage", "road", "buildings")}
    lights: list[tuple[int, int, int]] = []
    rows = np.arange(h)[:, None]
    skyline = np.full(w, float(hz))  # per column, the first row that is not sky

    if "sun" in features and sky != "night":
        sun_y = hz - (0.08 if sky in ("dusk", "golden", "dawn") else 0.6) * hz
        _disc(img, w * rng.uniform(0.2, 0.8), sun_y, 0.035 * h, (255, 240, 200), 3.0)
    if "moon" in features or sky == "night":
        _disc(img, w * rng.uniform(0.15, 0.85), hz * 0.3, 0.025 * h, (235, 235, 220), 2.0)

    # terrain silhouette above the horizon
    far = _lerp(SKY_PRESETS[sky][1], (60, 70, 90) if sky != "night" else (10, 15, 30), 0.55)
    if terrain == "mountains":
        line = skyline = ridge(w, hz, 0.45 * hz, w / 3, rng, sharp=True)
        body = rows >= line[None, :]
        _paint(img, body, far)
        snow = body & (rows < line[None, :] + 0.08 * h) & (line[None, :] < hz - 0.2 * hz)
        _paint(img, snow, (235, 238, 245), 0.9)
    elif terrain in ("hills", "dunes", "cliffs", "forest"):
        amp = {"hills": 0.18, "dunes": 0.25, "cliffs": 0.4, "forest": 0.3}[terrain] * hz
        line = skyline = ridge(w, hz, amp, w / (2 if terrain != "forest" else 12), rng, sharp=terrain == "cliffs")
        colour = {"hills": _lerp(GROUND_COLOURS["grass"], far, 0.45), "dunes": GROUND_COLOURS["desert"],
                  "cliffs": _lerp((110, 70, 50), far, 0.3), "forest": (35, 70, 40)}[terrain]
        body = rows >= line[None, :]
        shade = 0.75 + 0.25 * noise((h, w), w / 6, rng)
        _paint(img, body, np.asarray(colour, np.float32) * shade[..., None].mean(), 1.0)
        if terrain == "forest":
            regions["foliage"] += body
    elif terrain == "skyline":
        x = 0
        while x < w:
            bw = int(rng.uniform(0.04, 0.1) * w)
            top = int(hz - rng.uniform(0.15, 0.7) * hz)
            tone = rng.uniform(0.6, 1.0)
            colour = np.asarray((40, 45, 60) if sky == "night" else _lerp(far, (120, 130, 150), 0.4), np.float32) * tone
            img[top:hz, x:x + bw] = colour
            regions["buildings"][top:hz, x:x + bw] = 1
            lit = sky in ("night", "dusk") or "lights" in features
            for wy in range(top + 6, hz - 4, max(6, h // 60)):
                for wx in range(x + 4, x + bw - 4, max(6, w // 110)):
                    if lit and rng.random() < 0.35:
                        img[wy:wy + 3, wx:wx + 3] = (255, 215, 140)
                        if rng.random() < 0.15:
                            lights.append((wx + 1, wy + 1, 3))
            x += bw + int(rng.uniform(0, 0.01) * w)

    # ground below the horizon
    g = np.zeros((h, w), bool)
    g[hz:] = True
    depth = np.clip((rows - hz) / max(1, h - hz), 0, 1).astype(np.float32)  # 0 at horizon, 1 at bottom
    tex = noise((h, w), max(8.0, w / 40), rng)
    base = np.asarray(GROUND_COLOURS[ground], np.float32)
    if ground == "water":
        reflection = img[np.clip(2 * hz - rows[:, 0], 0, hz - 1)] * 0.75 + base * 0.25
        ripples = 0.85 + 0.15 * np.sin(rows * (0.5 + 2 * depth) + 6 * tex)
        img[hz:] = (reflection * ripples[..., None])[hz:]
        regions["water"][hz:] = 1
    else:
        shade = (0.88 + 0.18 * tex) * (0.82 + 0.25 * depth)
        img[hz:] = (base[None, None, :] * shade[..., None])[hz:]
        if ground in FOLIAGE_GROUNDS:
            regions["foliage"][hz:] = 1
    if layout.get("water_band", 0) > 0:
        end = hz + int(layout["water_band"] * h)
        reflection = img[np.clip(2 * hz - rows[hz:end, 0], 0, hz - 1)] * 0.6 + np.array((60, 170, 190)) * 0.4
        img[hz:end] = reflection
        regions["water"][hz:end] = 1
        regions["foliage"][hz:end] = 0
    if ground == "vineyard" or "rows" in features:
        vx = w * rng.uniform(0.35, 0.65)
        for k in range(-14, 15):
            cv2.line(img, (int(vx), hz), (int(vx + k * w / 10), h), (50, 90, 35), max(2, w // 120))
    if ground == "meadow" or "flowers" in features:
        n = int(0.0015 * w * (h - hz))
        ys = (hz + (h - hz) * rng.random(n) ** 0.7).astype(int)
        xs = rng.integers(0, w, n)
        cols = np.array([(240, 220, 60), (240, 120, 160), (250, 250, 250), (190, 110, 220)])
        for y, x, c in zip(ys, xs, cols[rng.integers(0, 4, n)]):
            cv2.circle(img, (int(x), int(y)), max(1, int(1 + 3 * (y - hz) / max(1, h - hz))), c.tolist(), -1)
    if "road" in features or ground == "street":
        pts = np.array([[w * 0.45, hz], [w * 0.55, hz], [w * 0.95, h], [w * 0.05, h]], np.int32)
        cv2.fillPoly(img, [pts], (70, 70, 75))
        road = np.zeros((h, w), np.uint8)
        cv2.fillPoly(road, [pts], 1)
        regions["road"] = road.astype(np.float32)
        cv2.line(img, (w // 2, hz), (w // 2, h), (220, 210, 150), max(1, w // 300))
    # features on the horizon
    if "trees" in features or "palms" in features:
        for _ in range(int(rng.integers(6, 14))):
            x = int(rng.uniform(0, w))
            size = rng.uniform(0.05, 0.14) * h
            base_y = int(hz + rng.uniform(0, 0.06) * h)
            trunk = (70, 50, 35)
            if "palms" in features and rng.random() < 0.7:
                cv2.line(img, (x, base_y), (x + int(size * 0.2), int(base_y - size * 1.6)), trunk, max(2, int(size / 12)))
                crown = np.zeros((h, w), np.uint8)
                cx, cy = x + int(size * 0.2), int(base_y - size * 1.6)
                for a in np.linspace(0, np.pi, 7):
                    cv2.ellipse(crown, (int(cx + np.cos(a) * size * 0.4), int(cy - np.sin(a) * size * 0.15)),
                                (int(size * 0.45), int(size * 0.1)), float(np.degrees(-a) / 2), 0, 360, 1, -1)
            else:
                cv2.line(img, (x, base_y), (x, int(base_y - size * 0.6)), trunk, max(2, int(size / 10)))
                crown = np.zeros((h, w), np.uint8)
                for _ in range(5):
                    cv2.circle(crown, (int(x + rng.normal(0, size * 0.25)), int(base_y - size * rng.uniform(0.7, 1.2))),
                               int(size * rng.uniform(0.25, 0.45)), 1, -1)
            leaf = (30, 80, 35) if sky != "night" else (15, 30, 20)
            _paint(img, crown > 0, np.asarray(leaf) * rng.uniform(0.8, 1.2))
            regions["foliage"] = np.maximum(regions["foliage"], crown.astype(np.float32))
    if "buildings" in features and terrain != "skyline":
        for _ in range(int(rng.integers(2, 5))):
            x, bw, bh = int(rng.uniform(0, w)), int(rng.uniform(0.05, 0.1) * w), int(rng.uniform(0.06, 0.15) * h)
            img[hz - bh:hz, x:x + bw] = (150, 60, 50) if sky != "night" else (50, 40, 45)
            regions["buildings"][hz - bh:hz, x:x + bw] = 1
            if sky in ("night", "dusk") or "lights" in features:
                cy, cx = hz - bh // 2, x + bw // 2
                img[cy - 3:cy + 3, cx - 3:cx + 3] = (255, 210, 130)
                lights.append((cx, cy, 4))
    if "lights" in features:
        for _ in range(int(rng.integers(8, 20))):
            x, y = int(rng.uniform(0, w)), int(hz + rng.uniform(-0.05, 0.03) * h)
            cv2.circle(img, (x, y), max(2, h // 200), (255, 220, 150), -1)
            lights.append((x, y, max(3, h // 120)))

    # atmospheric haze toward the horizon
    haze = np.exp(-np.abs(rows - hz) / (0.12 * h)).astype(np.float32)
    _paint(img, np.broadcast_to(haze, (h, w)), SKY_PRESETS[sky][1], 0.35)
    regions["sky"] = np.broadcast_to(rows < skyline[None, :], (h, w)) * (1 - regions["buildings"])
    regions["foliage"] = np.clip(regions["foliage"], 0, 1) * (1 - regions["water"])
    return SceneRender(np.clip(img, 0, 255).astype(np.uint8), regions, lights, hz)
