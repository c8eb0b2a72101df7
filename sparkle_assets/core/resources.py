"""Dagster resources: the project home (artifact store + lineage DB), sources, and the executor.

Defaults come from environment variables so that the CLI, `dagster dev` and tests agree:

- ``SPARKLE_HOME``: project home, default ``./.sparkle`` (store, lineage DB, Dagster storage);
- ``SPARKLE_SOURCE_FOLDERS`` / ``SPARKLE_SOURCE_CSVS`` / ``SPARKLE_SOURCE_RELEASES``:
  ``os.pathsep``-separated folders of videos, Sparkle / Kiwi-Edit CSVs and Sparkle release folders;
- ``SPARKLE_BUNDLED``: ``1`` (default) to include the footage bundled with installed packages;
- ``SPARKLE_EXECUTOR`` (``process_pool``, ``in_process`` or ``ray``), ``SPARKLE_WORKERS`` and
  ``SPARKLE_TORCH_THREADS`` (torch/BLAS threads per worker, default 1); for Ray
  ``SPARKLE_RAY_ADDRESS`` (environment only; unset: a local cluster), ``SPARKLE_RAY_CPUS`` per clip and
  ``SPARKLE_RAY_GPUS`` per clip of a model stage (default 1 when ``SPARKLE_DEVICE`` is CUDA, else 0);
- ``SPARKLE_CLIP_TIME_LIMIT`` (seconds a clip may take in a stage, default 1800) and
  ``SPARKLE_CLIP_TIME_LIMITS`` (per stage: ``edited_videos=3600,pair_scores=600``);
- ``SPARKLE_MASK_BACKEND`` (``classical`` or ``sam2``), ``SPARKLE_SAM2_CHECKPOINT``, ``SPARKLE_DEVICE``;
  ``SPARKLE_SAM2_CONFIG`` and ``SPARKLE_SAM2_RANDOM_WEIGHTS`` are read from the environment only;
- ``SPARKLE_GROUNDING`` (``classical``, ``vlm`` or ``detector``), ``SPARKLE_DETECTOR_DIR``,
  ``SPARKLE_DETECTOR_VOCABULARY`` (comma-separated);
- ``SPARKLE_LINEAGE`` (``duckdb``, default, or ``ducklake``), ``SPARKLE_LINEAGE_CATALOG``,
  ``SPARKLE_LINEAGE_DATA`` (core.lineage.open_lineage; environment only);
- ``SPARKLE_THEMES_DIR``: the theme taxonomy files (default: ``themes/`` next to the packages);
- ``SPARKLE_VLM_BACKEND`` (``none``, ``endpoint`` or ``local``), ``SPARKLE_VLM_MODEL``,
  ``SPARKLE_VLM_MODEL_DIR``; the endpoint itself (``SPARKLE_VLM_URL``, ``SPARKLE_VLM_API_KEY_ENV``,
  ``SPARKLE_VLM_AZURE_API_VERSION``) is read from the environment only, never from run config;
- ``SPARKLE_EDIT_BACKEND`` (``builtin`` or ``diffusers``), ``SPARKLE_EDIT_MODEL_DIR``,
  ``SPARKLE_EDIT_SCORER`` (``automatic`` or ``vlm``);
- ``SPARKLE_VIDEO_BACKEND`` (``procedural`` or ``diffusers``), ``SPARKLE_VIDEO_MODEL_DIR``;
- ``SPARKLE_FINAL_BACKEND`` (``composite`` or ``diffusers``), ``SPARKLE_FINAL_MODEL_DIR``;
- ``SPARKLE_LPIPS_BACKBONE`` (AlexNet state dict file), ``SPARKLE_CLIP_DIR`` (CLIP model directory).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar

import dagster as dg

from sparkle_model.grounding import DEFAULT_VOCABULARY
from sparkle_model.taxonomy import Theme, TaxonomyError, load_taxonomy, parse_theme
from sparkle_model.vlm import endpoint_settings

from .config import ConfigError, Range
from .executor import ClipExecutor, make_executor
from .lineage import Lineage, open_lineage
from .sources import SourceItem, discover
from .store import ArtifactStore, contained

DEFAULT_CLIP_TIME_LIMIT_S = 1800.0

SAM2_DEFAULT_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def project_home() -> str:
    return str(Path(os.environ.get("SPARKLE_HOME", ".sparkle")).expanduser().resolve())


def env_list(name: str) -> list[str]:
    return [p for p in os.environ.get(name, "").split(os.pathsep) if p.strip()]


def env_int(name: str, default: int) -> int:
    """An integer setting from the environment; ConfigError naming it when it is not one."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


