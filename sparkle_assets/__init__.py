"""sparkle_assets: the Dagster code location (sparkle_assets.definitions): one module per stage, the artifact store, DuckDB lineage, the per-clip executor and resources."""
