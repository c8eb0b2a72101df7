"""Dagster glue shared by every stage: record a step's lineage and report it as a materialization."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import numpy as np

from .clipstep import data_version_of
from .lineage import UNPARTITIONED, Lineage, LineageBatch, now_iso


def finish_step(context: dg.AssetExecutionContext, lineage: Lineage, batch: LineageBatch, *,
                asset_key: str, output_ids: Sequence[str], all_ids: Sequence[str], code_version: str,
                summary: dict, metadata: dict, partition: str = UNPARTITIONED,
                input_assets: Sequence[str] = ()) -> dg.MaterializeResult:
    """Write the step's lineage (artifacts, edges, materialization) and build its result.

    The data version is the hash of `output_ids`, the artifacts downstream steps read, so an
    unchanged re-run marks nothing downstream stale.
    """
    version = data_version_of(output_ids)
    inputs = {a: (lineage.latest_materialization(a, partition) or {}).get("data_version") for a in input_assets}
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