class ArtifactStoreResource(dg.ConfigurableResource):
    """The content-addressed artifact store under `<home>/store`."""

    home: str

    def store(self) -> ArtifactStore:
        return ArtifactStore(Path(self.home) / "store")


class LineageResource(dg.ConfigurableResource):
    """The lineage of the home: the DuckDB file `<home>/lineage.duckdb`, or a DuckLake with
    `SPARKLE_LINEAGE=ducklake` (core.lineage.open_lineage; environment only)."""

    home: str

    def lineage(self) -> Lineage:
        return open_lineage(self.home)


class SourcesResource(dg.ConfigurableResource):
    """Where source videos come from (see sources.py)."""

    folders: list[str] = []
    csv_files: list[str] = []
    releases: list[str] = []  # Sparkle release folders (with prompts/{theme}_train.csv)
    bundled: bool = True

    def discover(self) -> list[SourceItem]:
        return discover(self.folders, self.csv_files, self.bundled, self.releases)


class ClipExecutorResource(dg.ConfigurableResource):
    """How per-clip work runs inside a step: `in_process`, `process_pool` with `workers`, or `ray`
    (core.ray_executor): the cluster at env `SPARKLE_RAY_ADDRESS` (environment only: run config cannot
    send clips elsewhere), else a local cluster with `workers` CPUs; `ray_cpus` per clip, and
    `ray_gpus` per clip of the model stages (pool `gpu`). `threads`: torch's (and BLAS's) threads in
    each pool worker, or in the step's process for `in_process` (default 1: with a worker per core,
    more threads only compete; pyiqa's FSIM takes about 15x longer with 2 than with 1).

    Stragglers: a clip that takes longer than `clip_time_limit_s` in one stage (env
    `SPARKLE_CLIP_TIME_LIMIT`, default 1800 s, generous for the CPU backends), or than its stage's
    entry in `stage_time_limits` (env `SPARKLE_CLIP_TIME_LIMITS`, e.g. `edited_videos=3600,pair_scores=600`),
    is stopped and recorded failed `timed out after N s` (the in-process executor does not enforce it).
    Limits must be between 1 s and 1 day."""

    THREADS: ClassVar[Range] = Range(1, 256)
    kind: str = "process_pool"
    workers: int = 2
    threads: int = 1
    ray_cpus: float = 1.0
    ray_gpus: float = 0.0
    clip_time_limit_s: float = DEFAULT_CLIP_TIME_LIMIT_S
    stage_time_limits: str = ""

    def time_limits(self) -> dict[str, float]:
        """stage name -> seconds ("*": every other stage); ConfigError naming the bad entry."""
        limits = {"*": self.clip_time_limit_s}
        for entry in filter(None, (e.strip() for e in self.stage_time_limits.split(","))):
            stage, _, seconds = entry.partition("=")
            try:
                limits[stage.strip()] = float(seconds)
            except ValueError:
                raise ConfigError(f"clip_executor.stage_time_limits: {entry[:80]!r} is not STAGE=SECONDS") from None
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,63}", stage.strip()):
                raise ConfigError(f"clip_executor.stage_time_limits: {stage.strip()[:80]!r} is not a stage name")
        return limits

    def executor(self) -> ClipExecutor:
        if self.threads not in self.THREADS:
            raise ConfigError(f"clip_executor.threads (SPARKLE_TORCH_THREADS) must be {self.THREADS}, "
                              f"got {self.threads}")
        executor = make_executor(self.kind, self.workers, self.threads, ray_address=os.environ.get("SPARKLE_RAY_ADDRESS"),
                                 ray_cpus=self.ray_cpus, ray_gpus=self.ray_gpus)
        try:
            return executor.with_time_limits(self.time_limits())
        except ValueError as exc:
            raise ConfigError(f"clip_executor: {exc}") from None


