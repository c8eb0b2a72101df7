"""The SAM2 backend for BAIT: the `sam2` package's video predictor tracks the grounded boxes.

Grounding comes from a grounder (the classical backend by default, or stored VLM / detector boxes:
sparkle_model.grounding.RecordedGrounder); each pass resets the
predictor, adds every anchor box as an object and propagates forward and/or backward. The model is
built from a packaged config without hydra (sparkle_model.sam2_build) and loaded once per process.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .bait import Box, Grounder
from .foreground import ClassicalBackend
from .model_cache import cached
from .sam2_build import build_sam2

class Sam2Backend:
    """BAIT with SAM2 tracking. `checkpoint` is a local sam2/sam2.1 `.pt` file matching `config`;
    `checkpoint=None` with `random_weights=True` builds random weights (tests: plumbing only)."""

    def __init__(self, checkpoint: str | None, config: str = "configs/sam2.1/sam2.1_hiera_t.yaml",
                 device: str = "cpu", image_size: int | None = None, random_weights: bool = False,
                 grounder: Grounder | None = None):
        if checkpoint is None and not random_weights:
            raise FileNotFoundError("the SAM2 mask backend needs a checkpoint: set `sam2_checkpoint` on the "
                                    "mask_backend resource (env SPARKLE_SAM2_CHECKPOINT) to a local .pt file")
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise FileNotFoundError(f"SAM2 checkpoint not found: {checkpoint} (setting `sam2_checkpoint`, "
                                    "env SPARKLE_SAM2_CHECKPOINT)")
        overrides = {"model.image_size": image_size} if image_size else None
        self.predictor = cached(("sam2", checkpoint, config, device, image_size),
                                lambda: build_sam2(config, video=True, checkpoint=checkpoint, overrides=overrides,
                                                   device=device))
        self.grounder = grounder or ClassicalBackend()
        self._state = None

    def prepare(self, frames: np.ndarray) -> None:
        prepare = getattr(self.grounder, "prepare", None)
        if prepare is not None:
            prepare(frames)
        tmp = Path(tempfile.mkdtemp(prefix="sparkle-sam2-"))
        try:  # the predictor reads a folder of JPEG frames named by index
            for i, frame in enumerate(frames):
                cv2.imwrite(str(tmp / f"{i:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
            import torch

            with torch.inference_mode():
                self._state = self.predictor.init_state(video_path=str(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def ground(self, frames: np.ndarray, indices: Sequence[int]) -> dict[int, list[Box]]:
        return self.grounder.ground(frames, indices)

    def track(self, frames: np.ndarray, anchor: int, boxes: list[Box], direction: str) -> np.ndarray:
        import torch

        if self._state is None:
            raise RuntimeError("call prepare(frames) first")
        t, h, w = frames.shape[:3]
        out = np.zeros((t, h, w), bool)
        with torch.inference_mode():
            self.predictor.reset_state(self._state)
            for obj_id, box in enumerate(boxes, start=1):
                self.predictor.add_new_points_or_box(self._state, frame_idx=anchor, obj_id=obj_id,
                                                     box=np.array(box.as_list(), np.float32))
            for reverse in {"forward": [False], "backward": [True], "both": [False, True]}[direction]:
                for idx, _, logits in self.predictor.propagate_in_video(self._state, start_frame_idx=anchor,
                                                                       reverse=reverse):
                    out[idx] = (logits[:, 0] > 0).any(0).cpu().numpy()
        return out
