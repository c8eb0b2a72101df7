"""What a person sees in one edited frame, measured, and the EditScore-shaped scores (0-10) built on it.

The measurements, shared by the first-frame edit scores, the pipeline's final filter (`pair_scores`)
and the benchmark's automatic judge (`sparkle_bench.automatic_judge`), each against the source frame:

- `background_changed_share`: how much of the background (blocks wholly outside the subject) now
  differs from the source; a pasted patch of the source scene, or no edit at all, lowers it;
- `detail_kept`: SSIM's contrast x structure term inside the subject (luminance excluded, so
  relighting is not damage); a translucent or melted subject loses local contrast and structure;
- `subject_opacity`: where the backdrop behind the subject is known (the pipeline's own background
  layer or video), how opaque the subject is: a ghost lets the backdrop through;
- `tone_follow`: how far the subject's lightness followed a darker new light (a daylit subject
  pasted under a night sky follows 0 of it).

Scores keep the rubric's three parts and VIEScore's overall (sqrt(min(semantic) * quality)):

- edit: `prompt_following` from the changed share of the background, `consistency` from the
  detail kept (and the opacity, when the backdrop is known), `perceptual_quality` = 10 minus
  penalties for clipping beyond the input's, a flat, empty background and a subject whose tone
  ignores the new light;
- plate: `prompt_following` = the foreground is gone (inside the mask the plate differs in colour
  from the edited frame, which shows the foreground there), `consistency` = everything outside the
  mask is unchanged from the edited frame (PSNR), `perceptual_quality` as above.

They check what can be checked without a model; they do not judge whether the new background
matches the instruction's words (a VLM scorer does that when one is configured).
"""

from __future__ import annotations

import cv2
import numpy as np

from .vlm import overall_score


def _lin(x: float, lo: float, hi: float) -> float:
    """0 at lo, 10 at hi, clipped."""
    return float(np.clip((x - lo) / (hi - lo), 0, 1) * 10)


def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)


def local_stats(a: np.ndarray, b: np.ndarray, sigma: float = 1.5):
    """SSIM's Gaussian-window statistics of two RGB images' luminance: means, variances, covariance."""
    x, y = _gray(a), _gray(b)
    mx, my = cv2.GaussianBlur(x, (0, 0), sigma), cv2.GaussianBlur(y, (0, 0), sigma)
    vx = cv2.GaussianBlur(x * x, (0, 0), sigma) - mx * mx
    vy = cv2.GaussianBlur(y * y, (0, 0), sigma) - my * my
    cxy = cv2.GaussianBlur(x * y, (0, 0), sigma) - mx * my
    return mx, my, vx, vy, cxy


def structure_similarity(a: np.ndarray, b: np.ndarray, where: np.ndarray, sigma: float = 1.5) -> float:
    """Mean of SSIM's structure term (local correlation of luminance) over `where`."""
    if not where.any():
        return 0.0
    _, _, vx, vy, cxy = local_stats(a, b, sigma)
    c3 = (0.03 * 255) ** 2 / 2
    s = (cxy + c3) / (np.sqrt(np.maximum(vx, 0) * np.maximum(vy, 0)) + c3)
    return float(s[where].mean())


