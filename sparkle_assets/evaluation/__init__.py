"""Training and benchmarking editing models, beside the stages (imports the core, never a stage).

Sparkle-Bench: `bench_samples` -> `bench_outputs` -> `bench_judgments` (per `theme` partition) ->
`bench_results` (all themes). The judges, the rubric, the aggregation and the readers live in
`sparkle_bench` (no Dagster); `sparkle bench` runs it from a shell (`evaluation.run`).

The editor: `sparkle_dataset` -> `editor_checkpoint` (per `run_config`) -> `editor_outputs` (per
`theme`: each checkpoint's edits of the bench samples, one system of `bench_outputs` per checkpoint).

    run_configs.py        the `run_config` partitions: one training configuration file each (training/*.yaml)
    trainer.py            how training runs here: the machine's settings and the live Pipes client
    training_process.py   the process the trainer launches (plain python, accelerate launch or torchrun)
    editor_checkpoint.py  asset: the trained editor of one run_config, with its data manifest and loss curve
    editor_outputs.py     asset: every checkpoint's edits of a theme's bench samples
"""
