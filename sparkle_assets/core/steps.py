"""The per-clip functions of the stages that map work over clips, with their code versions and companions.

Each function has the shape `core.clipstep` runs, ``fn(out_path, input_paths, params[, extra])``,
and reads its inputs by name (`clip`, `mask`, `instruction`, `frame0`, `clean`, `edited`, `layer`,
`plate`, `background`, `guidance`, `video`). The stages (`static_clips` ... `pair_scores`) map them
over their clips; the benchmark's `pipeline` system runs the generating chain on bench samples with
the same code versions, so a bench sample is edited by exactly the pipeline's code.

Nothing here imports Dagster (the stages' run configs are in `core.step_configs`): a pool worker
unpickles these functions by module, so what this module imports is what every worker loads
(tests/test_executor.py checks that Dagster is not among it).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from sparkle_bench.automatic_judge import judge_videos
from sparkle_bench.flow import VideoFlow, source_flow
from sparkle_bench.metrics import IqaModels, background_motion, pair_metrics, sample_indices as metric_frames
from sparkle_model import backends
from sparkle_model.background_animation import animate
from sparkle_model.bait import bait_track, sample_indices
from sparkle_model.camera_motion import camera_motion, vlm_camera_check
from sparkle_model.edit_scores import score_edit, score_plate
from sparkle_model.edited_video import composite_video
from sparkle_model.first_frame_edit import (background_layer, composite, edit_first_frame, erase_foreground,
                                            feather_radius, feathered, grown, load_layer, save_layer)
from sparkle_model.grounding import RecordedGrounder
from sparkle_model.guidance import guidance_frames
from sparkle_model.instructions import InstructionPlan, MAX_CHARS, MIN_CHARS, describe_original, write_instruction
from sparkle_model.masks import load_mask_npz, overlay, save_mask_npz, temporal_iou
from sparkle_model.scene_grade import bright_spots, clean_background, estimate_regions, median_step
from sparkle_model.taxonomy import Scene
from sparkle_model.video import (FramesAt, frames_at, iter_frames, probe, read_frames, read_png, read_video,
                                 sample_frames, write_png, write_video)
from sparkle_model.vlm import VlmError, instruction_prompt, parse_json_reply

from .clipstep import Companion
from .judging import EDIT_SCORE_PARTS


# -- camera motion and the VLM camera check (`static_clips`) ---------------------------------------
CAMERA_MOTION_VERSION = "camera_motion-1"
CAMERA_CHECK_VERSION = "camera_check-1"


def score_camera_motion(out: Path | None, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: the camera-motion score of one clip (record-only artifact)."""
    return camera_motion(iter_frames(inputs["clip"]), fps=params["fps"])


