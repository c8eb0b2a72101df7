"""Defect pairs: a clean composite and the failures a person sees at once, made from the same clip.

Used to check that the automatic judge (and the pipeline's final filter, which shares its code)
scores each failure clearly below its clean counterpart on the dimension it breaks. From a source
clip, its foreground masks and a lively background video (what the pipeline's compositor gets):

| defect | what it is | the dimension it breaks |
|---|---|---|
| `clean` | the pipeline's compositor (`sparkle_model.edited_video.composite_video`) | - |
| `ghost` | the subject at 45% opacity: a translucent ghost of a person | Foreground Integrity |
| `pasted_patch` | a corner of the source scene (35% x 45% of the frame, bottom left) pasted back over the new background | Instruction Compliance |
| `frozen_foreground` | the subject of frame 0 held for the whole clip | Foreground Motion Consistency |
| `frozen_background` | the background video's first frame held (the static composite) | Background Dynamics |
| `colour_mismatch` | the subject left in its original light (no harmonisation) | Overall Visual Quality |

For `colour_mismatch` to be a failure the new background must change the light (the defect
pairs use a night scene).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparkle_model.edited_video import composite_video
from sparkle_model.first_frame_edit import composite

BROKEN = {"ghost": "fg_integrity", "pasted_patch": "instruction", "frozen_foreground": "fg_motion",
          "frozen_background": "bg_dynamics", "colour_mismatch": "visual"}
GHOST_OPACITY = 0.45


def defect_pairs(source: Sequence[np.ndarray], masks: np.ndarray, background: Sequence[np.ndarray],
                 harmony: float = 0.35) -> dict[str, np.ndarray]:
    """name -> frames (T, H, W, 3) for `clean` and every entry of `BROKEN`."""
    n = min(len(source), len(background), len(masks))
    source, background, masks = np.asarray(source[:n]), np.asarray(background[:n]), masks[:n]
    clean = np.stack(list(composite_video(source, background, masks, harmony)))
    ghost = np.stack([composite(c, b, masks[t].astype(np.float32) * GHOST_OPACITY)
                      for t, (c, b) in enumerate(zip(clean, background))])
    h, w = source.shape[1:3]
    corner = np.zeros((h, w), bool)
    corner[int(h * 0.55):, : int(w * 0.35)] = True
    patch = clean.copy()
    for t in range(n):
        keep = corner & ~masks[t]
        patch[t][keep] = source[t][keep]
    frozen_fg = np.stack(list(composite_video(np.repeat(source[:1], n, 0), background, np.repeat(masks[:1], n, 0),
                                              harmony)))
    frozen_bg = np.stack(list(composite_video(source, np.repeat(background[:1], n, 0), masks, harmony)))
    mismatch = np.stack(list(composite_video(source, background, masks, 0.0)))
    return {"clean": clean, "ghost": ghost, "pasted_patch": patch, "frozen_foreground": frozen_fg,
            "frozen_background": frozen_bg, "colour_mismatch": mismatch}
