"""Untrusted input stays contained (issue 11): each test is an attack that was tried, tried again.

Anyone who reaches the UI can add partitions and set run config; anyone who supplies files controls
video headers and YAML. These tests check that the endpoint key goes nowhere but the configured host,
that run config cannot move the endpoint, that partition names cannot leave the home, that the SQL
console cannot touch the disk, that a model YAML cannot run a command, and that caches are private.
"""

from __future__ import annotations

import json
import os

import dagster as dg
import pytest

from sparkle_model.vlm import EndpointVlm, VlmError

from test_theme_models import FakeChatServer


@pytest.mark.parametrize("status", [302, 307])
def test_endpoint_redirect_never_carries_the_key(monkeypatch, status):
    """Attack: the configured endpoint answers with a redirect to another host; the old client
    followed it (urllib follows a 302 as a GET) and sent `Authorization: Bearer <key>` there."""
    thief = FakeChatServer({"stolen": True})
    endpoint = FakeChatServer({}, redirect_to=thief.url.removesuffix("/v1"), status=status)
    monkeypatch.setenv("SPARKLE_VLM_API_KEY", "top-secret-key")
    try:
        with pytest.raises(VlmError, match="redirects are refused") as err:
            EndpointVlm(endpoint.url, "judge", retries=3, timeout=5).generate("hi", [])
    finally:
        thief.close()
        endpoint.close()
    assert [r["auth"] for r in endpoint.requests] == ["Bearer top-secret-key"]  # one request: not retried
    assert thief.requests == []  # the redirect target never saw a request, let alone the key
    assert "top-secret-key" not in str(err.value)


def test_run_config_cannot_move_the_endpoint_or_name_the_key_variable():
    """Attack: in the UI's launchpad, set `resources.vlm.config.base_url` to one's own host and
    `api_key_env` to any variable (e.g. AWS_SECRET_ACCESS_KEY) to have its value sent there."""
    from sparkle_assets.definitions import defs

    job = defs.resolve_job_def("theme_assets")
    for field, value in (("base_url", "http://attacker.example/v1"), ("api_key_env", "AWS_SECRET_ACCESS_KEY")):
        with pytest.raises(dg.DagsterInvalidConfigError, match=field):
            dg.validate_run_config(job, {"resources": {"vlm": {"config": {field: value}}}})
    dg.validate_run_config(job, {"resources": {"vlm": {"config": {"model": "judge"}}}})  # the model may be chosen


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_partition_named_like_a_path_cannot_leave_the_home(home, tmp_path, capsys):
    """Attack: in the UI, add a `theme` partition named `/some/dir/x`, then let refilter, the sensor,
    the nightly schedule or `sparkle run --theme` use it: refilter deleted files in
    `/some/dir/x/source_video/` and wrote `x.json`, `x_bench.csv`, `x_metadata.jsonl` outside the home."""
    from datetime import datetime, timezone

    from sparkle_assets import cli
    from sparkle_assets.core.resources import default_resources
    from sparkle_assets.core.themes import theme_taxonomy
    from sparkle_assets.definitions import defs, nightly_refilter

    victim = tmp_path / "some" / "dir"
    (victim / "x" / "source_video").mkdir(parents=True)
    (victim / "x" / "source_video" / "precious.mp4").write_bytes(b"not yours")
    evil = str(victim / "x")
    before = _tree(tmp_path / "some")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("theme", [evil])
        resources = default_resources()  # of the test's home (`defs` holds those of import time)
        run = defs.resolve_job_def("refilter").execute_in_process(instance=instance, partition_key=evil,
                                                                  raise_on_error=False, resources=resources)
        assert not run.success
        failures = [e for e in run.all_events if e.event_type_value == "STEP_FAILURE"]
        assert failures and all(f"invalid theme partition name {evil!r}" in e.event_specific_data.error.message
                                for e in failures)
        when = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as ctx:
            skip = nightly_refilter(ctx)
        assert isinstance(skip, dg.SkipReason) and f"invalid theme partition name {evil!r}" in skip.skip_message
        sensor = theme_taxonomy(dg.build_sensor_context(instance=instance,
                                                        resources={"themes": default_resources()["themes"]}))
        instance.add_dynamic_partitions("theme", list(sensor.dynamic_partitions_requests[0].partition_keys))
        assert evil not in sensor.dynamic_partitions_requests[0].partition_keys
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as ctx:
            requests = nightly_refilter(ctx)
        assert sorted(r.partition_key for r in requests) == ["location", "season", "style", "time"]
        skip = theme_taxonomy(dg.build_sensor_context(instance=instance,
                                                      resources={"themes": default_resources()["themes"]}))
        assert f"invalid theme partition name {evil!r}" in skip.skip_message
        # the theme resource refuses to build a taxonomy path from it
        with pytest.raises(Exception, match="invalid theme partition name"):
            default_resources()["themes"].theme("../../etc/passwd")
        # run config cannot point the export outside the home either
        export = defs.resolve_job_def("refilter").execute_in_process(
            instance=instance, partition_key="time", raise_on_error=False, resources=resources,
            run_config={"ops": {"sparkle_dataset": {"config": {"root": str(victim)}}}})
        assert not export.success
        assert any("root must be a folder inside the project home" in e.event_specific_data.error.message
                   for e in export.all_events if e.event_type_value == "STEP_FAILURE")
    assert cli.main(["--home", str(home), "run", "--theme", evil]) == 2
    assert f"invalid theme partition name {evil!r}" in capsys.readouterr().err
    assert _tree(tmp_path / "some") == before  # nothing deleted, nothing written outside the home


