"""Build SAM 2 models from the YAML configs packaged in the `sam2` wheel, without hydra.

sam2's own builder needs hydra-core, which pins antlr4 4.9 and breaks Dagster's asset-selection
parser (dagster issue 27487); sam2 is therefore installed with --no-deps and its models are built
here: a no-op hydra stand-in for `sam2/__init__`, a safe YAML loader, and `_target_` instantiation
restricted to sam2's own model classes (a YAML naming `os.system` or any other callable is refused
before anything is built). The resulting modules and state-dict keys are identical to hydra's build.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import re
import sys
import types
from pathlib import Path

import yaml

VIDEO_PREDICTOR = "sam2.sam2_video_predictor.SAM2VideoPredictor"
POSTPROCESSING = {
    "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability": True,
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta": 0.05,
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh": 0.98,
}
VIDEO_POSTPROCESSING = {"model.binarize_mask_from_pts_for_mem_enc": True, "model.fill_hole_area": 8}


def stub_hydra() -> None:
    """Give `sam2/__init__` a no-op hydra when the real one is missing."""
    if "hydra" in sys.modules or importlib.util.find_spec("hydra") is not None:
        return
    hydra = types.ModuleType("hydra")
    core = types.ModuleType("hydra.core")
    global_hydra = types.ModuleType("hydra.core.global_hydra")

    class GlobalHydra:
        @staticmethod
        def instance():
            return GlobalHydra

        @staticmethod
        def is_initialized():
            return True

    global_hydra.GlobalHydra = GlobalHydra
    hydra.initialize_config_module = lambda *a, **k: None
    hydra.core, core.global_hydra = core, global_hydra
    sys.modules.update({"hydra": hydra, "hydra.core": core, "hydra.core.global_hydra": global_hydra})


class _Loader(yaml.SafeLoader):
    """YAML 1.2 floats (1e-6) as floats, not strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


TARGET_RE = re.compile(r"sam2(\.[A-Za-z_][A-Za-z0-9_]*)+")


class Sam2ConfigError(ValueError):
    """A SAM 2 config that names something other than one of sam2's own model classes."""


def _target_class(target: object) -> type:
    """The class a `_target_` names, if it is a torch module class defined in the sam2 package;
    a config is data, so nothing else (os.system, subprocess.Popen, builtins...) is ever called."""
    import torch

    if not isinstance(target, str) or not TARGET_RE.fullmatch(target):
        raise Sam2ConfigError(f"_target_ {target!r} is not a sam2 class (only sam2.* model classes are built)")
    module, _, name = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise Sam2ConfigError(f"_target_ {target!r} does not exist: {exc}") from None
    if not (isinstance(obj, type) and obj.__module__.startswith("sam2.") and issubclass(obj, torch.nn.Module)):
        raise Sam2ConfigError(f"_target_ {target!r} is not a sam2 model class")
    return obj


def _check_targets(node) -> None:
    """Every `_target_` in a config tree is a sam2 model class (checked before anything is built)."""
    if isinstance(node, dict):
        if "_target_" in node:
            _target_class(node["_target_"])
        for value in node.values():
            _check_targets(value)
    elif isinstance(node, list):
        for value in node:
            _check_targets(value)


def _instantiate(node):
    if isinstance(node, dict):
        node = {k: _instantiate(v) for k, v in node.items()}
        target = node.pop("_target_", None)
        return node if target is None else _target_class(target)(**node)
    if isinstance(node, list):
        return [_instantiate(v) for v in node]
    return node


def _set(cfg: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        cfg = cfg.setdefault(key, {})
    cfg[last] = value


def load_config(config_file: str) -> dict:
    """A config shipped in the sam2 package (e.g. configs/sam2.1/sam2.1_hiera_t.yaml) or a path."""
    stub_hydra()
    path = Path(config_file)
    if not path.is_file():
        spec = importlib.util.find_spec("sam2")
        path = Path(spec.origin).parent / config_file
    if not path.is_file():
        raise FileNotFoundError(f"SAM2 config not found: {config_file}")
    with open(path) as f:
        return yaml.load(f, Loader=_Loader)


def build_sam2(config_file: str = "configs/sam2.1/sam2.1_hiera_t.yaml", *, video: bool = True,
               checkpoint: str | None = None, overrides: dict | None = None, device: str = "cpu"):
    """A SAM 2 (video predictor) model; weights from `checkpoint` when given, else random."""
    import torch

    cfg = copy.deepcopy(load_config(config_file))
    settings = dict(POSTPROCESSING)
    if video:
        settings.update(VIDEO_POSTPROCESSING)
        settings["model._target_"] = VIDEO_PREDICTOR
    settings.update(overrides or {})
    for key, value in settings.items():
        _set(cfg, key, value)
    _check_targets(cfg["model"])
    model = _instantiate(cfg["model"])
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(state.get("model", state))
        if missing or unexpected:
            raise RuntimeError(f"SAM2 checkpoint {checkpoint} does not match {config_file}: "
                               f"missing={missing[:5]} unexpected={unexpected[:5]}")
    return model.to(device).eval()
