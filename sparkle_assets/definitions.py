"""The sparkle code location: every asset, job, sensor and resource, exposed as `defs`.

Jobs: `theme_independent` (source clips to clean backgrounds, once per clip), `theme_assets` (the
per-theme stages, partitioned by `theme`) and `sparkle_main` (both, for one theme partition).
"""

from __future__ import annotations

import dagster as dg

from .background_plates import background_plates
from .background_videos import background_videos
from .clean_backgrounds import clean_backgrounds
from .edited_first_frames import edited_first_frames
from .foreground_masks import foreground_masks, foreground_masks_quality
from .instructions import instructions
from .resources import default_resources
from .source_clips import source_clips
from .static_clips import static_clips
from .themes import theme_taxonomy

THEME_INDEPENDENT = [source_clips, static_clips, foreground_masks, clean_backgrounds]
THEME_ASSETS = [instructions, edited_first_frames, background_plates, background_videos]
ALL_ASSETS = THEME_INDEPENDENT + THEME_ASSETS

theme_independent = dg.define_asset_job(
    "theme_independent", selection=dg.AssetSelection.assets(*THEME_INDEPENDENT),
    description="Everything computed once per clip and shared by every theme.")
theme_assets = dg.define_asset_job(
    "theme_assets", selection=dg.AssetSelection.assets(*THEME_ASSETS),
    description="The per-theme stages for one `theme` partition (what a new theme's backfill runs).")
sparkle_main = dg.define_asset_job(
    "sparkle_main", selection=dg.AssetSelection.assets(*ALL_ASSETS),
    description="The whole graph for one theme partition (theme-independent work is reused when unchanged).")

defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=[foreground_masks_quality],
                      jobs=[theme_independent, theme_assets, sparkle_main], sensors=[theme_taxonomy],
                      resources=default_resources())
