"""A throwaway PostgreSQL server for tests: `initdb` in a temporary folder, listening on 127.0.0.1
only (and a socket in that folder), stopped and deleted afterwards. Uses Debian's `postgresql`
binaries (scripts/setup.sh installs them when run as root); as root, the server runs as the
`postgres` user. `unavailable()` says why a server cannot be had here, for a clear skip."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def bindir() -> Path | None:
    """The folder with initdb and pg_ctl: Debian's newest /usr/lib/postgresql/N/bin, else PATH."""
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if debian:
        return Path(debian[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def unavailable() -> str | None:
    if bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql (scripts/setup.sh does it as root)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to run the server as (Debian's postgresql package makes it)"
    return None


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    run: object  # runs a server binary as the server's user

    def create_database(self, name: str) -> str:
        self.run(["createdb", "-h", self.host, "-p", str(self.port), "-U", self.user, name])
        return name

    def env(self, database: str) -> dict[str, str]:
        """The standard libpq variables for a database of this server (trust auth: no password)."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGDATABASE": database,
                "PGPASSWORD": ""}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def throwaway_server() -> Iterator[PgServer]:
    bins = bindir()
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    folder = tempfile.mkdtemp(prefix="sparkle-pg-")  # not pytest's tmp_path: the server's user must enter it
    if as_root:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
    data, port = os.path.join(folder, "data"), _free_port()

    def run(cmd: list[str]) -> None:
        subprocess.run(prefix + [str(bins / cmd[0]), *cmd[1:]], check=True, capture_output=True, text=True)

    try:
        run(["initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync",
             "--no-instructions"])
        run(["pg_ctl", "-D", data, "-l", os.path.join(folder, "log"), "-w", "-t", "60", "start", "-o",
             f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
             "-c full_page_writes=off -c max_connections=200"])
        yield PgServer("127.0.0.1", port, "postgres", run)
    finally:
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            subprocess.run(prefix + [str(bins / "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"],
                           capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
