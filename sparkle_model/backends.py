"""Every model backend built from plain settings dicts (what the pipeline's resources validate and
put into artifact ids): the BAIT mask backend, the VLM client, the diffusers editor, animator and
guided generator, and the edit scorer. Called inside executor workers; models load once per process
through `model_cache`. No Dagster here: any caller with the same settings gets the same backend.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .model_cache import cached


def mask_backend(settings: dict):
    """The BAIT backend: `{"name": "classical"}` or `{"name": "sam2", checkpoint, config, image_size,
    device, random_weights}`."""
    if settings["name"] == "classical":
        from .foreground import ClassicalBackend

        return ClassicalBackend()
    from .sam2_tracker import Sam2Backend

    return Sam2Backend(settings["checkpoint"], settings["config"], settings["device"], settings["image_size"],
                       settings["random_weights"])


def vlm(settings: dict):
    """A client with `generate(prompt, images, videos=None) -> str`, or None for `{"name": "none"}`.
    An endpoint's settings come from `VlmResource.settings()`, which reads them from the environment."""
    from .vlm import EndpointVlm, LocalVlm

    if settings["name"] == "endpoint":
        return EndpointVlm(settings["base_url"], settings["model"], settings["api_key_env"],
                           azure_api_version=settings["azure_api_version"])
    if settings["name"] == "local":
        return cached(("vlm", settings["model_dir"], settings["device"]),
                      lambda: LocalVlm(settings["model_dir"], settings["device"]))
    return None


def _pipeline(cls_name: str, settings: dict):
    if settings["name"] != "diffusers":
        return None
    from . import diffusion

    return getattr(diffusion, cls_name)(settings["model_dir"], settings["device"], settings["steps"],
                                        settings["guidance"], settings["dtype"], settings["offload"],
                                        settings["max_side"])


def editor(settings: dict):
    """The diffusers image editor / inpainter, or None for the built-in edit."""
    return _pipeline("DiffusersEditor", settings)


def animator(settings: dict):
    """The diffusers image-to-video pipeline, or None for the procedural animation."""
    return _pipeline("DiffusersAnimator", settings)


def guided_generator(settings: dict):
    """The Wan-VACE-class control-video pipeline, or None for the composite."""
    return _pipeline("DiffusersGuidedGenerator", settings)


def score_edit_with(settings: dict, before: np.ndarray, after: np.ndarray, instruction: str, what: str,
                    automatic: Callable[[], dict]) -> dict:
    """An EditScore-shaped score from the configured scorer: `automatic()` or, with `settings["scorer"]
    == "vlm"`, the VLM in `settings["vlm"]`."""
    if settings["scorer"] == "vlm":
        from .vlm import vlm_edit_score

        client = vlm(settings["vlm"])
        if client is None:
            raise ValueError("edit_backend.scorer is 'vlm' but vlm.backend is 'none'")
        return vlm_edit_score(client, before, after, instruction, what)
    return automatic()
