"""Sparkle-Bench in the graph: bench samples, every system's outputs, judgments and the results table.

`bench_samples` -> `bench_outputs` -> `bench_judgments` (per `theme` partition) -> `bench_results`
(all themes). The judges, the rubric, the aggregation and the readers live in `sparkle_bench`
(no Dagster); `sparkle bench` runs it from a shell (`evaluation.run`).
"""
