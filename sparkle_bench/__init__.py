"""sparkle_bench: evaluation with no Dagster import (metrics shared with the pipeline filters, benchmark runners). Filled in by the stage-5 and benchmark work."""
