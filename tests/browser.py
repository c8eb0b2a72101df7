"""What the browser tests share: Chromium and Playwright (or a skip saying which is missing), and a
Dagster webserver on a free loopback port for the length of a `with` block."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("no Chromium here (Debian's `chromium` package; scripts/setup.sh installs it when run as root)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("the `playwright` package is not installed (pip install -r requirements.txt)")
    return found


@contextlib.contextmanager
def dagster_webserver(env: dict, cwd: Path = REPO, timeout: float = 60) -> Iterator[str]:
    """`dagster_webserver` on the repository's workspace with `env`; yields its base URL once it
    answers, and stops its process group after the block."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "dagster_webserver", "-w", str(REPO / "workspace.yaml"),
                               "-h", "127.0.0.1", "-p", str(port)], cwd=cwd, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(base + "/server_info", timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "the webserver did not start"
                time.sleep(0.5)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
