"""The files every finished training run leaves beside its weights, whichever backend trained it:
`editor_config.json` (what rebuilds the model), `loss.json` (per-step numbers) and `loss.png`. No
torch here, so Kiwi-Edit's runs write them without it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np


def write_run_files(final: Path, editor_config: dict, losses: list[float]) -> None:
    (final / "editor_config.json").write_text(json.dumps(editor_config, indent=1))
    (final / "loss.json").write_text(json.dumps({"step": list(range(1, len(losses) + 1)), "loss": losses}))
    (final / "loss.png").write_bytes(loss_curve_png(losses))


def _curves(losses: list[float]) -> tuple[np.ndarray, np.ndarray, int]:
    """(per-step loss, its running mean over ~5% of the steps, that window)."""
    values = np.asarray(losses, np.float64)
    k = max(1, len(values) // 20)
    return values, np.convolve(np.pad(values, (k - 1, 0), mode="edge"), np.ones(k) / k, mode="valid"), k


def _points(v: np.ndarray, lo: float, hi: float, box: tuple[int, int, int, int]) -> np.ndarray:
    left, top, right, bottom = box
    x = left + (np.arange(len(v)) / max(len(v) - 1, 1)) * (right - left)
    y = bottom - (v - lo) / max(hi - lo, 1e-6) * (bottom - top)
    return np.stack([x, y], 1).round().astype(np.int32)


def loss_curve_png(losses: list[float], width: int = 640, height: int = 300) -> bytes:
    """Per-step loss (grey) and its running mean (blue), with the range and the first and last values."""
    img = np.full((height, width, 3), 255, np.uint8)
    box = (56, 12, width - 12, height - 30)
    cv2.rectangle(img, box[:2], box[2:], (0, 0, 0), 1)
    if losses:
        values, smooth, k = _curves(losses)
        lo, hi = float(values.min()), float(values.max())
        cv2.polylines(img, [_points(values, lo, hi, box)], False, (190, 190, 190), 1, cv2.LINE_AA)
        cv2.polylines(img, [_points(smooth, lo, hi, box)], False, (200, 80, 20), 2, cv2.LINE_AA)
        for value, y in ((hi, box[1] + 10), (lo, box[3])):
            cv2.putText(img, f"{value:.3g}", (4, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"step 1 .. {len(values)}   loss {values[0]:.3f} -> {smooth[-1]:.3f} (mean of last {k})",
                    (box[0], height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return cv2.imencode(".png", img)[1].tobytes()


def loss_sparkline_png(losses: list[float], width: int = 200, height: int = 50) -> bytes:
    """The running mean alone (the per-step line is noise at this size) as a 2-bit palette PNG of a few
    hundred bytes: small enough for Dagster's UI to show inline in an asset's metadata (it inlines
    markdown of up to 1000 characters)."""
    from PIL import Image

    img = np.zeros((height, width), np.uint8)
    img[[0, -1], :] = img[:, [0, -1]] = 3
    if losses:
        _, smooth, _ = _curves(losses)
        box = (2, 3, width - 3, height - 4)
        cv2.polylines(img, [_points(smooth, float(smooth.min()), float(smooth.max()), box)], False, 2, 2)
    image = Image.fromarray(img, "P")
    image.putpalette([255, 255, 255, 200, 200, 200, 20, 80, 200, 120, 120, 120] + [0] * 756)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True, bits=2)
    return buf.getvalue()
