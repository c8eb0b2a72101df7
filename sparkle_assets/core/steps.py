"""The per-clip functions of the generating stages, with their configs, code versions and companions.

Each function has the shape `core.clipstep` runs, ``fn(out_path, input_paths, params[, extra])``,
and reads its inputs by name (`clip`, `mask`, `instruction`, `frame0`, `clean`, `edited`, `layer`,
`plate`, `background`, `guidance`). The stages (`foreground_masks` ... `edited_videos`) map them
over their clips; the benchmark's `pipeline` system runs the same chain on bench samples with the
same code versions, so a bench sample is edited by exactly the pipeline's code.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from sparkle_bench.metrics import background_motion
from sparkle_model import backends
from sparkle_model.background_animation import animate
from sparkle_model.bait import bait_track, sample_indices
from sparkle_model.edit_scores import score_edit, score_plate
from sparkle_model.edited_video import composite_video
from sparkle_model.first_frame_edit import (background_layer, composite, edit_first_frame, erase_foreground,
                                            feather_radius, feathered, grown, load_layer, save_layer)
from sparkle_model.grounding import RecordedGrounder
from sparkle_model.guidance import guidance_frames
from sparkle_model.masks import load_mask_npz, overlay, save_mask_npz, temporal_iou
from sparkle_model.scene_grade import bright_spots, clean_background, estimate_regions
from sparkle_model.taxonomy import Scene
from sparkle_model.video import iter_frames, read_frames, read_png, read_video, write_png, write_video

from .clipstep import Companion
from .config import Range, StageConfig


# -- BAIT foreground masks (`foreground_masks`) ----------------------------------------------------
MASKS_VERSION = "foreground_masks-1"
GROUNDING_VERSION = "foreground_grounding-1"
PREVIEW = Companion("mask_preview", "mp4", "mask_preview-1", main_role="mask", roles=("clip",))
MIN_COVERAGE = 0.002  # below: an empty mask
MAX_COVERAGE = 0.95  # above: the mask is the whole frame
MIN_TEMPORAL_IOU = 0.3  # below (between consecutive frames): the mask jumps
MIN_JUMP_COVERAGE = 0.01  # ...judged only where both frames hold at least this much (tiny masks are noisy)
PREVIEW_WIDTH = 480


class ForegroundMasksConfig(StageConfig):
    """BAIT settings: `n_passes` tracking passes anchored on different sampled frames, a pixel is
    foreground when more than `vote_threshold` of the passes covering its frame say so; grounding
    on frames sampled at `sample_hz`."""

    RANGES = {"n_passes": Range(1, 16), "vote_threshold": Range(0, 1, hi_open=True), "sample_hz": Range(0.1, 16)}
    n_passes: int = 3
    vote_threshold: float = 0.5
    sample_hz: float = 2.0


def mask_quality(mask: np.ndarray) -> tuple[dict, str | None]:
    """Coverage and temporal stability of a mask, and the reason to drop it (None if usable)."""
    cover = mask.reshape(len(mask), -1).mean(axis=1)
    tiou = temporal_iou(mask)
    both = (cover[:-1] > MIN_JUMP_COVERAGE) & (cover[1:] > MIN_JUMP_COVERAGE)
    worst = float(tiou[both].min()) if both.any() else 1.0
    stats = {"coverage": round(float(cover.mean()), 4), "coverage_min": round(float(cover.min()), 4),
             "coverage_max": round(float(cover.max()), 4), "temporal_iou_min": round(worst, 4)}
    if cover.mean() < MIN_COVERAGE:
        return stats, f"empty mask: covers {100 * cover.mean():.2f}% of the frame (no foreground found)"
    if cover.mean() > MAX_COVERAGE:
        return stats, f"mask covers almost the whole frame ({100 * cover.mean():.0f}%)"
    if worst < MIN_TEMPORAL_IOU:
        at = int(np.flatnonzero(both & (tiou == worst))[0])
        return stats, f"mask jumps between frames {at} and {at + 1} (temporal IoU {worst:.2f})"
    return stats, None


def ground_foreground(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: the grounding record of one clip (both rounds, prompts and replies) as JSON."""
    frames = read_frames(inputs["clip"], sample_indices(params["frames"], params["fps"], params["sample_hz"]))
    record = backends.grounding(params["grounding"]).ground_clip(frames)
    out.write_text(json.dumps(record, ensure_ascii=False))
    found = [bool(o["bbox_2d"]) for objects in record["round2"]["frame_objects"] for o in objects]
    return {"backend": record["backend"], "labels": record["round1"]["labels"], "frames": record["frames"],
            "found_share": round(sum(found) / len(found), 4) if found else 0.0}


