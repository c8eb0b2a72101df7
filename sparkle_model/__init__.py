"""sparkle_model: media and model code with no Dagster import: video IO, camera motion, masks, BAIT and its backends."""
