"""sparkle_assets: the Dagster code location (`sparkle_assets.definitions`).

    core/      the machinery every stage shares: artifact store, DuckDB lineage, per-clip executor and
               step, stage declaration and config checks, readers of current rows, reports, resources,
               sources, the theme partitions
    stages/    one module per asset, grouped as the pipeline runs: per_clip/ (once per source clip),
               per_theme/ (per `theme` partition), release/ (the export and the bench split)
    cli.py     the `sparkle` command
A stage module imports the core (and sparkle_model / sparkle_bench), never another stage.
"""