def compute_foreground_mask(out: Path, inputs: dict[str, Path], params: dict, extra: dict[str, Path]) -> dict:
    """Per-clip function: BAIT on one clip (following its grounding record, if it has one), written
    as the bit-packed npz, and its preview video (from the same decoded frames)."""
    frames = read_video(inputs["clip"])
    grounder = RecordedGrounder(json.loads(inputs["grounding"].read_text())) if "grounding" in inputs else None
    backend = backends.mask_backend(params["backend"], grounder)
    result = bait_track(frames, params["fps"], backend, params["n_passes"], params["vote_threshold"],
                        params["sample_hz"])
    save_mask_npz(out, result.mask)
    preview = render_mask_preview(extra[PREVIEW.kind], frames, result.mask, params["fps"])
    stats, reason = mask_quality(result.mask)
    labels = sorted({b.label for boxes in result.boxes.values() for b in boxes})
    return {**stats, "drop_reason": reason, "shape": list(result.mask.shape), "anchors": result.anchors,
            "directions": result.directions, "agreement": round(result.agreement, 4), "labels": labels,
            "boxes": {str(i): [[round(v, 1) for v in b.as_list()] + [b.label] for b in bs]
                      for i, bs in result.boxes.items()},
            "companions": {PREVIEW.kind: preview}}


def render_mask_preview(out: Path, frames: np.ndarray, mask: np.ndarray, fps: float) -> dict:
    """The mask tinted over the clip, small, for the UI."""
    small = []
    for frame, m in zip(frames, mask):
        h, w = frame.shape[:2]
        size = (PREVIEW_WIDTH, int(round(h * PREVIEW_WIDTH / w / 2)) * 2) if w > PREVIEW_WIDTH else (w, h)
        small.append(cv2.resize(overlay(frame, m), size, interpolation=cv2.INTER_AREA))
    write_video(out, small, fps=fps, crf=23)
    return {"frames": len(small)}


# -- clean backgrounds and frame 0 (`clean_backgrounds`) -------------------------------------------
CLEAN_VERSION = "clean_backgrounds-1"
FRAME0 = Companion("source_frame0", "png", CLEAN_VERSION, main_role=None, roles=("clip",))


def compute_clean_background(out: Path, inputs: dict[str, Path], params: dict, extra: dict[str, Path]) -> dict:
    frames = read_video(inputs["clip"])
    mask = load_mask_npz(inputs["mask"])
    plate = clean_background(frames, mask)
    write_png(out, plate)
    write_png(extra[FRAME0.kind], frames[0])
    never = float((mask[: len(frames)].all(axis=0)).mean())
    return {"height": plate.shape[0], "width": plate.shape[1], "never_visible": round(never, 4),
            "companions": {FRAME0.kind: {"height": plate.shape[0], "width": plate.shape[1]}}}


# -- edited first frames and their scene layers (`edited_first_frames`) ----------------------------
EDITS_VERSION = "edited_first_frames-2"  # -2: the edit score sees ghosts, pasted patches, unharmonised light
LAYER = Companion("background_layer", "npz", "background_layer-1", main_role="edited")


class EditedFirstFramesConfig(StageConfig):
    """`min_edit_score`: overall score (0-10) below which an edit is dropped (paper: 8).
    `harmony`: how far the default backend moves the subject's colour toward the new background."""

    RANGES = {"min_edit_score": Range(0, 10), "harmony": Range(0, 1)}
    min_edit_score: float = 8.0
    harmony: float = 0.35


def compute_edited_first_frame(out: Path, inputs: dict[str, Path], params: dict, extra: dict[str, Path]) -> dict:
    """Per-clip function: the edited frame 0 as PNG, with its score, and the scene layer."""
    record = json.loads(inputs["instruction"].read_text())
    frame0 = read_png(inputs["frame0"])
    mask0 = load_mask_npz(inputs["mask"])[0]
    settings = params["backend"]
    layer = background_layer(Scene.from_json(record["scene"]), record["render"], read_png(inputs["clean"]),
                             record["seed"])
    save_layer(extra[LAYER.kind], layer)
    editor = backends.editor(settings)
    if editor is None:
        backdrop = layer.image
        edited = edit_first_frame(frame0, mask0, layer, params["harmony"])
    else:
        backdrop = editor.edit(frame0, record["instruction"], record["seed"], repaint=~grown(mask0))
        edited = composite(frame0, backdrop, feathered(mask0, feather_radius(mask0.shape)))
    write_png(out, edited)
    score = backends.score_edit_with(settings, frame0, edited, record["instruction"],
                                     "replace the background, keep the subject",
                                     lambda: score_edit(frame0, edited, mask0, backdrop))
    return {"score": score, "chosen_keyword": record["chosen_keyword"],
            "companions": {LAYER.kind: {"render": record["render"], "lights": len(layer.lights)}}}


# -- background plates (`background_plates`) -------------------------------------------------------
PLATES_VERSION = "background_plates-1"
ERASE_PROMPT = "Remove every person and foreground object; show only the empty background scene: "


class BackgroundPlatesConfig(StageConfig):
    """`min_plate_score`: overall score (0-10) below which a plate is dropped (paper: 8.5)."""

    RANGES = {"min_plate_score": Range(0, 10)}
    min_plate_score: float = 8.5


