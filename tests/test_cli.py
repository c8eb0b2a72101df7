"""The `sparkle` command as a user meets it: the UI without a terminal, a taken port, the lineage
console's answers, plain `dagster` without `sparkle env`, and the bundled footage without root."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from sparkle_assets.core import sources
from sparkle_assets.core.lineage import ArtifactRow, Lineage, LineageBatch

from conftest import REPO

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def sparkle(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparkle_assets.cli", *args], capture_output=True, text=True,
                          env=kw.pop("env", ENV), **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_members(sid: int) -> list[int]:
    """Live processes of session `sid` (dagster dev and everything it started)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", json.dumps({"query": query}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.integration
def test_ui_without_a_terminal_stops_on_sigterm_and_a_taken_port_fails_clearly(tmp_path):
    home, port = tmp_path / "home", free_port()
    log = open(tmp_path / "ui.log", "w")
    # started the way a script starts a background job: no terminal, SIGINT ignored
    ui = subprocess.Popen([sys.executable, "-m", "sparkle_assets.cli", "--home", str(home), "ui", "--port", str(port)],
                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=ENV,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN), start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while "sparkle ui: serving on" not in (tmp_path / "ui.log").read_text():
            assert ui.poll() is None and time.monotonic() < deadline, (tmp_path / "ui.log").read_text()[-3000:]
            time.sleep(1)
        assert _graphql(port, "{ shouldShowNux }") == {"data": {"shouldShowNux": False}}
        dev = int(Path(f"/proc/{ui.pid}/task/{ui.pid}/children").read_text().split()[0])
        assert len(session_members(dev)) >= 3  # dagster dev, its webserver, daemon, code server

        taken = sparkle("--home", str(home), "ui", "--port", str(port), timeout=60)
        assert taken.returncode == 2
        assert f"port {port} on 127.0.0.1 is already in use" in taken.stderr and "--port" in taken.stderr

        started = time.monotonic()
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(30) == 0
        assert time.monotonic() - started < 15
        time.sleep(1)
        assert session_members(dev) == []
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)
    # instance state stays in the home, none in the checkout
    assert not (REPO / ".nux").exists() and not (home / "dagster" / ".nux").exists()
    assert (home / "dagster" / "dagster.yaml").is_file() and (home / "dagster" / "history" / "runs.db").is_file()


def test_lineage_console_says_how_many_rows_and_errors_in_one_line(tmp_path):
    home = tmp_path / "home"
    batch = LineageBatch(artifacts=[ArtifactRow(id="a1", kind="clip", asset_key="source_clips", clip_id="c")])
    Lineage(home / "lineage.duckdb").write(batch)
    one = sparkle("--home", str(home), "lineage", "sql", "SELECT id FROM artifact")
    assert one.returncode == 0 and one.stdout == '{"id": "a1"}\n' and one.stderr.strip().endswith("1 row")
    none = sparkle("--home", str(home), "lineage", "sql", "SELECT id FROM artifact WHERE false")
    assert none.returncode == 0 and none.stdout == "" and none.stderr.strip().endswith("0 rows")
    bad = sparkle("--home", str(home), "lineage", "sql", "SELEC id FROM artifact")
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "syntax error" in bad.stderr and "Traceback" not in bad.stderr


def test_a_lineage_file_from_duckdb_2_names_the_conversion(tmp_path):
    # written by DuckDB 2.0.0 (the project's pin before the DuckLake backend), which 1.5 cannot read
    home = tmp_path / "home"
    home.mkdir()
    (home / "lineage.duckdb").write_bytes(gzip.decompress((REPO / "tests/data/lineage_duckdb2.duckdb.gz").read_bytes()))
    out = sparkle("--home", str(home), "lineage", "sql", "SELECT count(*) FROM artifact")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "written by a newer DuckDB" in out.stderr and f"scripts/lineage_downgrade.sh {home}" in out.stderr


def test_plain_dagster_needs_no_sparkle_env(tmp_path):
    """`dagster ...` in a checkout with nothing exported reads ./dagster.yaml and keeps the run
    history in ./.sparkle/dagster; `sparkle env` points plain commands at a home's instance."""
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    env = {k: v for k, v in ENV.items() if not k.startswith(("DAGSTER_", "SPARKLE_"))}
    validate = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                              cwd=tmp_path, env=env, capture_output=True, text=True)
    assert validate.returncode == 0, validate.stderr[-3000:]
    assert "All code locations passed validation" in validate.stderr + validate.stdout
    assert (tmp_path / ".sparkle" / "dagster" / "history" / "runs.db").is_file()

    exports = sparkle("--home", str(tmp_path / "home"), "env", env=env).stdout
    assert f"export DAGSTER_HOME={tmp_path / 'home' / 'dagster'}" in exports
    written = (tmp_path / "home" / "dagster" / "dagster.yaml").read_text()
    assert "nux" in written and "storage" not in written and "concurrency" in written


@pytest.fixture
def shared_tmp():
    """A temporary folder the unprivileged user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="sparkle-nobody-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_bundled_footage_is_had_without_root(shared_tmp, monkeypatch):
    """scripts/footage.sh run as an unprivileged user puts vtest.avi where discovery finds it."""
    if os.geteuid() != 0 or not shutil.which("runuser"):
        pytest.skip("needs root to run the step as the unprivileged user `nobody` (runuser)")
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        pytest.skip("not a Debian-based system: no apt-get/dpkg-deb to fetch opencv-doc")
    tmp_path = shared_tmp
    dest = tmp_path / "footage"
    step = subprocess.run(["runuser", "-u", "nobody", "--", str(REPO / "scripts" / "footage.sh"), "footage"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)  # relative, as setup.sh gives it
    assert step.returncode == 0, step.stderr
    if not (dest / "vtest.avi").is_file():
        pytest.skip(f"the Debian archive could not be reached: {step.stderr.strip()}")
    assert dest.stat().st_uid != 0 and (dest / "vtest.avi").stat().st_size > 1_000_000
    # discovery finds it there, with no system-wide opencv-doc
    monkeypatch.setenv("SPARKLE_FOOTAGE_DIR", str(dest))
    monkeypatch.setattr(sources, "OPENCV_DOC_DATA", tmp_path / "no-opencv-doc")
    assert [i.path for i in sources.bundled_samples() if i.clip_id == "vtest"] == [str(dest / "vtest.avi")]