def check_camera(out: Path | None, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: the VLM's camera verdict on a few frames of one clip (record-only artifact)."""
    return vlm_camera_check(backends.vlm(params["vlm"]), sample_frames(inputs["clip"], params["check_frames"]))


# -- BAIT foreground masks (`foreground_masks`) ----------------------------------------------------
MASKS_VERSION = "foreground_masks-1"
GROUNDING_VERSION = "foreground_grounding-1"
PREVIEW = Companion("mask_preview", "mp4", "mask_preview-1", main_role="mask", roles=("clip",))
MIN_COVERAGE = 0.002  # below: an empty mask
MAX_COVERAGE = 0.95  # above: the mask is the whole frame
MIN_TEMPORAL_IOU = 0.3  # below (between consecutive frames): the mask jumps
MIN_JUMP_COVERAGE = 0.01  # ...judged only where both frames hold at least this much (tiny masks are noisy)
PREVIEW_WIDTH = 480


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
    """Per-clip function: the clean background and frame 0, as PNGs. Only the frames the median
    samples are kept (the mask, made from the same decoded clip, has its length)."""
    mask = load_mask_npz(inputs["mask"])
    frames = frames_at(inputs["clip"], range(0, len(mask), median_step(len(mask))))
    if len(frames) != len(mask):  # not the mask's clip length: the samples of its own length
        frames = frames_at(inputs["clip"], range(0, len(frames), median_step(len(frames))))
    plate = clean_background(frames, mask)
    write_png(out, plate)
    write_png(extra[FRAME0.kind], frames[0])
    never = float((mask[: len(frames)].all(axis=0)).mean())
    return {"height": plate.shape[0], "width": plate.shape[1], "never_visible": round(never, 4),
            "companions": {FRAME0.kind: {"height": plate.shape[0], "width": plate.shape[1]}}}


# -- instructions (`instructions`) -----------------------------------------------------------------
INSTRUCTIONS_VERSION = "instructions-1"


def compute_instruction(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: the instruction record, written as JSON."""
    plan = InstructionPlan.from_json(params["plan"])
    frame = read_png(inputs["frame0"])
    mask0 = load_mask_npz(inputs["mask"])[0]
    record = {"clip_id": plan.clip_id, "theme": params["theme"], "edit_type": params["edit_type"],
              "render": params["render"], "subtheme": plan.scene.subtheme, "scene": plan.scene.to_json(),
              "chosen_keyword": plan.scene.keyword, "motion": list(plan.scene.motion), "seed": plan.seed}
    vlm = backends.vlm(params["vlm"])
    if vlm is None:
        record["instruction"] = write_instruction(plan, tuple(params["openers"]))
        record["original_scene"] = describe_original(frame, mask0, params["labels"])
        record["writer"] = "template"
    else:
        reply = parse_json_reply(vlm.generate(instruction_prompt(params["theme"], plan.scene), [frame]),
                                 ("instruction", "original_scene"))
        text = str(reply["instruction"]).strip()
        if not MIN_CHARS // 2 <= len(text) <= MAX_CHARS * 1.5:
            raise VlmError(f"VLM instruction has {len(text)} characters (expected about {MIN_CHARS}-{MAX_CHARS}): {text[:80]!r}")
        record.update(instruction=text, original_scene=str(reply["original_scene"]).strip(), writer="vlm")
    out.write_text(json.dumps(record, indent=1))
    return {k: record[k] for k in ("chosen_keyword", "instruction", "original_scene", "writer")}


# -- edited first frames and their scene layers (`edited_first_frames`) ----------------------------
EDITS_VERSION = "edited_first_frames-2"  # -2: the edit score sees ghosts, pasted patches, unharmonised light
LAYER = Companion("background_layer", "npz", "background_layer-1", main_role="edited")


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


# -- the final filter's scores (`pair_scores`) ----------------------------------------------------
PAIR_SCORES_VERSION = "pair_scores-2"  # -2: the edit score sees ghosts and pasted patches; the automatic judgment


def _scored(path: Path, wanted: set[int], flow_of=VideoFlow) -> tuple[FramesAt, VideoFlow]:
    """One decoding pass of a video to score: its frames at `wanted` (full size) and its flow,
    `flow_of(frames)` (a stream: only the flow's small copies are kept). When `flow_of` already
    holds the flow, only the `wanted` frames are converted."""
    kept: dict[int, np.ndarray] = {}

    def stream():
        for i, frame in enumerate(iter_frames(path)):
            if i in wanted:
                kept[i] = frame
            yield frame

    flow = flow_of(stream())
    return (FramesAt(len(flow), kept) if kept else frames_at(path, wanted)), flow


def compute_pair_scores(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: every pair metric, the edit score of the final-filter frames and the
    automatic judgment. Only frame 0 and the scored frames are held at full size; the flow
    metrics read each video's `VideoFlow` (small copies of every frame), built while decoding."""
    record = json.loads(inputs["instruction"].read_text())

    def scored(n: int) -> set[int]:  # frame 0 (sizes) and the frames the image metrics score
        return {0, *metric_frames(n)} if n >= 2 else {0}

    wanted = scored(min(probe(inputs["clip"]).frames, probe(inputs["video"]).frames))  # as declared
    # each video's flow computed once for the metrics and the judgment; the source's, theme-independent,
    # kept in this process for the next theme (its store path names its content)
    (source, src_flow), (edited, edit_flow) = (
        _scored(inputs["clip"], wanted, lambda frames: source_flow(str(inputs["clip"]), frames)),
        _scored(inputs["video"], wanted))
    n = min(len(source), len(edited))
    if not scored(n) <= wanted:  # a container that miscounts its frames: the right ones, read again
        wanted = scored(n)
        source, edited = frames_at(inputs["clip"], wanted), frames_at(inputs["video"], wanted)
    backdrop = frames_at(inputs["background"], metric_frames(n))  # only the scored frames are read from it
    if len(backdrop) < n:  # shorter than the pair: the frames scored depend on its length
        backdrop = read_video(inputs["background"])
    masks = load_mask_npz(inputs["mask"])
    models = IqaModels(**params["models"])
    flows = (src_flow, edit_flow)
    metrics = pair_metrics(source, edited, masks, params["fps"], record["motion"], record["instruction"],
                           models, flows)
    frames = []
    for i in metric_frames(n):
        m = masks[min(i, len(masks) - 1)]
        behind = backdrop[min(i, len(backdrop) - 1)]
        score = backends.score_edit_with(params, source[i], edited[i], record["instruction"],
                                         "replace the background of this video frame, keep the subject",
                                         lambda: score_edit(source[i], edited[i], m, behind))
        frames.append({"frame": i, **{k: score[k] for k in EDIT_SCORE_PARTS}, "scorer": score["scorer"],
                       "checks": score.get("checks", {})})
    edit = {part: round(float(np.mean([f[part] for f in frames])), 3) for part in EDIT_SCORE_PARTS}
    judgment = judge_videos(source, edited, masks, params["fps"], record["instruction"], backdrop, models, flows)
    result = {"metrics": metrics, "edit_score": edit, "edit_score_frames": frames,
              "chosen_keyword": record["chosen_keyword"], "judge": judgment}
    out.write_text(json.dumps(result, indent=1))
    return result
