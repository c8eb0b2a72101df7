"""Release stages (per theme, cheap, nightly): sparkle_dataset (the training export) and bench_split."""
