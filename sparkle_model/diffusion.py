"""Real generative backends: diffusers pipelines loaded from local directories.

- `DiffusersEditor`: image edit / inpainting (FLUX.2-klein and its inpaint pipeline, FLUX
  Kontext, Qwen-Image-Edit, SD inpainting...). With a `mask_image` argument the pipeline repaints
  only the given region; without one it edits the whole frame and the caller puts the kept
  foreground back.
- `DiffusersAnimator`: image-to-video (Wan2.2 I2V, CogVideoX I2V, LTX...): a plate and a prompt in,
  `n_frames` frames out.
- `DiffusersGuidedGenerator`: the final edit (Wan-VACE class): the decoupled Canny guidance video
  and the edited first frame in, the edited video out.

Pipelines load with ``local_files_only=True`` (nothing is downloaded) once per process and
directory. Sizes are snapped to multiples of 16 within `max_side` and results resized back.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import cv2
import numpy as np

from .model_cache import cached

class DiffusionError(RuntimeError):
    """A pipeline directory is missing or cannot do what the step needs."""


def load_pipeline(model_dir: str, setting: str, device: str = "cpu", dtype: str = "float32",
                  offload: bool = False):
    """A diffusers pipeline from a local directory, cached per process."""
    if not model_dir or not (Path(model_dir) / "model_index.json").is_file():
        raise DiffusionError(f"{setting} ({model_dir or 'unset'}) is not a diffusers pipeline directory "
                             "(no model_index.json): set it to a local copy of the model")

    def make():
        import torch
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(model_dir, local_files_only=True, dtype=getattr(torch, dtype))
        if offload and device.startswith("cuda"):
            pipe.enable_model_cpu_offload()
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return cached(("diffusers", model_dir, device, dtype, offload), make)


def _snap(h: int, w: int, max_side: int, multiple: int = 16) -> tuple[int, int]:
    scale = min(1.0, max_side / max(h, w))
    return (max(multiple, int(h * scale) // multiple * multiple), max(multiple, int(w * scale) // multiple * multiple))


def _accepts(pipe, name: str) -> bool:
    return name in inspect.signature(pipe.__call__).parameters


def _generator(pipe, seed: int):
    import torch

    return torch.Generator(device="cpu").manual_seed(int(seed) % (2 ** 63))


def _video_out(frames, n: int, h: int, w: int) -> np.ndarray:
    """A pipeline's float frames as (n, h, w, 3) uint8, checking the frame count."""
    frames = (np.clip(np.asarray(frames, np.float32), 0, 1) * 255).round().astype(np.uint8)
    if len(frames) != n:
        raise DiffusionError(f"the pipeline returned {len(frames)} frames, {n} were asked for "
                             "(video models often need 4k+1 frames)")
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC) for f in frames])


class DiffusersEditor:
    def __init__(self, model_dir: str, device: str = "cpu", steps: int = 28, guidance: float = 4.0,
                 dtype: str = "float32", offload: bool = False, max_side: int = 1024):
        self.pipe = load_pipeline(model_dir, "edit_backend.model_dir", device, dtype, offload)
        if not _accepts(self.pipe, "image"):
            raise DiffusionError(f"{type(self.pipe).__name__} in {model_dir} takes no input image: "
                                 "edit_backend.model_dir needs an image-edit or inpainting pipeline")
        self.steps, self.guidance, self.max_side = steps, guidance, max_side

    @property
    def inpaints(self) -> bool:
        return _accepts(self.pipe, "mask_image")

    def edit(self, image: np.ndarray, prompt: str, seed: int, repaint: np.ndarray | None = None) -> np.ndarray:
        """Edit an RGB uint8 image; with an inpainting pipeline only `repaint` (bool mask) changes."""
        from PIL import Image

        h, w = image.shape[:2]
        ph, pw = _snap(h, w, self.max_side)
        kwargs = dict(prompt=prompt, image=Image.fromarray(cv2.resize(image, (pw, ph), interpolation=cv2.INTER_AREA)),
                      height=ph, width=pw, num_inference_steps=self.steps, guidance_scale=self.guidance,
                      generator=_generator(self.pipe, seed), output_type="np")
        if self.inpaints and repaint is not None:
            m = cv2.resize(repaint.astype(np.uint8) * 255, (pw, ph), interpolation=cv2.INTER_NEAREST)
            kwargs["mask_image"] = Image.fromarray(m)
        out = np.asarray(self.pipe(**kwargs).images[0])
        out = (np.clip(out, 0, 1) * 255).round().astype(np.uint8) if out.dtype != np.uint8 else out
        return cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC)


