"""sparkle_bench: evaluation with no Dagster import. `metrics` holds the per-video and per-pair
metrics shared by the pipeline's filters and the benchmark; `sparkle_format` the Sparkle release
and Sparkle-Bench layouts (paths, writers' text, readers)."""
