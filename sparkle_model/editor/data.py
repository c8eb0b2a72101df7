"""Videos at the editor's size: decoding (each frame resized to cover the size, then centre-cropped),
tensors in [-1, 1], and the bank of training pairs the loop samples windows from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..video import iter_frames, VideoError


def fit(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to cover (height, width), then crop the centre."""
    h, w = frame.shape[:2]
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    y, x = (nh - height) // 2, (nw - width) // 2
    return resized[y:y + height, x:x + width]


def read_clip(path: str, height: int, width: int, max_frames: int | None = None) -> np.ndarray:
    """(T, height, width, 3) uint8: the video's frames (the first `max_frames`) at the editor's size."""
    frames = []
    for frame in iter_frames(path):
        frames.append(fit(frame, height, width))
        if max_frames is not None and len(frames) >= max_frames:
            break
    if not frames:
        raise VideoError(f"no decodable frames in {path}")
    return np.stack(frames)


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 127.5 - 1


def to_frames(video: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


def padded(frames: np.ndarray, n: int) -> np.ndarray:
    """At least `n` frames: a short clip repeats its last frame."""
    if len(frames) >= n:
        return frames
    return np.concatenate([frames, np.repeat(frames[-1:], n - len(frames), axis=0)])


@dataclass(frozen=True)
class Pair:
    """One training pair as the trainer gets it (paths already verified against the data manifest)."""

    task: str
    prompt: str
    src_video: str
    tgt_video: str
    weight: float = 1.0


class PairBank:
    """The training pairs, decoded at (height, width) on first use and kept while they fit in
    `cache_bytes`; `batch(step, rank)` draws the same windows for the same (seed, step, rank), so a
    resumed run sees exactly the batches an uninterrupted one would."""

    def __init__(self, pairs: Sequence[Pair], height: int, width: int, frames: int, seed: int,
                 cache_bytes: int = 2 << 30):
        if not pairs:
            raise ValueError("no training pairs")
        self.pairs, self.height, self.width, self.frames, self.seed = list(pairs), height, width, frames, seed
        weights = np.array([p.weight for p in self.pairs], np.float64)
        self.p = weights / weights.sum()
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.cache_bytes, self.used = cache_bytes, 0

    def clips(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i in self.cache:
            return self.cache[i]
        pair = self.pairs[i]
        src = read_clip(pair.src_video, self.height, self.width)
        tgt = read_clip(pair.tgt_video, self.height, self.width)
        n = max(min(len(src), len(tgt)), self.frames)
        out = (padded(src, n)[:n], padded(tgt, n)[:n])
        if self.used + out[0].nbytes * 2 <= self.cache_bytes:
            self.cache[i] = out
            self.used += out[0].nbytes * 2
        return out

    def batch(self, step: int, rank: int, size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """(source, target) videos (B, 3, frames, H, W) and their instructions for one step."""
        rng = np.random.default_rng([self.seed, step, rank])
        sources, targets, prompts = [], [], []
        for i in rng.choice(len(self.pairs), size=size, p=self.p):
            src, tgt = self.clips(int(i))
            start = int(rng.integers(0, len(src) - self.frames + 1))
            sources.append(to_tensor(src[start:start + self.frames]))
            targets.append(to_tensor(tgt[start:start + self.frames]))
            prompts.append(self.pairs[int(i)].prompt)
        return torch.stack(sources), torch.stack(targets), prompts