class MaskBackendResource(dg.ConfigurableResource):
    """The BAIT backend of `foreground_masks`: `classical` (CPU, no downloads: MediaPipe person
    segmentation + background subtraction) or `sam2` (the sam2 video predictor; `sam2_checkpoint`
    is a local .pt file, loaded weights-only). The model's YAML config names classes to build, so it
    is not a field (run config can set fields from the UI): `SPARKLE_SAM2_CONFIG` names it (default
    the packaged sam2.1 hiera-t), and `SPARKLE_SAM2_RANDOM_WEIGHTS=1` (tests only) builds random weights.

    `grounding` says where the boxes come from: `classical` (the backend's own evidence), `vlm` (the
    paper's two rounds through the `vlm` resource's model) or `detector` (an OWLv2 / Grounding DINO
    directory `detector_dir`, prompted with `person` plus `detector_vocabulary`)."""

    backend: str = "classical"
    sam2_checkpoint: str = ""
    sam2_image_size: int = 0  # 0: the config's own (1024)
    device: str = "cpu"
    grounding: str = "classical"
    detector_dir: str = ""
    detector_vocabulary: list[str] = list(DEFAULT_VOCABULARY)
    detector_threshold: float = 0.3

    def grounding_settings(self, vlm: dict) -> dict:
        """The grounding's settings (part of every grounding record's id, so of every mask's);
        `vlm` is the vlm resource's settings. ConfigError, naming the setting, when unusable."""
        if self.grounding == "classical":
            return {"name": "classical"}
        if self.grounding == "vlm":
            if vlm["name"] == "none":
                raise ConfigError("mask_backend.grounding is 'vlm' but vlm.backend is 'none': set "
                                  "SPARKLE_VLM_BACKEND=endpoint (SPARKLE_VLM_URL, SPARKLE_VLM_MODEL) or local "
                                  "(SPARKLE_VLM_MODEL_DIR)")
            return {"name": "vlm", "vlm": vlm}
        if self.grounding != "detector":
            raise ConfigError("mask_backend.grounding must be 'classical', 'vlm' or 'detector', "
                              f"got {self.grounding!r}")
        if not (Path(self.detector_dir or "") / "config.json").is_file():
            raise ConfigError(f"mask_backend.grounding is 'detector' but mask_backend.detector_dir "
                              f"({self.detector_dir or 'unset'}) is not a transformers model directory: set it (or "
                              "SPARKLE_DETECTOR_DIR) to a local OWLv2 or Grounding DINO model")
        if not 0 <= self.detector_threshold <= 1:
            raise ConfigError(f"mask_backend.detector_threshold must be in [0, 1], got {self.detector_threshold}")
        vocabulary = [" ".join(v.split())[:60] for v in self.detector_vocabulary if v.strip()][:64]
        return {"name": "detector", "model_dir": self.detector_dir, "vocabulary": vocabulary,
                "threshold": self.detector_threshold, "device": self.device}

    def settings(self) -> dict:
        """The backend's settings (part of every mask's artifact id); ConfigError when unusable."""
        if self.backend == "classical":
            return {"name": "classical"}
        if self.backend != "sam2":
            raise ConfigError(f"mask_backend.backend must be 'classical' or 'sam2', got {self.backend!r}")
        random_weights = os.environ.get("SPARKLE_SAM2_RANDOM_WEIGHTS") == "1"
        if not random_weights and not Path(self.sam2_checkpoint or "").is_file():
            raise ConfigError("mask_backend.backend is 'sam2' but mask_backend.sam2_checkpoint "
                             f"({self.sam2_checkpoint or 'unset'}) is not a file: set it, or env "
                             "SPARKLE_SAM2_CHECKPOINT, to a local SAM 2.1 checkpoint (.pt)")
        return {"name": "sam2", "checkpoint": self.sam2_checkpoint or None,
                "config": os.environ.get("SPARKLE_SAM2_CONFIG") or SAM2_DEFAULT_CONFIG,
                "image_size": self.sam2_image_size or None, "device": self.device, "random_weights": random_weights}


def default_themes_dir() -> str:
    return os.environ.get("SPARKLE_THEMES_DIR") or str(Path(__file__).resolve().parents[2] / "themes")


class ThemesResource(dg.ConfigurableResource):
    """The theme taxonomy: one YAML file per theme (and per `theme` partition) in `directory`."""

    directory: str

    def load(self) -> tuple[dict[str, Theme], dict[str, str]]:
        return load_taxonomy(self.directory)

    def theme(self, name: str) -> Theme:
        from .themes import check_theme_name  # themes.py imports this module

        path = contained(self.directory, f"{check_theme_name(name)}.yaml")
        if not path.is_file():
            raise TaxonomyError(path, "", f"no taxonomy file for theme partition {name!r}")
        return parse_theme(path)


