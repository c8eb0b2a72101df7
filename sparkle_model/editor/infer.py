"""Editing whole videos with a trained checkpoint: the source is cut into windows of the training
length, each window edited at the training size (the last one padded), and the result scaled back to
the source's size and length."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import torch

from .data import fit, padded, to_frames, to_tensor
from .model import TINY_WEIGHTS, InContextEditor, load_lora, load_tiny
from .train import generator


def load_editor(folder: Path, config: dict, device: str = "cpu") -> InContextEditor:
    """The editor saved in `folder` (weights + editor_config.json as `train` writes them)."""
    if config["backend"] == "tiny":
        return load_tiny(config, folder / TINY_WEIGHTS, device)
    if config["backend"] == "lora":
        return load_lora(config, folder, device)
    raise ValueError(f"no in-process editor for backend {config['backend']!r}")


def seed_of(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


@torch.no_grad()
def edit_video(editor: InContextEditor, frames: np.ndarray, prompt: str, config: dict, steps: int,
               guidance: float = 1.0, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8 source -> the edited (T, H, W, 3) uint8 video."""
    n, height, width = len(frames), frames.shape[1], frames.shape[2]
    size, h, w = config["frames"], config["height"], config["width"]
    small = np.stack([fit(f, h, w) for f in frames])
    text = editor.text.encode([prompt]).to(editor.device)
    null = editor.text.encode([""]).to(editor.device) if guidance > 1 else None
    out = []
    for k, start in enumerate(range(0, n, size)):
        window = padded(small[start:start + size], size)
        source = editor.codec.encode(to_tensor(window)[None].to(editor.device))
        latents = editor.sample(source, text, steps, generator(seed, k), guidance, null)
        out.extend(to_frames(editor.codec.decode(latents)[0]))
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in out[:n]])