def _ring(mask: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    m = mask.astype(np.uint8)
    inner = cv2.erode(m, k) > 0
    outer = cv2.dilate(m, k) > 0
    return inner, outer


def clipped_fraction(img: np.ndarray) -> float:
    return float(((img.max(axis=2) >= 254) | (img.min(axis=2) <= 1)).mean())


def quality(img: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> tuple[float, dict]:
    """10 minus penalties for clipping beyond the reference's and for a flat (empty) background."""
    clipped = clipped_fraction(img) - clipped_fraction(reference)
    bg = ~mask
    bg_std = float(_gray(img)[bg].std()) if bg.any() else 0.0
    penalty = min(6.0, 30 * max(0.0, clipped - 0.03)) + (4.0 if bg_std < 4 else 0.0)
    return max(0.0, 10 - penalty), {"clipped_excess": round(clipped, 4), "background_std": round(bg_std, 2)}


WORK_SIDE = 480  # frames are measured at about this many pixels on the long side
CHANGE_BLOCK = 16  # background blocks, in working pixels
CHANGE_THRESHOLD = 6.0  # mean Lab distance (0-255 scale) from which a block counts as changed
SHIFT_L = 25.0  # a background this much darker (0-255 Lab lightness) asks the subject to follow
FULL_FOLLOW = 0.3  # the share of the background's tone change that counts as fully harmonised


def _work(img: np.ndarray, side: int = WORK_SIDE, nearest: bool = False) -> np.ndarray:
    h, w = img.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale >= 1.0:
        return img
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    if img.dtype == bool:
        return cv2.resize(img.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return cv2.resize(img, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def _lab(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)


def background_changed_share(source: np.ndarray, edited: np.ndarray, background: np.ndarray) -> float | None:
    """Share of the background whose content differs from the source: the frames are cut into
    `CHANGE_BLOCK`-pixel blocks at `WORK_SIDE`, and a block wholly inside `background` (bool, the
    region away from the subject) counts as changed when its mean Lab distance to the source is at
    least `CHANGE_THRESHOLD`. 1.0: the whole background replaced; 0.0: nothing changed. None when no
    block lies wholly in the background."""
    s, e, bg = _work(source), _work(edited), _work(background)
    dist = np.linalg.norm(_lab(s) - _lab(e), axis=2)
    b = CHANGE_BLOCK
    hb, wb = dist.shape[0] // b, dist.shape[1] // b
    if not hb or not wb:
        return None
    blocks = dist[:hb * b, :wb * b].reshape(hb, b, wb, b).mean(axis=(1, 3))
    inside = bg[:hb * b, :wb * b].reshape(hb, b, wb, b).all(axis=(1, 3))
    if not inside.any():
        return None
    return float((blocks[inside] >= CHANGE_THRESHOLD).mean())


def detail_kept(source: np.ndarray, edited: np.ndarray, where: np.ndarray, sigma: float = 1.5) -> float | None:
    """Mean of SSIM's contrast x structure term over `where` (luminance left out): 1.0 when the
    subject's local contrast and texture are as filmed, lower when it is faded, see-through, blurred
    or redrawn. None when `where` is empty."""
    if not where.any():
        return None
    _, _, vx, vy, cxy = local_stats(source, edited, sigma)
    c2 = (0.03 * 255) ** 2
    cs = (2 * cxy + c2) / (np.maximum(vx, 0) + np.maximum(vy, 0) + c2)
    return float(cs[where].mean())


def subject_opacity(source: np.ndarray, edited: np.ndarray, backdrop: np.ndarray, where: np.ndarray) -> float | None:
    """How opaque the subject is over a known `backdrop` (what lies behind it in the edited frame):
    per Lab channel, the edited subject is fitted as a*source + b*backdrop + c over `where`, and the
    opacity is 1 - b (b weighted by the backdrop's variance there). A subject composited solidly,
    relit or not, is near 1; a ghost at alpha 0.45 near 0.45. None when the backdrop is too flat
    under the subject to tell (below 4 Lab units of spread)."""
    s, e, b = (_lab(_work(x)) for x in (source, edited, backdrop))
    w = _work(where)
    if w.sum() < 16:
        return None
    bleed, weight = 0.0, 0.0
    for ch in range(3):
        y, xs, xb = e[..., ch][w], s[..., ch][w], b[..., ch][w]
        spread = float(xb.std())
        if spread < 4.0:
            continue
        design = np.stack([xs, xb, np.ones_like(xs)], axis=1)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        bleed += float(coef[1]) * spread
        weight += spread
    if weight == 0:
        return None
    return float(np.clip(1.0 - bleed / weight, 0.0, 1.0))


def tone_follow(source: np.ndarray, edited: np.ndarray, subject: np.ndarray, background: np.ndarray) -> dict:
    """How far the subject's lightness adapted to a darker new light (mean Lab lightness, 0-255).
    Only a background that got darker by at least `SHIFT_L` asks anything of the subject (day to
    night: the rubric's example of a gross failure is a brightly lit subject against a night scene);
    in front of a brighter background a subject may well keep its exposure, and a subject filmed
    before a dark screen is not mismatched before a dark sky, so there `follow` is None. Otherwise
    `follow` is the larger of two shares, clipped to [0, 1]: the subject's darkening over the
    background's (it moved with the light), and over the gap from its old lightness down to the
    new background's (it moved toward the new light, as a compositor's colour transfer does). A
    daylit subject pasted unchanged under a night sky follows 0 of either."""
    ls, le = _lab(source)[..., 0], _lab(edited)[..., 0]
    bg_src, bg_out = float(ls[background].mean()), float(le[background].mean())
    fg_src, fg_out = float(ls[subject].mean()), float(le[subject].mean())
    follow = None
    if bg_out - bg_src <= -SHIFT_L:
        moved = fg_out - fg_src
        shares = [moved / (bg_out - bg_src)] + ([moved / (bg_out - fg_src)] if bg_out - fg_src <= -1 else [])
        follow = round(float(np.clip(max(shares), 0.0, 1.0)), 4)
    return {"follow": follow, "bg_shift_l": round(bg_out - bg_src, 2), "subject_shift_l": round(fg_out - fg_src, 2)}


def subject_regions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the subject without its edge band, the background away from the subject's edge)."""
    inner, outer = _ring(mask, max(2, min(mask.shape) // 180))
    away = ~(cv2.dilate(mask.astype(np.uint8), np.ones((2 * _margin(mask) + 1,) * 2, np.uint8)) > 0)
    return (inner if inner.sum() >= 0.25 * mask.sum() else mask), away


def _margin(mask: np.ndarray) -> int:
    return max(3, int(round(0.02 * float(np.hypot(*mask.shape)))))


def score_edit(source: np.ndarray, edited: np.ndarray, mask: np.ndarray, backdrop: np.ndarray | None = None) -> dict:
    """Score an edited frame against its source (RGB uint8) and foreground mask; `backdrop`, when
    known, is the new background behind the subject (the scene layer, the background video's frame)."""
    subject, away = subject_regions(mask)
    changed = background_changed_share(source, edited, away)
    detail = detail_kept(source, edited, subject)
    opacity = subject_opacity(source, edited, backdrop, subject) if backdrop is not None else None
    tone = tone_follow(source, edited, subject, away) if subject.any() and away.any() else {"follow": None}
    pq, checks = quality(edited, source, mask)
    if tone["follow"] is not None:
        unfollowed = 6.0 * (1.0 - min(1.0, tone["follow"] / FULL_FOLLOW))
        pq = max(0.0, pq - unfollowed)
    pf = _lin(changed if changed is not None else 0.0, 0.75, 0.97)
    cons = _lin(detail if detail is not None else 0.0, 0.75, 0.95)
    if opacity is not None:
        cons = min(cons, _lin(opacity, 0.6, 0.9))
    return {"prompt_following": round(pf, 3), "consistency": round(cons, 3), "perceptual_quality": round(pq, 3),
            "overall": overall_score(pf, cons, pq), "scorer": "automatic",
            "checks": {"background_changed": None if changed is None else round(changed, 4),
                       "detail_kept": None if detail is None else round(detail, 4),
                       "opacity": None if opacity is None else round(opacity, 4), "tone": tone, **checks}}


def score_plate(edited: np.ndarray, plate: np.ndarray, mask: np.ndarray) -> dict:
    """Score a background plate: foreground gone, the rest as in the edited frame, no artifacts."""
    r = max(3, min(mask.shape) // 60)
    inner, outer = _ring(mask, r)
    region = inner if inner.any() else mask
    lab_e = cv2.cvtColor(edited, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab_p = cv2.cvtColor(plate, cv2.COLOR_RGB2LAB).astype(np.float32)
    left = float(np.linalg.norm(lab_e - lab_p, axis=2)[region].mean())
    rest = ~outer
    mse = float(((plate.astype(np.float32) - edited.astype(np.float32)) ** 2)[rest].mean()) if rest.any() else 0.0
    psnr = 10 * np.log10(255 ** 2 / max(mse, 1e-6))
    pq, checks = quality(plate, edited, np.zeros_like(mask))
    pf, cons = _lin(left, 3.0, 20.0), _lin(psnr, 20.0, 40.0)
    return {"prompt_following": round(pf, 3), "consistency": round(cons, 3), "perceptual_quality": round(pq, 3),
            "overall": overall_score(pf, cons, pq), "scorer": "automatic",
            "checks": {"foreground_difference": round(left, 2), "outside_psnr": round(float(psnr), 2), **checks}}
