"""The sparkle code location: every asset, job, schedule and resource, exposed as `defs`."""

from __future__ import annotations

import dagster as dg

from .foreground_masks import foreground_masks, foreground_masks_quality
from .resources import default_resources
from .source_clips import source_clips
from .static_clips import static_clips

ALL_ASSETS = [source_clips, static_clips, foreground_masks]

sparkle_main = dg.define_asset_job(
    "sparkle_main", selection=dg.AssetSelection.assets(*ALL_ASSETS),
    description="Materialize the whole asset graph on the configured sources.",
)

defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=[foreground_masks_quality], jobs=[sparkle_main],
                      resources=default_resources())