class DiffusersAnimator:
    def __init__(self, model_dir: str, device: str = "cpu", steps: int = 40, guidance: float = 3.5,
                 dtype: str = "float32", offload: bool = False, max_side: int = 832):
        self.pipe = load_pipeline(model_dir, "video_backend.model_dir", device, dtype, offload)
        if not (_accepts(self.pipe, "image") and _accepts(self.pipe, "num_frames")):
            raise DiffusionError(f"{type(self.pipe).__name__} in {model_dir} is not an image-to-video pipeline "
                                 "(needs image and num_frames): set video_backend.model_dir to one")
        self.steps, self.guidance, self.max_side = steps, guidance, max_side

    def animate(self, plate: np.ndarray, prompt: str, n_frames: int, seed: int) -> np.ndarray:
        """(n_frames, H, W, 3) uint8 at the plate's size."""
        from PIL import Image

        h, w = plate.shape[:2]
        ph, pw = _snap(h, w, self.max_side)
        out = self.pipe(image=Image.fromarray(cv2.resize(plate, (pw, ph), interpolation=cv2.INTER_AREA)),
                        prompt=prompt, height=ph, width=pw, num_frames=n_frames,
                        num_inference_steps=self.steps, guidance_scale=self.guidance,
                        generator=_generator(self.pipe, seed), output_type="np").frames[0]
        return _video_out(out, n_frames, h, w)


class DiffusersGuidedGenerator:
    """Control-video generation (Wan-VACE class: `video` + `mask` inputs): the edited first frame is
    kept (mask black on frame 0) and every later frame is generated under the guidance video."""

    def __init__(self, model_dir: str, device: str = "cpu", steps: int = 30, guidance: float = 5.0,
                 dtype: str = "float32", offload: bool = False, max_side: int = 832):
        self.pipe = load_pipeline(model_dir, "final_backend.model_dir", device, dtype, offload)
        if not all(_accepts(self.pipe, name) for name in ("video", "mask", "num_frames")):
            raise DiffusionError(f"{type(self.pipe).__name__} in {model_dir} takes no control video and mask: "
                                 "final_backend.model_dir needs a Wan-VACE-class pipeline")
        self.steps, self.guidance, self.max_side = steps, guidance, max_side

    def generate(self, guidance: np.ndarray, first_frame: np.ndarray, prompt: str, seed: int) -> np.ndarray:
        """(n, H, W, 3) uint8 at the guidance's size; frame 0 follows `first_frame`."""
        from PIL import Image

        n, h, w = guidance.shape[:3]
        ph, pw = _snap(h, w, self.max_side)
        frames = [first_frame, *guidance[1:]]
        video = [Image.fromarray(cv2.resize(f, (pw, ph), interpolation=cv2.INTER_AREA)) for f in frames]
        mask = [Image.new("L", (pw, ph), 0)] + [Image.new("L", (pw, ph), 255)] * (n - 1)
        out = self.pipe(video=video, mask=mask, prompt=prompt, height=ph, width=pw, num_frames=n,
                        num_inference_steps=self.steps, guidance_scale=self.guidance,
                        generator=_generator(self.pipe, seed), output_type="np").frames[0]
        return _video_out(out, n, h, w)
