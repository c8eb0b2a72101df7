"""What stages show in the UI: markdown histograms, contact sheets (saved under the home and
inlined in the metadata), and the frames they are made of.

A contact sheet is drawn only when what it shows changed: each row names the artifacts it shows
(`shows`), and a sheet whose rows, labels and columns are those of the saved one is read back, so
a no-op re-run decodes nothing for it."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import dagster as dg
import numpy as np

from sparkle_model.contact_sheet import contact_sheet
from sparkle_model.video import read_frames

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
    """The frames at `indices` of a video (None past its end), converting only those."""
    frames = read_frames(path, indices)
    return [frames.get(i) for i in indices]


def sheet_metadata(home: str, theme: str, asset_key: str, clips: dict[str, dict],
                   columns: Sequence[tuple[str, Callable[[dict], np.ndarray | None]]], limit: int = 4,
                   tile_width: int = 240) -> dict:
    """A contact sheet of the first `limit` clips (one image per column getter, labelled with the
    clip's `label`), saved as `<home>/contact_sheets/<theme>/<asset_key>.png` (atomically), returned
    as metadata that shows it inline in the UI and links the full-size file. Each clip's `shows`
    lists the ids of the artifacts its row shows; when every row's ids and label, the columns and
    the tile width are those the saved sheet was drawn from (its `<asset_key>.json`, written after
    it), the saved sheet is reused and no getter runs."""
    shown = sorted(clips)[:limit]
    names = [name for name, _ in columns]
    key = hashlib.sha256(json.dumps([names, tile_width, [[cid, clips[cid].get("label", ""), list(clips[cid]["shows"])]
                                                         for cid in shown]]).encode()).hexdigest()
    path = contained(home, "contact_sheets", theme, f"{asset_key}.png")
    stamp = path.with_suffix(".json")
    sheet = _saved_sheet(path, stamp, key)
    if sheet is None:
        rows = [[get(clips[cid]) for _, get in columns] for cid in shown]
        labels = [f"{cid}  {clips[cid].get('label', '')}" for cid in shown]
        sheet = contact_sheet(rows, names, labels, tile_width=tile_width)
        ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        stamp.unlink(missing_ok=True)  # never a stamp naming another sheet than the file holds
        atomic_write_bytes(path, png.tobytes())
        atomic_write_bytes(stamp, json.dumps({"key": key, "clips": shown}).encode())
    small = sheet if sheet.shape[1] <= 960 else cv2.resize(sheet, (960, int(sheet.shape[0] * 960 / sheet.shape[1])),
                                                           interpolation=cv2.INTER_AREA)
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    inline = base64.b64encode(jpg.tobytes()).decode()
    return {"contact_sheet": dg.MetadataValue.md(f"![contact sheet](data:image/jpeg;base64,{inline})"),
            "contact_sheet_path": dg.MetadataValue.path(str(path))}


def _saved_sheet(path: Path, stamp: Path, key: str) -> np.ndarray | None:
    """The saved sheet (RGB) when its stamp records `key` and it reads back; else None."""
    try:
        if json.loads(stamp.read_text()).get("key") != key:
            return None
    except (OSError, ValueError, AttributeError):
        return None
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
