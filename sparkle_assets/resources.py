"""Dagster resources: the project home (artifact store + lineage DB), sources, and the executor.

Defaults come from environment variables so that the CLI, `dagster dev` and tests agree:

- ``SPARKLE_HOME``: project home, default ``./.sparkle`` (store, lineage DB, Dagster storage);
- ``SPARKLE_SOURCE_FOLDERS`` / ``SPARKLE_SOURCE_CSVS``: ``os.pathsep``-separated folders of videos
  and Sparkle / Kiwi-Edit CSVs;
- ``SPARKLE_BUNDLED``: ``1`` (default) to include the footage bundled with installed packages;
- ``SPARKLE_EXECUTOR`` (``process_pool`` or ``in_process``) and ``SPARKLE_WORKERS``;
- ``SPARKLE_MASK_BACKEND`` (``classical`` or ``sam2``), ``SPARKLE_SAM2_CHECKPOINT``,
  ``SPARKLE_SAM2_CONFIG``, ``SPARKLE_DEVICE``.
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


class MaskBackendResource(dg.ConfigurableResource):
    """The BAIT backend of `foreground_masks`: `classical` (CPU, no downloads: MediaPipe person
    segmentation + background subtraction) or `sam2` (the sam2 video predictor; `sam2_checkpoint`
    is a local .pt file matching `sam2_config`). `random_weights` is for tests only."""

    backend: str = "classical"
    sam2_checkpoint: str = ""
    sam2_config: str = "configs/sam2.1/sam2.1_hiera_t.yaml"
    sam2_image_size: int = 0  # 0: the config's own (1024)
    device: str = "cpu"
    random_weights: bool = False

    def settings(self) -> dict:
        """The backend's settings (part of every mask's artifact id); ValueError when unusable."""
        if self.backend == "classical":
            return {"name": "classical"}
        if self.backend != "sam2":
            raise ValueError(f"mask_backend.backend must be 'classical' or 'sam2', got {self.backend!r}")
        if not self.random_weights and not Path(self.sam2_checkpoint or "").is_file():
            raise ValueError("mask_backend.backend is 'sam2' but mask_backend.sam2_checkpoint "
                             f"({self.sam2_checkpoint or 'unset'}) is not a file: set it, or env "
                             "SPARKLE_SAM2_CHECKPOINT, to a local SAM 2.1 checkpoint (.pt)")
        return {"name": "sam2", "checkpoint": self.sam2_checkpoint or None, "config": self.sam2_config,
                "image_size": self.sam2_image_size or None, "device": self.device,
                "random_weights": self.random_weights}

    @staticmethod
    def build(settings: dict):
        """A backend object from `settings()` (called in executor workers)."""
        if settings["name"] == "classical":
            from sparkle_model.foreground import ClassicalBackend

            return ClassicalBackend()
        from sparkle_model.sam2_tracker import Sam2Backend

        return Sam2Backend(settings["checkpoint"], settings["config"], settings["device"],
                           settings["image_size"], settings["random_weights"])


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
        "mask_backend": MaskBackendResource(
            backend=os.environ.get("SPARKLE_MASK_BACKEND", "classical"),
            sam2_checkpoint=os.environ.get("SPARKLE_SAM2_CHECKPOINT", ""),
            sam2_config=os.environ.get("SPARKLE_SAM2_CONFIG", "configs/sam2.1/sam2.1_hiera_t.yaml"),
            device=os.environ.get("SPARKLE_DEVICE", "cpu")),
    }
