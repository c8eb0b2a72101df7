"""Dagster's run, event and schedule storage on a real PostgreSQL server this test starts (127.0.0.1):
`sparkle --storage postgres` writes the instance config; a sensor tick, the nightly schedule's tick
and run requests, and a partition run are then recorded in PostgreSQL (read back with psycopg2).
The schedule and sensor are evaluated by the daemon's own iteration functions, at a frozen clock."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import dagster as dg
import pytest

from conftest import REPO


def test_partition_run_schedule_and_sensor_ticks_are_stored_in_postgres(pg_server, home, monkeypatch):
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.scheduler.instigation import InstigatorType, TickStatus
    from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.sensor import execute_sensor_iteration
    from dagster._scheduler.scheduler import launch_scheduled_runs
    import psycopg2

    from sparkle_assets.cli import configure_env, main
    from sparkle_assets.core.resources import default_resources
    from sparkle_assets.definitions import CHEAP_ASSETS

    database = pg_server.create_database("sparkle_dagster")
    for name, value in pg_server.env(database).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_HOME", str(REPO))  # restored after the test; configure_env moves it
    monkeypatch.setenv("SPARKLE_DAGSTER_STORAGE", "postgres")
    from sparkle_assets.core.runs import write_instance_yaml

    write_instance_yaml(configure_env(str(home)))
    config = (home / "dagster" / "dagster.yaml").read_text()
    assert "env: PGPASSWORD" in config and "concurrency" in config  # the password is not in the file

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        origin = InProcessCodeLocationOrigin(
            LoadableTargetOrigin(module_name="sparkle_assets.definitions", working_directory=str(REPO)),
            location_name="sparkle")
        logger = logging.getLogger("sparkle-test-daemon")
        with create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(origin), instance) as workspace:
            # the theme sensor's tick registers a partition per taxonomy file
            with freeze_time(datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)):
                list(execute_sensor_iteration(workspace, logger, None, None))
            # the nightly schedule: its state starts at 02:00, the 03:00 tick requests a run per theme
            for now in (datetime(2026, 11, 25, 2, 0, 30, tzinfo=timezone.utc),
                        datetime(2026, 11, 25, 3, 0, 30, tzinfo=timezone.utc)):
                with freeze_time(now):
                    list(launch_scheduled_runs(workspace, logger, now, {}))
        themes = instance.get_dynamic_partitions("theme")
        assert themes == ["location", "season", "style", "time"]
        sensor_ticks = {s.instigator_name: instance.get_ticks(s.instigator_origin_id, s.selector_id)
                        for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)}
        # every running sensor ticked once, requesting no run (SKIPPED); the theme sensor's tick records
        # the partitions it added
        assert {name: [t.status for t in ticks] for name, ticks in sensor_ticks.items()} == \
            {name: [TickStatus.SKIPPED] for name in ("theme_taxonomy", "dead_runs", "training_configs")}
        added = sensor_ticks["theme_taxonomy"][0].tick_data.dynamic_partitions_request_results
        assert [sorted(r.added_partitions) for r in added] == [themes]
        schedule_ticks = [t for s in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)
                          for t in instance.get_ticks(s.instigator_origin_id, s.selector_id)]
        assert [t.status for t in schedule_ticks] == [TickStatus.SUCCESS]
        assert len(schedule_ticks[0].run_ids) == 4
        requested = [instance.get_run_by_id(r) for r in schedule_ticks[0].run_ids]
        assert sorted(r.tags["dagster/partition"] for r in requested) == themes
        assert {r.job_name for r in requested} == {"refilter"}

        # a partition run (the cheap tail of one theme, on an empty home), stored there too
        result = dg.materialize(CHEAP_ASSETS, resources=default_resources(), partition_key="time", instance=instance)
        assert result.success

    # read back from PostgreSQL itself
    with psycopg2.connect(host=pg_server.host, port=pg_server.port, user=pg_server.user, dbname=database) as con:
        with con.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs")
            assert cur.fetchone()[0] == 5
            cur.execute("SELECT count(*) FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
                        "WHERE t.key = 'dagster/partition' AND t.value = 'time' AND r.status = 'SUCCESS'")
            assert cur.fetchone()[0] == 1
            cur.execute("SELECT type, status, count(*) FROM job_ticks GROUP BY type, status ORDER BY type")
            assert cur.fetchall() == [("SCHEDULE", "SUCCESS", 1), ("SENSOR", "SKIPPED", 3)]
            cur.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
            assert cur.fetchone()[0] == len(CHEAP_ASSETS)

    # the command line refuses an incomplete setting with one line
    monkeypatch.delenv("PGHOST")
    assert main(["--home", str(home), "--storage", "postgres", "env"]) == 2
