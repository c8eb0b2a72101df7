"""The `run_config` dynamic partition: one training configuration per YAML file.

A training configuration is a file `<training dir>/<name>.yaml` (default `training/`, or
`SPARKLE_TRAINING_DIR`) whose fields are `TrainingConfig`'s; the file name is the partition key of
`editor_checkpoint` and `editor_outputs`. The `training_configs` sensor registers a partition for each
new valid file (never deleting one); `sparkle train` registers them too. A file with an unknown
field, a value out of range or a bad name is refused with the file and the field.
"""


import re
from pathlib import Path
from typing import ClassVar

import dagster as dg
import pydantic
import yaml

from ..core.config import ConfigError, Range, StageConfig
from .trainer import EditorTrainerResource

run_config_partitions = dg.DynamicPartitionsDefinition(name="run_config")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # partition keys are file names and folder names
MAX_FILE_BYTES = 64 << 10
BACKENDS = ("tiny", "lora", "kiwi_edit")


class TrainingConfig(StageConfig):
    """What to train and how (see training/*.yaml for commented examples).

    All backends: `backend`, `themes` (theme -> sampling weight; empty: every theme, every row alike),
    `learning_rate`, `weight_decay`, `save_every`, `seed`, `height`, `width`, `frames` (the training
    clip size), `inference_steps` and `guidance` (editor_outputs).
    tiny and lora: `steps`, `batch_size`, `shift` (flow-matching noise shift), `text_length`.
    tiny: `layers`, `heads`, `head_dim`, `ffn_dim`, `pixel_factor` (space-to-depth latents),
    `text_encoder` (minilm, hashed or auto).
    lora: `lora_rank`, `lora_alpha`, `dtype` (base weights), `mixed_precision`, `gradient_checkpointing`.
    kiwi_edit: `epochs`, `kiwi_args` (appended to train.py's command line: model paths, trainable
    models, LoRA settings, `--checkpoint` of the stage-2 weights), `kiwi_launch_args` (accelerate's flags),
    `inference_frames` (demo.py's --max_frame).
    """

    RANGES: ClassVar[dict[str, Range]] = {
        "steps": Range(1, 10_000_000), "epochs": Range(1, 100_000), "batch_size": Range(1, 4096),
        "learning_rate": Range(0, 1, lo_open=True), "weight_decay": Range(0, 1), "save_every": Range(1),
        "seed": Range(0, 2**31 - 1), "height": Range(16, 4096), "width": Range(16, 4096), "frames": Range(1, 1024),
        "shift": Range(0, 100, lo_open=True), "text_length": Range(1, 1024), "layers": Range(1, 256),
        "heads": Range(1, 256), "head_dim": Range(6, 1024), "ffn_dim": Range(1, 1 << 16), "pixel_factor": Range(1, 32),
        "lora_rank": Range(1, 4096), "lora_alpha": Range(0, 1e6, lo_open=True), "inference_steps": Range(1, 1000),
        "guidance": Range(1, 50), "inference_frames": Range(1, 1024)}

    backend: str = "tiny"
    themes: dict[str, float] = {}
    steps: int = 200
    epochs: int = 1
    batch_size: int = 2
    learning_rate: float = 5e-4
    weight_decay: float = 0.0
    save_every: int = 50
    seed: int = 0
    height: int = 64
    width: int = 112
    frames: int = 9
    shift: float = 3.0
    text_encoder: str = "auto"
    text_length: int = 64
    layers: int = 2
    heads: int = 4
    head_dim: int = 32
    ffn_dim: int = 256
    pixel_factor: int = 8
    lora_rank: int = 32
    lora_alpha: float = 32.0
    dtype: str = "bfloat16"
    mixed_precision: str = "bf16"
    gradient_checkpointing: bool = True
    kiwi_args: list[str] = []
    kiwi_launch_args: list[str] = []
    inference_steps: int = 8
    guidance: float = 1.0
    inference_frames: int = 81

    def problems(self) -> list[str]:
        found = []
        if self.backend not in BACKENDS:
            found.append(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.text_encoder not in ("auto", "minilm", "hashed"):
            found.append(f"text_encoder must be auto, minilm or hashed, got {self.text_encoder!r}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            found.append(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            found.append(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        for theme, weight in self.themes.items():
            if not NAME_RE.match(theme) or not weight > 0:
                found.append(f"themes: {theme!r}: {weight} (need a theme name and a weight > 0)")
        multiple = {"tiny": 2 * self.pixel_factor, "lora": 16}.get(self.backend, 1)  # Kiwi-Edit resizes itself
        if self.height % multiple or self.width % multiple:
            found.append(f"height and width must be multiples of {multiple} for backend {self.backend}, "
                         f"got {self.height}x{self.width}")
        if self.backend in ("lora", "kiwi_edit") and self.frames % 4 != 1:
            found.append(f"frames must be 4k+1 for backend {self.backend} (Wan's VAE), got {self.frames}")
        return found

    def model_settings(self) -> dict:
        """The plain dict the training process gets."""
        return self.model_dump()


def load_run_config(directory: str | Path, name: str) -> TrainingConfig:
    """The checked configuration `<directory>/<name>.yaml`; ConfigError naming the file and field."""
    if not NAME_RE.match(name or ""):
        raise ConfigError(f"run_config {name!r} is not a valid name (lower-case letters, digits, - and _)")
    path = Path(directory) / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no training configuration file {path} for run_config partition {name!r} "
                          "(set SPARKLE_TRAINING_DIR, or add the file)")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of TrainingConfig fields")
    unknown = sorted(set(map(str, data)) - set(TrainingConfig.model_fields))
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {', '.join(unknown)}")
    try:
        config = TrainingConfig(**data)
    except pydantic.ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {where}") from exc
    try:
        config.check()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return config


def valid_run_configs(directory: str | Path) -> tuple[list[str], dict[str, str]]:
    """(names of the valid configuration files, errors by file name)."""
    names, errors = [], {}
    for path in sorted(Path(directory).glob("*.yaml")) if Path(directory).is_dir() else []:
        try:
            load_run_config(directory, path.stem)
            names.append(path.stem)
        except ConfigError as exc:
            errors[path.name] = str(exc)
    return names, errors


def new_run_configs(directory: str | Path, existing: set[str]) -> tuple[list[str], dict[str, str]]:
    """(valid configuration files that have no partition yet, errors by file name)."""
    names, errors = valid_run_configs(directory)
    return sorted(set(names) - existing), errors


def register_run_configs(instance: dg.DagsterInstance, directory: str | Path) -> tuple[list[str], dict[str, str]]:
    """Add a partition for every valid configuration file that has none (the sensor's work; `sparkle train`)."""
    added, errors = new_run_configs(directory, set(instance.get_dynamic_partitions(run_config_partitions.name)))
    if added:
        instance.add_dynamic_partitions(run_config_partitions.name, added)
    return added, errors


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Registers a `run_config` partition for every valid training configuration file.")
def training_configs(context: dg.SensorEvaluationContext, editor_trainer: EditorTrainerResource):
    existing = set(context.instance.get_dynamic_partitions(run_config_partitions.name))
    added, errors = new_run_configs(editor_trainer.configs_dir, existing)
    for message in errors.values():
        context.log.error(f"invalid training configuration: {message}")
    if not added:
        problems = f"; invalid: {'; '.join(errors.values())}" if errors else ""
        return dg.SkipReason(f"no new training configuration files ({len(existing)} registered){problems}")
    context.log.info(f"registering run_config partitions: {', '.join(added)}")
    return dg.SensorResult(dynamic_partitions_requests=[run_config_partitions.build_add_request(added)])
