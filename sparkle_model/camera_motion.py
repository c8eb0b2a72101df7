"""Camera-motion score of a clip: the paper's coarse fixed-camera test (optical flow + RANSAC).

Frames are sampled at about 4 Hz and downscaled; between consecutive samples, dense DIS optical
flow gives point correspondences on a grid, and a RANSAC homography fit separates the global
(camera) motion from moving objects. The camera's speed is the mean displacement of the grid under
that homography, in percent of the frame diagonal per second. The clip's score is the 75th
percentile of the speeds (robust to one glitchy pair, sensitive to pans, zooms and shake).

The paper's fine filter is a VLM camera-movement check (`vlm_camera_check`): a few frames spread
over the clip, a short reasoning, a verdict (`static` or `moving`) and a confidence, folded into one
number, the probability that the camera moves.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

SAMPLE_HZ = 4.0
WORK_WIDTH = 320
GRID_STEP = 8


def work_gray(frame: np.ndarray, width: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = width / w
    small = cv2.resize(frame, (width, max(8, int(round(h * scale)))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def pair_motion(prev: np.ndarray, cur: np.ndarray, flow_engine=None) -> tuple[float, float]:
    """(mean grid displacement under the fitted homography in pixels, RANSAC inlier ratio)."""
    flow_engine = flow_engine or cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = flow_engine.calc(prev, cur, None)
    h, w = prev.shape
    ys, xs = np.mgrid[GRID_STEP // 2:h:GRID_STEP, GRID_STEP // 2:w:GRID_STEP]
    src = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    dst = src + flow[ys.ravel(), xs.ravel()]
    hom, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 1.0)
    if hom is None:
        # no consistent global motion: fall back to the median flow magnitude
        return float(np.median(np.linalg.norm(dst - src, axis=1))), 0.0
    warped = cv2.perspectiveTransform(src[None], hom)[0]
    return float(np.linalg.norm(warped - src, axis=1).mean()), float(inliers.mean())


def camera_motion(frames: Iterable[np.ndarray], fps: float, sample_hz: float = SAMPLE_HZ) -> dict:
    """Score a clip; returns {'score', 'speeds', 'inlier_ratio', 'pairs'} (score in %diag/s)."""
    stride = max(1, int(round(fps / sample_hz)))
    dt = stride / fps
    engine = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    speeds, ratios, prev, diag = [], [], None, None
    for i, frame in enumerate(frames):
        if i % stride:
            continue
        gray = work_gray(frame, WORK_WIDTH)
        if prev is not None:
            disp, ratio = pair_motion(prev, gray, engine)
            speeds.append(100.0 * disp / diag / dt)
            ratios.append(ratio)
        prev, diag = gray, float(np.hypot(*gray.shape))
    if not speeds:
        raise ValueError("clip too short to measure camera motion (needs two sampled frames)")
    return {"score": float(np.percentile(speeds, 75)), "speeds": [round(s, 4) for s in speeds],
            "inlier_ratio": float(np.mean(ratios)), "pairs": len(speeds)}


CHECK_FRAMES = 4
CHECK_ATTEMPTS = 2


def camera_check_prompt(n_images: int) -> str:
    return (f"The {n_images} images are frames of one video clip, in time order, from its start to its end. Decide "
            "whether the camera moves during the clip (pan, tilt, zoom, tracking, handheld shake) or stays fixed on "
            "a tripod. People or things moving in front of a fixed camera do not count as camera movement; compare "
            "the background between the frames. Think briefly, then reply with one JSON object: "
            "{\"reasoning\": one or two sentences, \"camera\": \"static\" or \"moving\", "
            "\"confidence\": your confidence in that verdict, from 0 to 1}.")


def vlm_camera_check(client, frames: list[np.ndarray], attempts: int = CHECK_ATTEMPTS) -> dict:
    """The VLM's camera verdict on a few frames of a clip: {verdict, confidence, moving_probability,
    reasoning, prompt, reply}; a reply that does not parse is asked again, then raises VlmError."""
    from .vlm import VlmError, parse_json_reply

    prompt, reply, problem = camera_check_prompt(len(frames)), "", ""
    for _ in range(attempts):
        reply = client.generate(prompt, frames)
        try:
            answer = parse_json_reply(reply, ("camera", "confidence"))
            verdict = str(answer["camera"]).strip().lower()
            confidence = float(answer["confidence"])
        except (VlmError, TypeError, ValueError) as exc:
            problem = str(exc)
            continue
        if 1 < confidence <= 100:  # a percentage
            confidence /= 100
        if verdict in ("static", "moving") and 0 <= confidence <= 1:
            moving = confidence if verdict == "moving" else 1 - confidence
            return {"verdict": verdict, "confidence": round(confidence, 4), "moving_probability": round(moving, 4),
                    "reasoning": str(answer.get("reasoning", ""))[:500], "prompt": prompt, "reply": reply[:4000]}
        problem = f"verdict {verdict!r} / confidence {confidence:g} out of range"
    raise VlmError(f"camera check: no usable verdict after {attempts} tries ({problem[:120]}); "
                   f"last reply: {reply[:200]!r}")
