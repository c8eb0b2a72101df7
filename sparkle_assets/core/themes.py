"""The `theme` dynamic partition and the sensor that keeps it in step with the taxonomy files, with the
two helpers every file-backed partition uses (`register_new`, `new_partitions`; also `run_config`).

Adding a theme is adding `<themes dir>/<name>.yaml`: the `theme_taxonomy` sensor validates every
file and registers a partition for each new valid one (it never deletes partitions, so removing a
file loses no history). A backfill of the theme assets for that partition then builds that theme
only; the theme-independent assets are not part of it. Invalid files are reported, with the file and
field, in the sensor's skip message and log.

A partition name is untrusted (anyone with the UI can add one) and names files: `check_theme_name`
is the one validator, applied where a name enters (the stage wrapper for every per-theme asset, the
theme resource, the sensor, the nightly schedule and `sparkle run --theme`).
"""

import dagster as dg

from sparkle_model.taxonomy import NAME_RE

from .config import ConfigError
from .resources import ThemesResource

theme_partitions = dg.DynamicPartitionsDefinition(name="theme")
MAX_THEME_NAME = 64


class ThemeNameError(ConfigError):
    """A theme partition name that is not a taxonomy name."""


def theme_name_problem(name: object) -> str | None:
    """Why `name` cannot be a theme partition, or None if it can."""
    if isinstance(name, str) and len(name) <= MAX_THEME_NAME and NAME_RE.fullmatch(name):
        return None
    return (f"invalid theme partition name {name!r}: a theme is named like its taxonomy file (lower-case "
            f"letters, digits and _, starting with a letter, at most {MAX_THEME_NAME} characters), so nothing is "
            "read or written for it; delete the partition (UI: a theme asset > Partitions) or add a taxonomy "
            "file with a valid name")


def check_theme_name(name: object) -> str:
    """`name` if it is a valid theme partition name, else a ThemeNameError saying why."""
    problem = theme_name_problem(name)
    if problem:
        raise ThemeNameError(problem)
    return name


def invalid_partitions(instance: dg.DagsterInstance) -> list[str]:
    """Registered theme partitions whose names are invalid (added by hand in the UI)."""
    return [k for k in instance.get_dynamic_partitions(theme_partitions.name) if theme_name_problem(k)]


def register_new(instance: dg.DagsterInstance, partitions: dg.DynamicPartitionsDefinition,
                 valid: list[str]) -> list[str]:
    """Add a partition for every valid name that has none (what a file-backed partition's sensor
    does, for a command that runs without the daemon); returns the names added."""
    added = sorted(set(valid) - set(instance.get_dynamic_partitions(partitions.name)))
    if added:
        instance.add_dynamic_partitions(partitions.name, added)
    return added


def new_partitions(context: dg.SensorEvaluationContext, partitions: dg.DynamicPartitionsDefinition,
                   valid: list[str], problems: list[str], files: str):
    """The tick of a sensor that keeps `partitions` in step with a folder of `files` (a partition per
    valid file, none ever deleted, so removing a file loses no history): the new ones as a request,
    recorded with the tick, and every problem logged and named in the skip message."""
    existing = set(context.instance.get_dynamic_partitions(partitions.name))
    added = sorted(set(valid) - existing)
    for problem in problems:
        context.log.error(problem)
    if not added:
        invalid = f"; invalid: {'; '.join(problems)}" if problems else ""
        return dg.SkipReason(f"no new {files} ({len(existing)} registered){invalid}")
    context.log.info(f"registering {partitions.name} partitions: {', '.join(added)}")
    return dg.SensorResult(dynamic_partitions_requests=[partitions.build_add_request(added)])


def register_themes(instance: dg.DagsterInstance, themes: ThemesResource) -> tuple[list[str], dict[str, str]]:
    """Add a partition for every valid theme file (what the sensor does; used by `sparkle run`)."""
    valid, errors = themes.load()
    return register_new(instance, theme_partitions, valid), errors


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Registers a `theme` partition for every valid taxonomy file in the themes directory.")
def theme_taxonomy(context: dg.SensorEvaluationContext, themes: ThemesResource):
    valid, errors = themes.load()
    problems = [f"invalid theme file: {m}" for m in errors.values()]
    problems += [theme_name_problem(name) for name in invalid_partitions(context.instance)]
    return new_partitions(context, theme_partitions, valid, problems, "theme files")
