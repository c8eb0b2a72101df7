"""The default (CPU, no downloads) foreground backend for BAIT.

Per clip, once (`prepare`), at a small working resolution:

- person evidence: MediaPipe's shipped selfie segmenter (loaded once per process);
- motion evidence: the fixed camera makes a temporal-median background plate; pixels far from it
  belong to something that moved (people, and the objects they carry or move);
- the two are fused, cleaned with a morphological opening/closing and small holes filled.

Grounding boxes are the connected components of that evidence on the sampled frames (labelled
`person` where the segmenter agrees, else `moving object`). Tracking starts from the anchor's boxes
and follows, frame by frame, the evidence components that overlap the previous frame's (dilated)
mask, so an entity that was not in the anchor's boxes does not join the pass. Masks are upsampled
to the clip's size with bilinear interpolation of the working-resolution mask.

With another `grounder` (a VLM's or a detector's boxes, sparkle_model.grounding) the boxes say what
is foreground, and a box may hold something that neither moves nor is a person (a parked bicycle, an
easel). Each pass then starts from the anchor's box regions segmented with GrabCut (the evidence
inside a box as sure foreground, everything outside the boxes as background) and, on every frame,
keeps the part of that segment whose pixels still look as they did at the anchor (what stayed put),
plus the evidence components overlapping the previous frame's mask (what moved).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .bait import Box, Grounder
from .model_cache import cached



def _selfie_segmenter():
    """MediaPipe's selfie segmenter (landscape model), created once per process."""
    def make():
        import mediapipe as mp

        return mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=1)

    return cached("mediapipe-selfie", make)


def person_probability(frames: np.ndarray) -> np.ndarray:
    """(T, h, w) person probability for RGB frames (T, h, w, 3)."""
    seg = _selfie_segmenter()
    return np.stack([seg.process(np.ascontiguousarray(f)).segmentation_mask for f in frames]).astype(np.float32)


