"""sparkle_bench: evaluation with no Dagster import. `metrics` holds the per-video metrics shared by
the pipeline's filters (background motion so far) and, later, the benchmark runners."""