def compute_background_plate(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: the foreground-free plate as PNG, with its score."""
    record = json.loads(inputs["instruction"].read_text())
    edited = read_png(inputs["edited"])
    mask0 = load_mask_npz(inputs["mask"])[0]
    settings = params["backend"]
    editor = backends.editor(settings)
    if editor is None:
        plate = erase_foreground(edited, mask0, load_layer(inputs["layer"]))
    else:
        plate = editor.edit(edited, ERASE_PROMPT + record["scene"]["looks"], record["seed"] + 1, repaint=grown(mask0))
    write_png(out, plate)
    score = backends.score_edit_with(settings, edited, plate, ERASE_PROMPT + record["scene"]["looks"],
                                     "remove the foreground, keep the background",
                                     lambda: score_plate(edited, plate, mask0))
    return {"score": score, "chosen_keyword": record["chosen_keyword"]}


# -- background videos (`background_videos`) -------------------------------------------------------
BACKGROUNDS_VERSION = "background_videos-1"
MAX_STILL_PAIRS = 0.5  # more still frame pairs than this: a still image, whatever the flow says


class BackgroundVideosConfig(StageConfig):
    """`min_background_motion`: background-motion score (% of the diagonal per second) below which
    a video counts as static and is dropped."""

    RANGES = {"min_background_motion": Range(0, 100)}
    min_background_motion: float = 0.05


def compute_background_video(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: the background video as H.264 mp4, with its motion score."""
    record = json.loads(inputs["instruction"].read_text())
    plate = read_png(inputs["plate"])
    n, fps = params["frames"], params["fps"]
    animator = backends.animator(params["backend"])
    info: dict = {"chosen_keyword": record["chosen_keyword"]}
    if animator is None:
        if record["render"] == "procedural":
            layer = load_layer(inputs["layer"])
            regions, lights = layer.regions, layer.lights
        else:
            regions, lights = estimate_regions(plate.astype(np.float32)), bright_spots(plate.astype(np.float32))
        anim, frames = animate(plate, regions, lights, record["motion"], n, fps, record["seed"])
        frames = list(frames)
        info.update(cues_applied=anim.applied, cues_skipped=anim.skipped)
    else:
        frames = list(animator.animate(plate, record["instruction"], n, record["seed"]))
    write_video(out, frames, fps=fps)
    info["motion"] = background_motion(frames, fps)
    info["frames"] = len(frames)
    return info


# -- decoupled Canny guidance (`guidance_videos`) --------------------------------------------------
GUIDANCE_VERSION = "guidance_videos-1"


class GuidanceVideosConfig(StageConfig):
    """Canny hysteresis thresholds (`canny_low` < `canny_high`, 0-255 gradient units) and the
    boundary `softness` (a multiple of the frame's feather radius)."""

    RANGES = {"canny_low": Range(0, 255), "canny_high": Range(0, 1020), "softness": Range(0, 20)}
    canny_low: int = 100
    canny_high: int = 200
    softness: float = 2.0

    def problems(self) -> list[str]:
        if self.canny_low >= self.canny_high:
            return [f"canny_low ({self.canny_low}) must be below canny_high ({self.canny_high})"]
        return []


def compute_guidance_video(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    masks = load_mask_npz(inputs["mask"])
    frames = guidance_frames(iter_frames(inputs["clip"]), iter_frames(inputs["background"]), masks,
                             params["canny_low"], params["canny_high"], params["softness"])
    density = []

    def counted():
        for f in frames:
            density.append(float((f[..., 0] > 127).mean()))
            yield f

    write_video(out, counted(), fps=params["fps"])
    return {"frames": len(density), "edge_density": round(sum(density) / max(1, len(density)), 4)}


# -- final edited videos (`edited_videos`) ---------------------------------------------------------
FINALS_VERSION = "edited_videos-2"


class EditedVideosConfig(StageConfig):
    """`harmony`: how far the subject's colour moves toward the new background (0-1, composite
    backend); `memory`: weight of the past in the grade's moving average (0-1, higher is steadier)."""

    RANGES = {"harmony": Range(0, 1), "memory": Range(0, 1, hi_open=True)}
    harmony: float = 0.35
    memory: float = 0.85


def compute_edited_video(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    record = json.loads(inputs["instruction"].read_text())
    generator = backends.guided_generator(params["backend"])
    if generator is None:
        frames = composite_video(iter_frames(inputs["clip"]), iter_frames(inputs["background"]),
                                 load_mask_npz(inputs["mask"]), params["harmony"], params["memory"])
    else:
        frames = generator.generate(read_video(inputs["guidance"]), read_png(inputs["edited"]),
                                    record["instruction"], record["seed"])
    n = 0

    def counted():
        nonlocal n
        for f in frames:
            n += 1
            yield f

    write_video(out, counted(), fps=params["fps"])
    return {"frames": n, "chosen_keyword": record["chosen_keyword"], "backend": params["backend"]["name"]}
