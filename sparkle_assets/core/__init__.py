"""The core of the code location: what every stage shares and no stage owns (store, lineage,
executor, per-clip step, stage declaration, config checks, readers, judging, reports, resources,
sources, theme partitions, release helpers). Nothing here imports a stage."""
