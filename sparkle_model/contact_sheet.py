"""Contact sheets: a grid of small frames (one row per clip, one column per stage) with captions."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def contact_sheet(rows: Sequence[Sequence[np.ndarray | None]], columns: Sequence[str], row_labels: Sequence[str],
                  tile_width: int = 240) -> np.ndarray:
    """RGB uint8 grid; a missing image (None) is a dark tile marked "-"."""
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    first = next(im for row in rows for im in row if im is not None)
    tile_h = max(8, int(round(first.shape[0] * tile_width / first.shape[1])))
    header = 22

    def tile(im):
        if im is None:
            t = np.full((tile_h, tile_width, 3), 32, np.uint8)
            cv2.putText(t, "-", (tile_width // 2 - 5, tile_h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (160, 160, 160), 1)
            return t
        return cv2.resize(im, (tile_width, tile_h), interpolation=cv2.INTER_AREA)

    def caption(text: str, width: int) -> np.ndarray:
        bar = np.full((header, width, 3), 24, np.uint8)
        cv2.putText(bar, text[: max(4, width // 8)], (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (235, 235, 235), 1, cv2.LINE_AA)
        return bar

    out = [np.hstack([caption(c, tile_width) for c in columns])]
    for label, row in zip(row_labels, rows):
        out.append(caption(label, tile_width * len(columns)))
        out.append(np.hstack([tile(im) for im in row] + [tile(None)] * (len(columns) - len(row))))
    return np.vstack(out)
