"""The automatic judge: Sparkle-Bench's six dimensions on its 1-5 scale, from measured signals (CPU, no weights).

`judge_videos(source, output, masks, fps, prompt)` measures one edit against its source with the
source's foreground mask, then maps each dimension's signal to a rubric level. Frames are compared
at the source's size; image signals use the four final-filter frames (`metrics.sample_indices`),
motion signals DIS optical flow between every pair of consecutive frames at ~480 px. The per-frame
measurements are the ones the pipeline's own scores use (`sparkle_model.edit_scores`), so what
the bench penalises the final filter drops.

| dimension | signal | 5 | 4 | 3 | 2 | 1 |
|---|---|---|---|---|---|---|
| Instruction Compliance | share of the background (blocks away from the subject) that differs from the source; with a CLIP model, the output must also sit closer to the prompt than the source does (else at most 2) | >= 0.97 | >= 0.90 | >= 0.75 | >= 0.40 | less |
| Overall Visual Quality | the lower of: harmonisation, 1 + 4 x min(1, follow / 0.3), follow = how far the subject's lightness adapted to a darker new background (`edit_scores.tone_follow`; 5 unless the background got darker by 25 of 255 or more: day to night is the rubric's gross failure, a brighter background may keep the subject's exposure); stability, the error the output adds on the subject after motion compensation (<= 1.5 / 3 / 5 / 8 of 255) and the flicker it adds to the frame's mean brightness (<= 0.5 / 1 / 2 / 4) | | | | | |
| Foreground Integrity | detail kept (SSIM contrast x structure inside the subject); with a known backdrop, also the subject's opacity (>= 0.9 / 0.8 / 0.65 / 0.5) | >= 0.93 | >= 0.75 | >= 0.60 | >= 0.45 | less |
| Foreground Motion Consistency | flow difference inside the subject, source vs output, over the source's own flow there | <= 0.30 | <= 0.45 | <= 0.60 | <= 0.80 | more |
| Background Dynamics | background motion away from the subject (% of the diagonal per second; flow under 0.05 px a frame counted as none) over what the prompt's wording asks (gentle 0.15, moderate 0.3, energetic 0.6); over 10x is over-rendered (4), over 25x (3); mostly still frames: at most 2. A prompt asking for a still background: <= 0.05 / 0.1 / 0.2 / 0.4 | >= 1.0 | >= 0.7 | >= 0.4 | >= 0.2 | less |
| Background Visual Quality | the lower of: blur the output's background adds over the source's (perceptual blur metric, <= 0.05 / 0.1 / 0.15 / 0.25) and the flicker it adds there (<= 0.5 / 1 / 2 / 4) | | | | | |

Dimensions 2-6 are then capped at Instruction Compliance, as the paper's rubric and parser do.

What it cannot see is said in `unmeasured`: without a CLIP model, whether the new background shows
what the prompt asks (only that it changed); realism and geometric coherence of the background;
whether a regenerated subject is the same person (a redrawn subject loses detail kept, although a
person may see it as intact, so this judge is conservative for models that regenerate the subject).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from sparkle_model.edit_scores import (FULL_FOLLOW, background_changed_share, detail_kept, subject_opacity,
                                       subject_regions, tone_follow)

from .flow import VideoFlow, magnitude
from .metrics import IqaModels, clip_score, resize_masks, sample_indices
from .prompts import MOTION_TARGETS, motion_intensity
from .rubric import DIMENSIONS, cap

JUDGE_VERSION = "automatic-1"
STILL_FLOW = 0.02  # px per frame at flow.WORK_SIDE: a frame pair whose background moves less is still
FLOW_NOISE = 0.05  # px per frame at flow.WORK_SIDE: flow below this is counted as no motion


def _level(value: float, bounds: Sequence[float], higher_is_better: bool = True) -> int:
    """5 when `value` passes bounds[0], 4 when it passes bounds[1] ... 1 when it passes none."""
    for level, bound in zip((5, 4, 3, 2), bounds):
        if (value >= bound) if higher_is_better else (value <= bound):
            return level
    return 1



def blur_metric(img: np.ndarray, where: np.ndarray) -> float | None:
    """Perceptual blur (Crete-Roffet et al. 2007) over `where`: how little of the grey-level
    variation survives re-blurring, 0 (sharp) to 1 (blurred); None when `where` is empty."""
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if not where.any():
        return None
    out = []
    for axis in (0, 1):
        kernel = np.ones((1, 9), np.float32) / 9 if axis else np.ones((9, 1), np.float32) / 9
        blurred = cv2.filter2D(g, -1, kernel)
        d_img, d_blur = np.abs(np.diff(g, axis=axis)), np.abs(np.diff(blurred, axis=axis))
        keep = where[:-1, :] if axis == 0 else where[:, :-1]
        total = float(d_img[keep].sum())
        lost = float(np.maximum(0.0, d_img - d_blur)[keep].sum())
        out.append((total - lost) / total if total > 1e-6 else 1.0)
    return float(max(out))


def _band(mask: np.ndarray) -> np.ndarray:
    """The mask grown by 3% of the frame diagonal: what an uncovered edge or a matte can touch."""
    r = max(3, int(round(0.03 * float(np.hypot(*mask.shape)))))
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0


def measure(source: Sequence[np.ndarray], output: Sequence[np.ndarray], masks: np.ndarray, fps: float,
            prompt: str, backdrop: Sequence[np.ndarray] | None = None, models: IqaModels | None = None,
            flows: tuple[VideoFlow, VideoFlow] | None = None) -> dict:
    """Every signal of the module docstring's table (None where it cannot be measured). `flows`: the
    source's and the output's `VideoFlow` when the caller shares them (used when the output is at
    the source's size; else computed here)."""
    n = min(len(source), len(output), len(backdrop) if backdrop is not None else len(source))
    if n < 2:
        raise ValueError("an edit needs at least two frames to judge")
    source, output = source[:n], output[:n]
    if output[0].shape != source[0].shape:
        output = [cv2.resize(f, source[0].shape[1::-1], interpolation=cv2.INTER_AREA) for f in output]
        flows = None
    if masks.shape[1:] != source[0].shape[:2]:
        masks = resize_masks(masks, source[0].shape[:2])
    mask_at = lambda t: masks[min(t, len(masks) - 1)]  # noqa: E731
    changed, detail, opacity, follow, blur_gain = [], [], [], [], []
    shifts = []
    for i in sample_indices(n):
        subject, away = subject_regions(mask_at(i))
        if (c := background_changed_share(source[i], output[i], away)) is not None:
            changed.append(c)
        if (d := detail_kept(source[i], output[i], subject)) is not None:
            detail.append(d)
        if backdrop is not None:
            bd = backdrop[i] if backdrop[i].shape == source[i].shape else cv2.resize(backdrop[i], source[i].shape[1::-1])
            if (o := subject_opacity(source[i], output[i], bd, subject)) is not None:
                opacity.append(o)
        if subject.any() and away.any():
            tone = tone_follow(source[i], output[i], subject, away)
            shifts.append((tone["bg_shift_l"], tone["subject_shift_l"]))
            if tone["follow"] is not None:
                follow.append(tone["follow"])
            b_out, b_src = blur_metric(output[i], away), blur_metric(source[i], away)
            if b_out is not None and b_src is not None:
                blur_gain.append(b_out - b_src)
    signals = {"background_changed": _mean(changed), "detail_kept": _mean(detail), "opacity": _mean(opacity),
               "tone_follow": _mean(follow), "blur_added": _mean(blur_gain),
               "bg_shift_l": _mean([s[0] for s in shifts]), "subject_shift_l": _mean([s[1] for s in shifts])}
    signals.update(_motion_signals(flows or (VideoFlow(source), VideoFlow(output)), n, masks, fps))
    signals["prompt_motion"] = motion_intensity(prompt)
    signals["clip_gain"] = _clip_gain(models, source, output, prompt)
    return signals


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def _motion_signals(flows: tuple[VideoFlow, VideoFlow], n: int, masks: np.ndarray, fps: float) -> dict:
    """Flow-based signals over the first `n` frames: the subject's motion error, the error and
    flicker the output adds, and the background's motion away from the subject."""
    src, out = flows
    ss, so, gs, go = src.frames, out.frames, src.grays, out.grays
    sm = resize_masks(masks, ss[0].shape[:2])
    h, w = ss[0].shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=2).astype(np.float32)
    bands = [_band(m) for m in sm]
    epe, own, warp_added, fl_fg, fl_bg, bg_motion, still = [], [], [], [], [], [], []
    for t in range(1, n):
        m = sm[min(t - 1, len(sm) - 1)]
        inner = cv2.erode(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        away = ~(bands[min(t - 1, len(bands) - 1)] | bands[min(t, len(bands) - 1)])
        fs, fo = src.forward(t), out.forward(t)
        if inner.any():
            epe.append(float(magnitude(fs - fo)[inner].mean()))
            own.append(float(magnitude(fs)[inner].mean()))
            err = []
            for frames, flow in ((ss, fs), (so, fo)):
                warped = cv2.remap(frames[t], grid + flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                err.append(float(np.abs(warped.astype(np.float32) - frames[t - 1].astype(np.float32))[inner].mean()))
            warp_added.append(err[1] - err[0])
        for region, store in ((inner, fl_fg), (away, fl_bg)):
            if region.any():
                store.append(abs(float(go[t][region].mean()) - float(go[t - 1][region].mean()))
                             - abs(float(gs[t][region].mean()) - float(gs[t - 1][region].mean())))
        if away.any():  # sub-pixel flow below FLOW_NOISE is the flow estimator's noise, not motion
            flow = magnitude(fo)
            mag = float(np.where(flow >= FLOW_NOISE, flow, 0.0)[away].mean())
            bg_motion.append(mag)
            still.append(mag < STILL_FLOW)
    diag = float(np.hypot(h, w))
    return {"fg_motion_error": round(sum(epe) / max(sum(own), 0.05 * len(own)), 4) if own else None,
            "fg_warp_added": _mean(warp_added), "fg_flicker_added": _mean(fl_fg), "bg_flicker_added": _mean(fl_bg),
            "bg_motion": round(100.0 * float(np.mean(bg_motion)) / diag * fps, 4) if bg_motion else None,
            "bg_still_share": _mean([float(s) for s in still])}


def _clip_gain(models: IqaModels | None, source: list[np.ndarray], output: list[np.ndarray], prompt: str) -> float | None:
    """CLIP score of the output's sampled frames minus the source's, for the prompt; None without CLIP."""
    if models is None or models.clip() is None:
        return None
    idx = sample_indices(len(source))
    out = clip_score(models, [output[i] for i in idx], prompt)
    src = clip_score(models, [source[i] for i in idx], prompt)
    return None if out is None or src is None else round(out - src, 4)


def levels(signals: dict) -> tuple[dict[str, int], list[str]]:
    """Each dimension's rubric level (before the cap) from `measure`'s signals, and what could not
    be measured."""
    unmeasured = ["Background Visual Quality: realism and geometric coherence (only blur and flicker are measured)"]
    out: dict[str, int] = {}
    changed = signals["background_changed"]
    ins = _level(changed, (0.97, 0.90, 0.75, 0.40)) if changed is not None else 1
    if signals["clip_gain"] is None:
        unmeasured.append("Instruction Compliance: whether the new background shows what the prompt asks "
                          "(no CLIP model configured: set SPARKLE_CLIP_DIR); only that the background changed")
    elif signals["clip_gain"] <= 0:
        ins = min(ins, 2)
    out["instruction"] = ins

    follow = signals["tone_follow"]
    harmony = 5 if follow is None else int(np.floor(1 + 4 * min(1.0, follow / FULL_FOLLOW) + 0.5))
    stability = min(_level(signals["fg_warp_added"], (1.5, 3, 5, 8), False) if signals["fg_warp_added"] is not None else 5,
                    _level(signals["fg_flicker_added"], (0.5, 1, 2, 4), False)
                    if signals["fg_flicker_added"] is not None else 5)
    out["visual"] = min(harmony, stability)

    fg = [_level(signals["detail_kept"], (0.93, 0.75, 0.60, 0.45))] if signals["detail_kept"] is not None else []
    if signals["opacity"] is not None:
        fg.append(_level(signals["opacity"], (0.9, 0.8, 0.65, 0.5)))
    if not fg:
        unmeasured.append("Foreground Integrity: no subject in the mask")
    out["fg_integrity"] = min(fg) if fg else 1

    err = signals["fg_motion_error"]
    out["fg_motion"] = _level(err, (0.30, 0.45, 0.60, 0.80), False) if err is not None else 1

    out["bg_dynamics"] = _dynamics_level(signals["bg_motion"], signals["bg_still_share"], signals["prompt_motion"])

    blur = _level(signals["blur_added"], (0.05, 0.1, 0.15, 0.25), False) if signals["blur_added"] is not None else 5
    flicker = _level(signals["bg_flicker_added"], (0.5, 1, 2, 4), False) if signals["bg_flicker_added"] is not None else 5
    out["bg_visual"] = min(blur, flicker)
    return out, unmeasured


def _dynamics_level(motion: float | None, still: float | None, intensity: str) -> int:
    if motion is None:
        return 1
    if intensity == "static":
        return _level(motion, (0.05, 0.1, 0.2, 0.4), False)
    ratio = motion / MOTION_TARGETS[intensity]
    level = 3 if ratio > 25 else 4 if ratio > 10 else _level(ratio, (1.0, 0.7, 0.4, 0.2))
    if still is not None and still >= 0.5:
        level = min(level, 2)
    return level


def judge_videos(source: Sequence[np.ndarray], output: Sequence[np.ndarray], masks: np.ndarray, fps: float,
                 prompt: str, backdrop: Sequence[np.ndarray] | None = None, models: IqaModels | None = None,
                 flows: tuple[VideoFlow, VideoFlow] | None = None) -> dict:
    """The automatic judgment of one edit: `scores` (six ints, capped at Instruction Compliance, in
    `rubric.DIMENSIONS` order), `levels` (before the cap), `signals` and `unmeasured` (`flows`: see `measure`)."""
    signals = measure(source, output, masks, fps, prompt, backdrop, models, flows)
    lv, unmeasured = levels(signals)
    raw = [lv[d] for d in DIMENSIONS]
    return {"scores": cap(raw), "levels": dict(zip(DIMENSIONS, raw)), "signals": signals, "unmeasured": unmeasured}
