"""The asset graph as plain data (every asset spec, check, job and schedule), and a readable diff
against the recorded snapshot in tests/snapshots/graph.json. Regenerate after an intended change:

    SPARKLE_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest tests/test_layout.py -k snapshot
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import dagster as dg

SNAPSHOT = Path(__file__).parent / "snapshots" / "graph.json"


def graph_of(defs: dg.Definitions) -> dict:
    assets = {}
    for ad in defs.assets:
        if not isinstance(ad, dg.AssetsDefinition):
            continue
        for key, spec in ad.specs_by_key.items():
            assets[key.to_user_string()] = {
                "deps": sorted(d.asset_key.to_user_string() for d in spec.deps),
                "partitions": getattr(spec.partitions_def, "name", None) or (
                    type(spec.partitions_def).__name__ if spec.partitions_def else None),
                "group": spec.group_name,
                "kinds": sorted(t.split("/")[-1] for t in spec.tags if t.startswith("dagster/kind/")),
                "pool": ad.op.pool,
                "code_version": spec.code_version,
            }
    checks = {}
    for cd in defs.asset_checks or []:
        for spec in cd.check_specs:
            checks[f"{spec.asset_key.to_user_string()}:{spec.name}"] = {"blocking": spec.blocking}
    resolved = defs.get_repository_def()
    jobs = {}
    for job in resolved.get_all_jobs():
        if job.name.startswith("__"):
            continue
        keys = sorted(k.to_user_string() for k in job.asset_layer.selected_asset_keys) if job.asset_layer else []
        jobs[job.name] = {"assets": keys, "partitioned": job.partitions_def is not None}
    schedules = {s.name: {"cron": s.cron_schedule, "job": s.job_name} for s in resolved.schedule_defs}
    sensors = sorted(s.name for s in resolved.sensor_defs)
    return {"assets": dict(sorted(assets.items())), "checks": dict(sorted(checks.items())), "jobs": jobs,
            "schedules": schedules, "sensors": sensors}


def text_of(graph: dict) -> str:
    return json.dumps(graph, indent=1, sort_keys=True) + "\n"


def graph_diff(recorded: dict, current: dict) -> str:
    """A unified diff, recorded -> current ('' when they agree)."""
    return "".join(difflib.unified_diff(text_of(recorded).splitlines(True), text_of(current).splitlines(True),
                                        "snapshot (tests/snapshots/graph.json)", "the code location now"))