def background_plate(frames: np.ndarray, max_samples: int = 24) -> np.ndarray:
    """Temporal median of (a sample of) the frames: the fixed camera's empty background."""
    step = max(1, len(frames) // max_samples)
    return np.median(frames[::step], axis=0).astype(np.float32)


class ClassicalBackend:
    """Person segmentation + background subtraction, grounded and tracked by components."""

    def __init__(self, work_width: int = 320, person_threshold: float = 0.5, motion_threshold: float = 30.0,
                 min_area: float = 0.002, grounder: Grounder | None = None):
        self.work_width = work_width
        self.person_threshold = person_threshold
        self.motion_threshold = motion_threshold
        self.min_area = min_area
        self.grounder = grounder
        self._fg: np.ndarray | None = None
        self._person: np.ndarray | None = None
        self._small: np.ndarray | None = None
        self._size = (0, 0)

    # -- shared evidence ----------------------------------------------------------------------
    def prepare(self, frames: np.ndarray) -> None:
        t, h, w = frames.shape[:3]
        ww = min(self.work_width, w)
        wh = max(8, int(round(h * ww / w)))
        small = np.stack([cv2.resize(f, (ww, wh), interpolation=cv2.INTER_AREA) for f in frames])
        self._person = person_probability(small)
        self._small = small if self.grounder is not None else None
        diff = np.abs(small.astype(np.float32) - background_plate(small)).max(axis=-1)
        fg = (self._person > self.person_threshold) | (diff > self.motion_threshold)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self._fg = np.stack([_fill_holes(cv2.morphologyEx(cv2.morphologyEx(
            m.astype(np.uint8), cv2.MORPH_OPEN, kernel), cv2.MORPH_CLOSE, kernel)) for m in fg]).astype(bool)
        self._size = (w, h)

    def evidence(self) -> np.ndarray:
        """The cleaned per-frame foreground evidence at working resolution (after `prepare`)."""
        if self._fg is None:
            raise RuntimeError("call prepare(frames) first")
        return self._fg

    # -- BAIT parts ---------------------------------------------------------------------------
    def ground(self, frames: np.ndarray, indices: Sequence[int]) -> dict[int, list[Box]]:
        if self.grounder is not None:
            return self.grounder.ground(frames, indices)
        fg = self.evidence()
        wh, ww = fg.shape[1:]
        sx, sy = self._size[0] / ww, self._size[1] / wh
        out = {}
        for i in indices:
            n, labels, stats, _ = cv2.connectedComponentsWithStats(fg[i].astype(np.uint8), connectivity=8)
            boxes = []
            for k in range(1, n):
                x, y, bw, bh, area = stats[k]
                if area < self.min_area * wh * ww:
                    continue
                person = float(self._person[i][labels == k].mean())
                boxes.append(Box(x * sx, y * sy, (x + bw) * sx, (y + bh) * sy,
                                 "person" if person > self.person_threshold else "moving object",
                                 round(max(person, 0.5), 3)))
            out[i] = boxes
        return out

    def track(self, frames: np.ndarray, anchor: int, boxes: list[Box], direction: str) -> np.ndarray:
        fg = self.evidence()
        t, wh, ww = fg.shape
        start = self._box_regions(boxes)
        seed = self._segment(anchor, boxes) if self.grounder is not None else None
        small = np.zeros_like(fg)
        orders = {"forward": [range(anchor, t)], "backward": [range(anchor, -1, -1)],
                  "both": [range(anchor, t), range(anchor, -1, -1)]}[direction]
        grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
        for order in orders:
            region = start if seed is None else seed
            for i in order:
                n, labels = cv2.connectedComponents(fg[i].astype(np.uint8), connectivity=8)
                keep = np.unique(labels[region & fg[i]])
                kept = np.isin(labels, keep[keep > 0])
                if seed is not None:
                    kept |= self._unchanged(seed, anchor, i)
                small[i] |= kept
                if kept.any():
                    region = cv2.dilate(kept.astype(np.uint8), grow).astype(bool)
        w, h = self._size
        return np.stack([cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
                         for m in small])


    def _box_regions(self, boxes: list[Box]) -> np.ndarray:
        """The union of `boxes` (clip pixels) at working resolution."""
        return np.any([self._box_region(b) for b in boxes], axis=0) if boxes else \
            np.zeros(self.evidence().shape[1:], bool)

    def _box_region(self, b: Box) -> np.ndarray:
        wh, ww = self.evidence().shape[1:]
        sx, sy = ww / self._size[0], wh / self._size[1]
        region = np.zeros((wh, ww), bool)
        region[int(b.y0 * sy):int(np.ceil(b.y1 * sy)), int(b.x0 * sx):int(np.ceil(b.x1 * sx))] = True
        return region

    def _segment(self, anchor: int, boxes: list[Box], iterations: int = 3, min_fill: float = 0.1) -> np.ndarray:
        """What the boxes hold at the anchor: GrabCut with the evidence inside them as sure
        foreground and everything outside them as background. A box in which GrabCut keeps less than
        `min_fill` of the pixels (an object that looks like its surroundings) is kept whole."""
        regions = [self._box_region(b) for b in boxes]
        inside = np.any(regions, axis=0) if regions else np.zeros(self.evidence().shape[1:], bool)
        seg = inside
        if inside.any() and not inside.all():
            labels = np.where(inside, cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
            labels[self.evidence()[anchor] & inside] = cv2.GC_FGD
            bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
            try:
                cv2.grabCut(np.ascontiguousarray(self._small[anchor]), labels, None, bgd, fgd, iterations,
                            cv2.GC_INIT_WITH_MASK)
                seg = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
            except cv2.error:  # nothing to learn a colour model from
                seg = inside
        for region in regions:
            if (seg & region).sum() < min_fill * region.sum():
                seg = seg | region
        return seg

    def _unchanged(self, seed: np.ndarray, anchor: int, i: int) -> np.ndarray:
        """The pixels of the anchor's segment that look at frame i as they did at the anchor."""
        diff = np.abs(self._small[i].astype(np.int16) - self._small[anchor].astype(np.int16)).max(axis=-1)
        return seed & (diff < self.motion_threshold)


def _fill_holes(mask: np.ndarray, max_hole: float = 0.01) -> np.ndarray:
    """Fill enclosed background holes smaller than max_hole of the frame."""
    inv = (mask == 0).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    h, w = mask.shape
    out = mask.copy()
    for k in range(1, n):
        x, y, bw, bh, area = stats[k]
        touches_border = x == 0 or y == 0 or x + bw == w or y + bh == h
        if not touches_border and area < max_hole * h * w:
            out[labels == k] = 1
    return out
