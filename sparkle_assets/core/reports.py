"""What stages show in the UI: markdown histograms, contact sheets (saved under the home and
inlined in the metadata), and the frames they are made of."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import dagster as dg
import numpy as np

from sparkle_model.contact_sheet import contact_sheet
from sparkle_model.video import iter_frames

from .store import atomic_write_bytes, contained


def histogram_md(values: Sequence[float], bins: Sequence[float]) -> dg.MetadataValue:
    """A small markdown histogram (bin edges as given; the last bin is open-ended)."""
    if not len(values):
        return dg.MetadataValue.md("(no values)")
    counts, edges = np.histogram(np.clip(values, bins[0], bins[-1]), bins=bins)
    top = max(int(counts.max()), 1)
    rows = [f"| {lo:g} - {hi:g} | {n} | {'█' * int(round(20 * n / top))} |"
            for lo, hi, n in zip(edges[:-1], edges[1:], counts)]
    return dg.MetadataValue.md("| range | clips | |\n|---|---|---|\n" + "\n".join(rows))


def pick_frames(path: str | Path, indices: Sequence[int]) -> list[np.ndarray | None]:
    """The frames at `indices` of a video, decoding only up to the last one asked for."""
    wanted, out = set(indices), {}
    for t, frame in enumerate(iter_frames(path)):
        if t in wanted:
            out[t] = frame
        if t >= max(indices):
            break
    return [out.get(i) for i in indices]


def sheet_metadata(home: str, theme: str, asset_key: str, clips: dict[str, dict],
                   columns: Sequence[tuple[str, Callable[[dict], np.ndarray | None]]], limit: int = 4,
                   tile_width: int = 240) -> dict:
    """A contact sheet of the first `limit` clips (one image per column getter, labelled with the
    clip's `label`), saved as `<home>/contact_sheets/<theme>/<asset_key>.png` (atomically), returned
    as metadata that shows it inline in the UI and links the full-size file."""
    rows, labels = [], []
    for clip_id in sorted(clips)[:limit]:
        rows.append([get(clips[clip_id]) for _, get in columns])
        labels.append(f"{clip_id}  {clips[clip_id].get('label', '')}")
    sheet = contact_sheet(rows, [name for name, _ in columns], labels, tile_width=tile_width)
    path = contained(home, "contact_sheets", theme, f"{asset_key}.png")
    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    atomic_write_bytes(path, png.tobytes())
    small = sheet if sheet.shape[1] <= 960 else cv2.resize(sheet, (960, int(sheet.shape[0] * 960 / sheet.shape[1])),
                                                           interpolation=cv2.INTER_AREA)
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    inline = base64.b64encode(jpg.tobytes()).decode()
    return {"contact_sheet": dg.MetadataValue.md(f"![contact sheet](data:image/jpeg;base64,{inline})"),
            "contact_sheet_path": dg.MetadataValue.path(str(path))}
