"""The files every finished training run leaves beside its weights, whichever backend trained it:
`editor_config.json` (what rebuilds the model), `loss.json` (per-step numbers) and `loss.png`. No
torch here, so Kiwi-Edit's runs write them without it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def write_run_files(final: Path, editor_config: dict, losses: list[float]) -> None:
    (final / "editor_config.json").write_text(json.dumps(editor_config, indent=1))
    (final / "loss.json").write_text(json.dumps({"step": list(range(1, len(losses) + 1)), "loss": losses}))
    (final / "loss.png").write_bytes(loss_curve_png(losses))


def loss_curve_png(losses: list[float], width: int = 640, height: int = 300) -> bytes:
    """Per-step loss (grey) and its running mean over ~5% of the steps (blue), as PNG bytes."""
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 56, 12, 12, 30
    cv2.rectangle(img, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
    if losses:
        values = np.asarray(losses, np.float64)
        k = max(1, len(values) // 20)
        smooth = np.convolve(np.pad(values, (k - 1, 0), mode="edge"), np.ones(k) / k, mode="valid")
        lo, hi = float(values.min()), float(values.max())
        hi = hi if hi > lo else lo + 1e-6

        def points(v: np.ndarray) -> np.ndarray:
            x = left + (np.arange(len(v)) / max(len(v) - 1, 1)) * (width - left - right)
            y = height - bottom - (v - lo) / (hi - lo) * (height - top - bottom)
            return np.stack([x, y], 1).round().astype(np.int32)

        cv2.polylines(img, [points(values)], False, (190, 190, 190), 1, cv2.LINE_AA)
        cv2.polylines(img, [points(smooth)], False, (200, 80, 20), 2, cv2.LINE_AA)
        for value, y in ((hi, top + 10), (lo, height - bottom)):
            cv2.putText(img, f"{value:.3g}", (4, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"step 1 .. {len(values)}   loss {values[0]:.3f} -> {smooth[-1]:.3f} (mean of last {k})",
                    (left, height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return cv2.imencode(".png", img)[1].tobytes()
