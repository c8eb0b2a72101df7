"""Dagster resources: the project home (artifact store + lineage DB), sources, and the executor.

Defaults come from environment variables so that the CLI, `dagster dev` and tests agree:

- ``SPARKLE_HOME``: project home, default ``./.sparkle`` (store, lineage DB, Dagster storage);
- ``SPARKLE_SOURCE_FOLDERS`` / ``SPARKLE_SOURCE_CSVS``: ``os.pathsep``-separated folders of videos
  and Sparkle / Kiwi-Edit CSVs;
- ``SPARKLE_BUNDLED``: ``1`` (default) to include the footage bundled with installed packages;
- ``SPARKLE_EXECUTOR`` (``process_pool`` or ``in_process``) and ``SPARKLE_WORKERS``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from .executor import ClipExecutor, make_executor
from .lineage import Lineage
from .sources import SourceItem, discover
from .store import ArtifactStore


def project_home() -> str:
    return str(Path(os.environ.get("SPARKLE_HOME", ".sparkle")).expanduser().resolve())


def _env_list(name: str) -> list[str]:
    return [p for p in os.environ.get(name, "").split(os.pathsep) if p.strip()]


class ArtifactStoreResource(dg.ConfigurableResource):
    """The content-addressed artifact store under `<home>/store`."""

    home: str

    def store(self) -> ArtifactStore:
        return ArtifactStore(Path(self.home) / "store")


class LineageResource(dg.ConfigurableResource):
    """The DuckDB lineage database `<home>/lineage.duckdb`."""

    home: str

    def lineage(self) -> Lineage:
        return Lineage(Path(self.home) / "lineage.duckdb")


class SourcesResource(dg.ConfigurableResource):
    """Where source videos come from (see sources.py)."""

    folders: list[str] = []
    csv_files: list[str] = []
    bundled: bool = True

    def discover(self) -> list[SourceItem]:
        return discover(self.folders, self.csv_files, self.bundled)


class ClipExecutorResource(dg.ConfigurableResource):
    """How per-clip work runs inside a step: `in_process` or `process_pool` with `workers`."""

    kind: str = "process_pool"
    workers: int = 2

    def executor(self) -> ClipExecutor:
        return make_executor(self.kind, self.workers)


def default_resources() -> dict[str, dg.ConfigurableResource]:
    home = project_home()
    return {
        "artifact_store": ArtifactStoreResource(home=home),
        "lineage": LineageResource(home=home),
        "sources": SourcesResource(folders=_env_list("SPARKLE_SOURCE_FOLDERS"),
                                   csv_files=_env_list("SPARKLE_SOURCE_CSVS"),
                                   bundled=os.environ.get("SPARKLE_BUNDLED", "1") != "0"),
        "clip_executor": ClipExecutorResource(kind=os.environ.get("SPARKLE_EXECUTOR", "process_pool"),
                                              workers=int(os.environ.get("SPARKLE_WORKERS", "2"))),
    }
