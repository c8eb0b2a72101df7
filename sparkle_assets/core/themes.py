"""The `theme` dynamic partition and the sensor that keeps it in step with the taxonomy files.

Adding a theme is adding `<themes dir>/<name>.yaml`: the `theme_taxonomy` sensor validates every
file and registers a partition for each new valid one (it never deletes partitions, so removing a
file loses no history). A backfill of the theme assets for that partition then builds that theme
only; the theme-independent assets are not part of it. Invalid files are reported, with the file and
field, in the sensor's skip message and log.
"""

import dagster as dg

from .resources import ThemesResource

theme_partitions = dg.DynamicPartitionsDefinition(name="theme")


def new_themes(themes: ThemesResource, existing: set[str]) -> tuple[list[str], dict[str, str]]:
    """(valid themes that have no partition yet, errors by file)."""
    valid, errors = themes.load()
    return sorted(set(valid) - existing), errors


def register_themes(instance: dg.DagsterInstance, themes: ThemesResource) -> tuple[list[str], dict[str, str]]:
    """Add a partition for every valid theme file (what the sensor does; used by `sparkle run`)."""
    added, errors = new_themes(themes, set(instance.get_dynamic_partitions(theme_partitions.name)))
    if added:
        instance.add_dynamic_partitions(theme_partitions.name, added)
    return added, errors


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Registers a `theme` partition for every valid taxonomy file in the themes directory.")
def theme_taxonomy(context: dg.SensorEvaluationContext, themes: ThemesResource):
    existing = set(context.instance.get_dynamic_partitions(theme_partitions.name))
    added, errors = new_themes(themes, existing)
    for message in errors.values():
        context.log.error(f"invalid theme file: {message}")
    if not added:
        problems = f"; invalid: {'; '.join(errors.values())}" if errors else ""
        return dg.SkipReason(f"no new theme files ({len(existing)} registered){problems}")
    context.log.info(f"registering theme partitions: {', '.join(added)}")
    return dg.SensorResult(dynamic_partitions_requests=[theme_partitions.build_add_request(added)])
