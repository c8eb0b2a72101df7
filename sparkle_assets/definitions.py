"""The sparkle code location: every asset, check, job, schedule, sensor and resource, exposed as `defs`.

Jobs: `theme_independent` (source clips to clean backgrounds, once per clip), `theme_assets` (the
per-theme stages, partitioned by `theme`), `sparkle_main` (both, for one theme partition),
`refilter` (the cheap tail: curation, export, bench split), which the `nightly_refilter` schedule
runs for every theme partition; the editor: `train_editor` (one `run_config`'s checkpoint), which
runs only when asked (the `editor_retraining` automation sensor that would retrain stale
checkpoints is off by default); and the benchmark: `bench` (samples, every system's outputs, every
checkpoint's edits of them, judgments, for one theme partition) and `bench_report` (the table over
every judged theme). Sensors: `theme_taxonomy` (a partition per theme file), `training_configs`
(a partition per training configuration) and `dead_runs` (runs whose process is gone marked
failed, their pool slots freed).
"""

from __future__ import annotations

import dagster as dg

from .core.resources import default_resources
from .core.runs import clear_dead_runs
from .core.themes import invalid_partitions, theme_name_problem, theme_partitions, theme_taxonomy
from .evaluation.bench_judgments import bench_judgments
from .evaluation.bench_outputs import bench_outputs
from .evaluation.bench_results import bench_results
from .evaluation.bench_samples import bench_samples
from .evaluation.editor_checkpoint import editor_checkpoint
from .evaluation.editor_outputs import editor_outputs
from .evaluation.resources import bench_resources
from .evaluation.run_configs import run_config_partitions, training_configs
from .evaluation.trainer import evaluation_resources
from .stages.per_clip.clean_backgrounds import clean_backgrounds
from .stages.per_clip.foreground_masks import foreground_masks, foreground_masks_quality
from .stages.per_clip.source_clips import source_clips
from .stages.per_clip.static_clips import static_clips
from .stages.per_theme.background_plates import background_plates
from .stages.per_theme.background_videos import background_videos
from .stages.per_theme.curated_pairs import curated_pairs, curated_pairs_have_masks, curated_pairs_pass_rates
from .stages.per_theme.edited_first_frames import edited_first_frames
from .stages.per_theme.edited_videos import edited_videos
from .stages.per_theme.guidance_videos import guidance_videos
from .stages.per_theme.instructions import instructions
from .stages.per_theme.pair_scores import pair_scores
from .stages.release.bench_split import bench_split
from .stages.release.sparkle_dataset import sparkle_dataset, sparkle_dataset_files

THEME_INDEPENDENT = [source_clips, static_clips, foreground_masks, clean_backgrounds]
CHEAP_ASSETS = [curated_pairs, sparkle_dataset, bench_split]
THEME_ASSETS = [instructions, edited_first_frames, background_plates, background_videos, guidance_videos,
                edited_videos, pair_scores, *CHEAP_ASSETS]
PIPELINE_ASSETS = THEME_INDEPENDENT + THEME_ASSETS
BENCH_ASSETS = [bench_samples, editor_outputs, bench_outputs, bench_judgments]
ALL_ASSETS = PIPELINE_ASSETS + BENCH_ASSETS + [bench_results, editor_checkpoint]
CHECKS = [foreground_masks_quality, curated_pairs_pass_rates, curated_pairs_have_masks, sparkle_dataset_files]

theme_independent = dg.define_asset_job(
    "theme_independent", selection=dg.AssetSelection.assets(*THEME_INDEPENDENT),
    description="Everything computed once per clip and shared by every theme.")
theme_assets = dg.define_asset_job(
    "theme_assets", selection=dg.AssetSelection.assets(*THEME_ASSETS),
    description="The per-theme stages for one `theme` partition (what a new theme's backfill runs).")
sparkle_main = dg.define_asset_job(
    "sparkle_main", selection=dg.AssetSelection.assets(*PIPELINE_ASSETS),
    description="The whole graph for one theme partition (theme-independent work is reused when unchanged).")
refilter = dg.define_asset_job(
    "refilter", selection=dg.AssetSelection.assets(*CHEAP_ASSETS), partitions_def=theme_partitions,
    description="Thresholds re-applied to the stored scores, then the export and bench split: no video decoded.")
train_editor = dg.define_asset_job(
    "train_editor", selection=dg.AssetSelection.assets(editor_checkpoint), partitions_def=run_config_partitions,
    description="Train (or reuse, or resume) one run_config's checkpoint.")
editor_retraining = dg.AutomationConditionSensorDefinition(
    "editor_retraining", target=dg.AssetSelection.assets(editor_checkpoint),
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Off by default. Turned on, it retrains a checkpoint when the dataset export it depends on changes.")

bench = dg.define_asset_job(
    "bench", selection=dg.AssetSelection.assets(*BENCH_ASSETS), partitions_def=theme_partitions,
    description="The benchmark for one theme partition: bench samples, every system's outputs (each trained "
                "checkpoint's edits among them), their judgments.")
bench_report = dg.define_asset_job(
    "bench_report", selection=dg.AssetSelection.assets(bench_results),
    description="The Sparkle-Bench table over every judged theme partition (plot, CSV, JSON, official JSONL).")


@dg.schedule(job=refilter, cron_schedule="0 3 * * *", default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Every night, one `refilter` run per theme partition (invalid partition names are "
                         "refused and logged).")
def nightly_refilter(context: dg.ScheduleEvaluationContext):
    date = context.scheduled_execution_time.strftime("%Y-%m-%d") if context.scheduled_execution_time else "now"
    refused = [theme_name_problem(name) for name in invalid_partitions(context.instance)]
    for problem in refused:
        context.log.error(problem)
    themes = [t for t in context.instance.get_dynamic_partitions(theme_partitions.name) if not theme_name_problem(t)]
    if not themes:
        return dg.SkipReason("no valid theme partitions registered" + "".join(f"; {p}" for p in refused))
    return [dg.RunRequest(run_key=f"refilter-{theme}-{date}", partition_key=theme) for theme in sorted(themes)]


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Runs whose process is gone (killed, out of memory) stay STARTED and keep their pool "
                       "slots: marks them failed with the reason and frees the slots, while the UI is up.")
def dead_runs(context: dg.SensorEvaluationContext):
    cleared = clear_dead_runs(context.instance, by="the dead_runs sensor")
    return dg.SkipReason("; ".join(f"cleared {c}" for c in cleared) or "no run with its process gone")


defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=CHECKS,
                      jobs=[theme_independent, theme_assets, sparkle_main, refilter, train_editor, bench, bench_report],
                      schedules=[nightly_refilter],
                      sensors=[theme_taxonomy, training_configs, editor_retraining, dead_runs],
                      resources={**default_resources(), **bench_resources(), **evaluation_resources()})