class VlmResource(dg.ConfigurableResource):
    """The vision-language model that writes instructions and scores edits: `none` (templates and
    automatic scores), `endpoint` (an OpenAI-compatible endpoint serving `model`) or `local`
    (transformers, `model_dir`). Where the endpoint is and which variable holds its key are NOT
    fields (run config can set fields from the UI): `sparkle_model.vlm.endpoint_settings` reads them
    from the environment (``SPARKLE_VLM_URL``, ``SPARKLE_VLM_API_KEY_ENV``, ``SPARKLE_VLM_AZURE_API_VERSION``)."""

    backend: str = "none"
    model: str = ""
    model_dir: str = ""
    device: str = "cpu"

    def settings(self) -> dict:
        if self.backend == "none":
            return {"name": "none"}
        if self.backend == "endpoint":
            endpoint = endpoint_settings()
            if not endpoint["base_url"] or not self.model:
                raise ConfigError("vlm.backend is 'endpoint' but the endpoint (env SPARKLE_VLM_URL) or vlm.model "
                                 "(env SPARKLE_VLM_MODEL) is not set")
            return {"name": "endpoint", "model": self.model, **endpoint}
        if self.backend == "local":
            if not Path(self.model_dir or "").is_dir():
                raise ConfigError(f"vlm.backend is 'local' but vlm.model_dir ({self.model_dir or 'unset'}) is not a "
                                 "directory: set it (or SPARKLE_VLM_MODEL_DIR) to a local vision-language model")
            return {"name": "local", "model_dir": self.model_dir, "device": self.device}
        raise ConfigError(f"vlm.backend must be 'none', 'endpoint' or 'local', got {self.backend!r}")


class PipelineBackendResource(dg.ConfigurableResource):
    """What every generative step's backend resource has: a built-in CPU backend (`BUILTIN`) or
    `diffusers`, a pipeline directory loaded with local_files_only, and its run settings."""

    BUILTIN: ClassVar[str] = "builtin"
    OWNER: ClassVar[str] = "backend"

    backend: str = "builtin"
    model_dir: str = ""
    device: str = "cpu"
    dtype: str = "float32"
    steps: int = 30
    guidance: float = 4.0
    max_side: int = 832
    offload: bool = False

    def settings(self) -> dict:
        if self.backend == self.BUILTIN:
            return {"name": self.BUILTIN}
        if self.backend != "diffusers":
            raise ConfigError(f"{self.OWNER}.backend must be '{self.BUILTIN}' or 'diffusers', got {self.backend!r}")
        if not (Path(self.model_dir or "") / "model_index.json").is_file():
            raise ConfigError(f"{self.OWNER}.backend is 'diffusers' but {self.OWNER}.model_dir "
                             f"({self.model_dir or 'unset'}) is not a diffusers pipeline directory (no "
                             "model_index.json): set it to a local model copy")
        return {"name": "diffusers", "model_dir": self.model_dir, "device": self.device, "dtype": self.dtype,
                "steps": self.steps, "guidance": self.guidance, "max_side": self.max_side, "offload": self.offload}


class EditBackendResource(PipelineBackendResource):
    """First-frame edit and foreground erase: `builtin` (procedural scenes / graded clean plates,
    CPU) or `diffusers` (an image-edit or inpainting pipeline in `model_dir`, e.g. FLUX.2-klein).
    `scorer`: `automatic` (edit_scores.py) or `vlm` (EditScore-style, needs the vlm resource)."""

    OWNER: ClassVar[str] = "edit_backend"

    steps: int = 28
    max_side: int = 1024
    scorer: str = "automatic"

    def settings(self) -> dict:
        if self.scorer not in ("automatic", "vlm"):
            raise ConfigError(f"edit_backend.scorer must be 'automatic' or 'vlm', got {self.scorer!r}")
        return {**super().settings(), "scorer": self.scorer}


class VideoBackendResource(PipelineBackendResource):
    """Background image-to-video: `procedural` (scene-aware animation, CPU) or `diffusers` (an
    image-to-video pipeline in `model_dir`, e.g. Wan2.2-I2V)."""

    BUILTIN: ClassVar[str] = "procedural"
    OWNER: ClassVar[str] = "video_backend"

    backend: str = "procedural"
    steps: int = 40
    guidance: float = 3.5


class FinalBackendResource(PipelineBackendResource):
    """The final edited video: `composite` (harmonised matte composite over the background video,
    CPU) or `diffusers` (a Wan-VACE-class control-video pipeline in `model_dir`, driven by the
    guidance video and the edited first frame)."""

    BUILTIN: ClassVar[str] = "composite"
    OWNER: ClassVar[str] = "final_backend"

    backend: str = "composite"
    guidance: float = 5.0


