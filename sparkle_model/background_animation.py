"""The default image-to-video backend: a background plate animated by the scene's motion cues.

`animate(plate, regions, lights, cues, n_frames, fps, seed)` yields frames in which every cue the
scene names moves where it belongs: clouds drift across the sky, water shimmers and ripples,
foliage sways, fog and smoke roll, rain, snow, petals, leaves, embers and dust fall or rise, lights
flicker, traffic streams along the road. Every motion is a continuous, non-periodic function of
time (drifts plus sums of incommensurate sines), so the clip is smooth and never loops. A cue whose
region is absent (clouds without sky, water without water...) is skipped and reported; a slow,
faint light drift is always present so no clip is a still image.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from .scene_render import noise

PARTICLES = {  # count per megapixel, size (fraction of height), speed (heights/s: vy, vx), colour
    "rain": (600, 0.03, (1.6, 0.25), (200, 210, 230)),
    "snow": (450, 0.005, (0.12, 0.03), (250, 250, 255)),
    "petals": (120, 0.008, (0.08, 0.06), (250, 180, 205)),
    "leaves": (90, 0.01, (0.1, 0.07), (200, 110, 40)),
    "embers": (160, 0.003, (-0.12, 0.02), (255, 150, 50)),
    "dust": (300, 0.002, (0.02, 0.03), (255, 240, 200)),
}


def _wobble(t: float, phase: np.ndarray | float, base: float) -> np.ndarray | float:
    """A smooth non-periodic oscillation: incommensurate sines."""
    return (np.sin(base * t + phase) + 0.5 * np.sin(base * 1.618 * t + 2 * phase)
            + 0.25 * np.sin(base * 2.718 * t + 3 * phase)) / 1.75


class Animator:
    """Precomputes the per-clip layers once, then renders frame t."""

    def __init__(self, plate: np.ndarray, regions: dict[str, np.ndarray], lights, cues, fps: float, seed: int):
        self.plate = plate.astype(np.float32)
        self.h, self.w = plate.shape[:2]
        self.fps = fps
        self.rng = np.random.default_rng(seed)
        self.regions = {k: cv2.GaussianBlur(v.astype(np.float32), (0, 0), 2) for k, v in regions.items()}
        self.lights = list(lights)
        self.applied, self.skipped = [], {}
        yy, xx = np.mgrid[: self.h, : self.w].astype(np.float32)
        self.xx, self.yy = xx, yy
        self.phase = (noise((self.h, self.w), max(self.h, self.w) / 4, self.rng) * 2 * np.pi).astype(np.float32)
        need = {"clouds": "sky", "water": "water", "foliage": "foliage", "traffic": "road"}
        for cue in cues:
            region = need.get(cue)
            if region and self.regions.get(region, np.zeros(1)).mean() < 0.01:
                self.skipped[cue] = f"no {region} in the plate"
            elif cue == "lights" and not self.lights:
                self.skipped[cue] = "no light sources in the plate"
            else:
                self.applied.append(cue)
        if "clouds" in self.applied:
            self.cloud = noise((self.h, self.w * 2), self.w / 3, self.rng)
        if "fog" in self.applied or "smoke" in self.applied:
            self.fog = noise((self.h * 2, self.w * 2), self.w / 4, self.rng)
        self.particles = {}
        for cue in self.applied:
            if cue in PARTICLES:
                density, size, (vy, vx), colour = PARTICLES[cue]
                n = max(12, int(density * self.h * self.w / 1e6))
                self.particles[cue] = (self.rng.random((n, 2)), self.rng.uniform(0.6, 1.4, n),
                                       self.rng.uniform(0, 2 * np.pi, n), size, vy, vx, colour)
        if "traffic" in self.applied:
            rows = np.nonzero(self.regions["road"].max(axis=1) > 0.5)[0]
            self.lane = int(rows.min() + 0.15 * (rows.max() - rows.min())) if len(rows) else int(0.6 * self.h)
            self.cars = self.rng.random((10, 2))

    # -- layers -------------------------------------------------------------------------------
    def _warp(self, img: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        return cv2.remap(img, self.xx + dx, self.yy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def _displaced(self, s: float, amp: float) -> np.ndarray:
        """The plate with its water rippling and its foliage swaying at time `s` (a new array)."""
        dx = np.zeros((self.h, self.w), np.float32)
        dy = np.zeros_like(dx)
        if "water" in self.applied:
            wreg = self.regions["water"]
            ripple = np.sin(0.35 * self.yy / amp - 2.2 * s + self.phase) * np.sin(0.05 * self.xx / amp + 0.9 * s)
            dx += 1.5 * amp * wreg * ripple
            dy += 1.0 * amp * wreg * np.cos(0.3 * self.yy / amp - 1.7 * s + self.phase)
        if "foliage" in self.applied:
            sway = _wobble(s, self.phase, 1.3)
            dx += 1.2 * amp * self.regions["foliage"] * sway
            dy += 0.4 * amp * self.regions["foliage"] * _wobble(s, self.phase + 1.0, 1.1)
        if dx.any() or dy.any():
            return self._warp(self.plate, dx, dy)
        return self.plate.copy()

    def frame(self, t: int) -> np.ndarray:
        s = t / self.fps
        amp = self.h / 360
        # this frame's own array (only water and foliage displace pixels): later layers add in place
        img = self._displaced(s, amp) if {"water", "foliage"} & set(self.applied) else self.plate.copy()
        if "water" in self.applied:
            glint = np.clip(np.sin(0.6 * self.xx / amp + 3 * s + 2 * self.phase) * np.sin(0.8 * self.yy / amp - 2 * s), 0, 1) ** 12
            img += (60 * glint * self.regions["water"])[..., None]
        if "clouds" in self.applied:
            off = int(s * self.w * 0.035) % self.w
            c = np.clip((self.cloud[:, off:off + self.w] - 0.55) * 3, 0, 1) * self.regions["sky"] * 0.45
            img = img * (1 - c[..., None]) + 245 * c[..., None]
        for cue, tone, speed in (("fog", 225, (0.01, 0.03)), ("smoke", 150, (-0.05, 0.01))):
            if cue in self.applied:
                oy = int((s * speed[0] * self.h) % self.h)
                ox = int((s * speed[1] * self.w) % self.w)
                f = self.fog[oy:oy + self.h, ox:ox + self.w]
                weight = np.linspace(0.5, 1.0, self.h, dtype=np.float32)[:, None] if cue == "fog" else \
                    np.linspace(1.0, 0.3, self.h, dtype=np.float32)[:, None]
                a = np.clip((f - 0.4) * 1.6, 0, 1) * 0.35 * weight
                img = img * (1 - a[..., None]) + tone * a[..., None]
        if "lights" in self.applied:
            layer = np.zeros((self.h, self.w), np.float32)
            for i, (x, y, r) in enumerate(self.lights):
                flicker = 0.5 * _wobble(s, i * 1.7, 5.0 + (i % 5))
                cv2.circle(layer, (int(x), int(y)), int(r * 2), float(flicker), -1)
            glow = cv2.GaussianBlur(layer, (0, 0), max(2, self.h / 100))
            img += glow[..., None] * np.array([255, 200, 120], np.float32)
        if "traffic" in self.applied:
            for k, (x0, v) in enumerate(self.cars):
                direction = 1 if k % 2 else -1
                x = ((x0 + direction * (0.08 + 0.1 * v) * s) % 1.2 - 0.1) * self.w
                y = self.lane + (k % 3) * amp * 3
                colour = (255, 240, 200) if direction > 0 else (255, 60, 40)
                for dxl in (-2 * amp, 2 * amp):
                    cv2.circle(img, (int(x + dxl), int(y)), max(1, int(amp)), colour, -1)
        for cue, (pos, scale, phase, size, vy, vx, colour) in self.particles.items():
            self._particles(img, cue, pos, scale, phase, size, vy, vx, colour, s)
        drift = 1 + 0.012 * _wobble(s, 0.3, 0.9)  # slow light drift: never a still image
        out = img * drift  # float64 (drift is a NumPy float64), clipped in place
        return np.clip(out, 0, 255, out=out).astype(np.uint8)

    def _particles(self, img, cue, pos, scale, phase, size, vy, vx, colour, s) -> None:
        h, w = self.h, self.w
        y = ((pos[:, 1] + vy * scale * s) % 1.0) * h
        x = ((pos[:, 0] + vx * scale * s / (w / h)) % 1.0) * w + 0.02 * h * np.sin(1.3 * s * scale + phase)
        r = np.maximum(1, size * h * scale)
        overlay = img.copy()
        for xi, yi, ri, ph in zip(x.astype(int), y.astype(int), r, phase):
            if cue == "rain":
                cv2.line(overlay, (xi, yi), (int(xi - 0.15 * ri * h / 40), int(yi + ri)), colour, 1, cv2.LINE_AA)
            elif cue in ("petals", "leaves"):
                angle = float(np.degrees(ph + 2 * s))
                cv2.ellipse(overlay, (xi, yi), (int(ri * 1.6) + 1, int(ri * 0.8) + 1), angle, 0, 360, colour, -1, cv2.LINE_AA)
            else:
                bright = 0.6 + 0.4 * np.sin(6 * s + ph) if cue == "embers" else 1.0
                cv2.circle(overlay, (xi, yi), int(ri), tuple(float(c) * bright for c in colour), -1, cv2.LINE_AA)
        alpha = {"rain": 0.45, "dust": 0.5, "snow": 0.85}.get(cue, 0.9)
        cv2.addWeighted(overlay, alpha, img, 1 - alpha, 0, dst=img)


def animate(plate: np.ndarray, regions: dict[str, np.ndarray], lights, cues, n_frames: int, fps: float,
            seed: int) -> tuple[Animator, Iterator[np.ndarray]]:
    """The animator (with `applied` / `skipped` cues) and an iterator over the frames."""
    animator = Animator(plate, regions, lights, cues, fps, seed)
    return animator, (animator.frame(t) for t in range(n_frames))
