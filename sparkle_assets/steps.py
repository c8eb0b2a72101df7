"""Dagster glue shared by every stage: record a step's lineage and report it as a materialization."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

import cv2
import dagster as dg
import numpy as np

from .clipstep import data_version_of
from .lineage import UNPARTITIONED, Lineage, LineageBatch, now_iso
from .store import atomic_write_bytes


def finish_step(context: dg.AssetExecutionContext, lineage: Lineage, batch: LineageBatch, *,
                asset_key: str, output_ids: Sequence[str], all_ids: Sequence[str], code_version: str,
                summary: dict, metadata: dict, partition: str = UNPARTITIONED,
                input_assets: Sequence[str | tuple[str, str]] = ()) -> dg.MaterializeResult:
    """Write the step's lineage (artifacts, edges, materialization) and build its result.

    The data version is the hash of `output_ids`, the artifacts downstream steps read, so an
    unchanged re-run marks nothing downstream stale. `input_assets` are asset keys (unpartitioned) or
    (asset key, partition) pairs.
    """
    version = data_version_of(output_ids)
    inputs = {}
    for a in input_assets:
        key, part = (a, UNPARTITIONED) if isinstance(a, str) else a
        inputs[key] = (lineage.latest_materialization(key, part) or {}).get("data_version")
    batch.materialization = {
        "run_id": context.run_id, "asset_key": asset_key, "partition": partition,
        "code_version": code_version, "data_version": version, "input_data_versions": inputs,
        "created_at": now_iso(), "artifact_ids": sorted(set(all_ids)), "summary": summary,
    }
    lineage.write(batch)
    context.log.info(f"{asset_key}[{partition or '-'}]: {summary}")
    return dg.MaterializeResult(
        metadata={**metadata, "lineage_db": dg.MetadataValue.path(str(lineage.db_path))},
        data_version=dg.DataVersion(version),
    )


def histogram_md(values: Sequence[float], bins: Sequence[float]) -> dg.MetadataValue:
    """A small markdown histogram (bin edges as given; the last bin is open-ended)."""
    if not len(values):
        return dg.MetadataValue.md("(no values)")
    counts, edges = np.histogram(np.clip(values, bins[0], bins[-1]), bins=bins)
    top = max(int(counts.max()), 1)
    rows = [f"| {lo:g} - {hi:g} | {n} | {'█' * int(round(20 * n / top))} |"
            for lo, hi, n in zip(edges[:-1], edges[1:], counts)]
    return dg.MetadataValue.md("| range | clips | |\n|---|---|---|\n" + "\n".join(rows))


def contact_sheet_metadata(home: str, theme: str, asset_key: str, sheet: np.ndarray) -> dict:
    """Save a contact sheet as `<home>/contact_sheets/<theme>/<asset_key>.png` (atomically) and return
    metadata that shows it in the UI (a small inline JPEG) and links the full-size file."""
    path = Path(home) / "contact_sheets" / theme / f"{asset_key}.png"
    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    atomic_write_bytes(path, png.tobytes())
    small = sheet if sheet.shape[1] <= 960 else cv2.resize(sheet, (960, int(sheet.shape[0] * 960 / sheet.shape[1])),
                                                           interpolation=cv2.INTER_AREA)
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    inline = base64.b64encode(jpg.tobytes()).decode()
    return {"contact_sheet": dg.MetadataValue.md(f"![contact sheet](data:image/jpeg;base64,{inline})"),
            "contact_sheet_path": dg.MetadataValue.path(str(path))}