class MetricModelsResource(dg.ConfigurableResource):
    """Optional local models for pair metrics: `lpips_backbone` (a torchvision AlexNet state dict
    file, enables `fg_lpips`) and `clip_dir` (a transformers CLIP directory, enables `clip_score`).
    Unset, those metrics are reported missing."""

    lpips_backbone: str = ""
    clip_dir: str = ""

    def settings(self) -> dict:
        if self.lpips_backbone and not Path(self.lpips_backbone).is_file():
            raise ConfigError(f"metric_models.lpips_backbone ({self.lpips_backbone}) is not a file: set it to a "
                             "torchvision AlexNet state dict (alexnet-owt-7be5be79.pth) or leave it empty")
        if self.clip_dir and not (Path(self.clip_dir) / "config.json").is_file():
            raise ConfigError(f"metric_models.clip_dir ({self.clip_dir}) has no config.json: set it to a local "
                             "transformers CLIP model directory or leave it empty")
        return {"lpips_backbone": self.lpips_backbone, "clip_dir": self.clip_dir}


def default_resources() -> dict[str, dg.ConfigurableResource]:
    home = project_home()
    return {
        "artifact_store": ArtifactStoreResource(home=home),
        "lineage": LineageResource(home=home),
        "sources": SourcesResource(folders=env_list("SPARKLE_SOURCE_FOLDERS"),
                                   csv_files=env_list("SPARKLE_SOURCE_CSVS"),
                                   releases=env_list("SPARKLE_SOURCE_RELEASES"),
                                   bundled=os.environ.get("SPARKLE_BUNDLED", "1") != "0"),
        "clip_executor": ClipExecutorResource(
            kind=os.environ.get("SPARKLE_EXECUTOR", "process_pool"), workers=int(os.environ.get("SPARKLE_WORKERS", "2")),
            threads=env_int("SPARKLE_TORCH_THREADS", 1),
            ray_cpus=float(os.environ.get("SPARKLE_RAY_CPUS", "1")),
            clip_time_limit_s=float(os.environ.get("SPARKLE_CLIP_TIME_LIMIT", DEFAULT_CLIP_TIME_LIMIT_S)),
            stage_time_limits=os.environ.get("SPARKLE_CLIP_TIME_LIMITS", ""),
            ray_gpus=float(os.environ.get("SPARKLE_RAY_GPUS",
                                          "1" if os.environ.get("SPARKLE_DEVICE", "cpu").startswith("cuda") else "0"))),
        "mask_backend": MaskBackendResource(
            backend=os.environ.get("SPARKLE_MASK_BACKEND", "classical"),
            sam2_checkpoint=os.environ.get("SPARKLE_SAM2_CHECKPOINT", ""),
            device=os.environ.get("SPARKLE_DEVICE", "cpu"),
            grounding=os.environ.get("SPARKLE_GROUNDING", "classical"),
            detector_dir=os.environ.get("SPARKLE_DETECTOR_DIR", ""),
            detector_vocabulary=[v for v in os.environ.get("SPARKLE_DETECTOR_VOCABULARY", "").split(",") if v.strip()]
            or list(DEFAULT_VOCABULARY)),
        "themes": ThemesResource(directory=default_themes_dir()),
        "vlm": VlmResource(backend=os.environ.get("SPARKLE_VLM_BACKEND", "none"),
                           model=os.environ.get("SPARKLE_VLM_MODEL", ""),
                           model_dir=os.environ.get("SPARKLE_VLM_MODEL_DIR", ""),
                           device=os.environ.get("SPARKLE_DEVICE", "cpu")),
        "edit_backend": EditBackendResource(backend=os.environ.get("SPARKLE_EDIT_BACKEND", "builtin"),
                                            model_dir=os.environ.get("SPARKLE_EDIT_MODEL_DIR", ""),
                                            scorer=os.environ.get("SPARKLE_EDIT_SCORER", "automatic"),
                                            device=os.environ.get("SPARKLE_DEVICE", "cpu")),
        "video_backend": VideoBackendResource(backend=os.environ.get("SPARKLE_VIDEO_BACKEND", "procedural"),
                                              model_dir=os.environ.get("SPARKLE_VIDEO_MODEL_DIR", ""),
                                              device=os.environ.get("SPARKLE_DEVICE", "cpu")),
        "final_backend": FinalBackendResource(backend=os.environ.get("SPARKLE_FINAL_BACKEND", "composite"),
                                              model_dir=os.environ.get("SPARKLE_FINAL_MODEL_DIR", ""),
                                              device=os.environ.get("SPARKLE_DEVICE", "cpu")),
        "metric_models": MetricModelsResource(lpips_backbone=os.environ.get("SPARKLE_LPIPS_BACKBONE", ""),
                                              clip_dir=os.environ.get("SPARKLE_CLIP_DIR", "")),
    }