def test_sql_console_reads_the_lineage_tables_and_nothing_else(home, tmp_path, capsys):
    """Attack: `sparkle lineage sql` with `COPY ... TO` overwrote lineage.duckdb itself,
    `read_text('/etc/hostname')` read a file and `ATTACH` created a writable database."""
    from sparkle_assets import cli
    from sparkle_assets.core.lineage import ArtifactRow, Lineage, LineageBatch
    from sparkle_assets.core.store import file_sha256

    db = Lineage(home / "lineage.duckdb")
    db.write(LineageBatch(artifacts=[ArtifactRow(id="a1", kind="source_file", asset_key="source_clips")]))
    digest = file_sha256(db.db_path)
    attacks = [f"COPY artifact TO '{db.db_path}' (FORMAT csv)", "SELECT * FROM read_text('/etc/hostname')",
               f"ATTACH '{tmp_path / 'new.duckdb'}' AS mine", "SET enable_external_access = true",
               "INSTALL httpfs", "CREATE TABLE mine (a INT)"]
    for sql in attacks:
        assert cli.main(["--home", str(home), "lineage", "sql", sql]) == 2, sql
        err = capsys.readouterr().err.strip()
        assert err.startswith("query refused:") and "\n" not in err, (sql, err)
    assert file_sha256(db.db_path) == digest and not (tmp_path / "new.duckdb").exists()
    assert cli.main(["--home", str(home), "lineage", "sql", "SELECT id, kind FROM artifact"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[0]) == {"id": "a1", "kind": "source_file"}


def test_sam2_config_yaml_cannot_run_a_command(tmp_path):
    """Attack: a SAM2 config YAML with `_target_: os.system` ran a command; the config path and
    `random_weights` were run-config settings reachable from the UI."""
    from sparkle_assets.definitions import defs
    from sparkle_model.sam2_build import Sam2ConfigError, build_sam2

    marker = tmp_path / "pwned"
    evil = {"top": f"model:\n  _target_: os.system\n  command: touch {marker}\n",
            # nested under a real sam2 class; a class re-exported by a sam2 module; a sam2 function
            "nested": "model:\n  _target_: sam2.modeling.sam2_base.SAM2Base\n  image_encoder:\n"
                      f"    _target_: subprocess.Popen\n    args: [touch, {marker}]\n",
            "reexport": "model:\n  _target_: sam2.sam2_video_predictor.tqdm\n",
            "function": "model:\n  _target_: sam2.utils.misc.load_video_frames\n  video_path: /etc\n"}
    for name, text in evil.items():
        (tmp_path / f"{name}.yaml").write_text(text)
        with pytest.raises(Sam2ConfigError, match="not a sam2"):
            build_sam2(str(tmp_path / f"{name}.yaml"), video=False)
    assert not marker.exists()
    job = defs.resolve_job_def("theme_independent")
    for field, value in (("sam2_config", str(tmp_path / "top.yaml")), ("random_weights", True)):
        with pytest.raises(dg.DagsterInvalidConfigError, match=field):
            dg.validate_run_config(job, {"resources": {"mask_backend": {"config": {field: value}}}})


def test_niqe_ignores_a_planted_predictable_cache_file(tmp_path, monkeypatch):
    """Attack: plant `/tmp/sparkle-niqe-<uid>.mat` (world-writable, predictable) with other model
    parameters; it was trusted if present. (The temporary directory is redirected to tmp_path so no
    other process on this machine sees the planted file.)"""
    import tempfile

    import numpy as np
    import scipy.io
    import torch

    from sparkle_bench.metrics import IqaModels
    from sparkle_model import model_cache

    image = torch.from_numpy(np.random.default_rng(0).random((1, 3, 96, 128), dtype=np.float32))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model_cache.clear()
    honest = float(IqaModels().pyiqa("niqe")(image))
    planted = tmp_path / f"sparkle-niqe-{os.getuid()}.mat"
    scipy.io.savemat(str(planted), {"mu_prisparam": np.zeros((1, 36)), "cov_prisparam": np.eye(36) * 1e6})
    model_cache.clear()
    assert float(IqaModels().pyiqa("niqe")(image)) == pytest.approx(honest)
    assert [p.name for p in tmp_path.glob("sparkle*")] == [planted.name]  # and no cache file of ours
    model_cache.clear()
