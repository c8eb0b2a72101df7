"""Sparkle-Bench's rubric: the six dimensions, the judge prompt, the reply parser and the cap.

`RUBRIC` is the official `BACKGROUND_REPLACEMENT` prompt of Sparkle's `eval_sparkle_bench_gemini.py`
(showlab/Sparkle), verbatim, filled with `.format(edit_prompt=...)`. `parse_reply` follows the
official `check_format`: a line that starts (after stripping) with a dimension's name and a colon
gives that dimension's score (`int(float(text after the last colon))`, 1-5; for a repeated line the
last one wins); all six are required; otherwise the reply does not parse. Dimensions 2-6 are then
capped at Instruction Compliance (`cap`), as the prompt asks and the official parser enforces.
"""

from __future__ import annotations

import hashlib

DIMENSIONS = ("instruction", "visual", "fg_integrity", "fg_motion", "bg_dynamics", "bg_visual")
NAMES = {"instruction": "Instruction Compliance", "visual": "Overall Visual Quality",
         "fg_integrity": "Foreground Integrity", "fg_motion": "Foreground Motion Consistency",
         "bg_dynamics": "Background Dynamics", "bg_visual": "Background Visual Quality"}
SHORT = {"instruction": "Ins.", "visual": "Vis.", "fg_integrity": "FgIn.", "fg_motion": "FgMo.",
         "bg_dynamics": "BgDy.", "bg_visual": "BgVi."}

RUBRIC = """
You are a data rater specializing in grading video background replacement. You will be given two videos (source and edited) and the editing instruction. Your task is to evaluate the result on a 5-point scale across six dimensions:

Instruction Compliance
1. No change, or background entirely unrelated to the prompt, or foreground also replaced/distorted such that the edit fails as a whole.
2. Background only partially matches prompt content or style; major requested elements wrong or missing; or foreground noticeably altered.
3. Main background concept matches but with missing/extra elements, wrong sub-style, or partial spill onto the subject.
4. Requested background fully present and consistent with the prompt; only minor mismatches in tone, detail, or atmosphere.
5. Background exactly matches the prompt in content, style, mood, and any specified dynamics; foreground untouched.

Overall Visual Quality
This dimension covers global image quality AND foreground-background harmonization. The lighting, color temperature, and shadows on the foreground must match the new background environment. For example, when the prompt changes the time of day (e.g. day to night, noon to sunset), keeping the original daytime lighting on the foreground while the background is dark is a major harmonization failure. The same applies to season, location, and style edits that imply different ambient light.
1. Severe artefacts throughout (tearing, posterisation, color banding, heavy flicker), OR foreground lighting is grossly inconsistent with the new background (e.g. brightly lit subject against a night scene, conflicting light directions, no shadow adaptation).
2. Clear visual degradation (persistent blur, noise, unstable colors), OR obvious lighting / color-temperature mismatch between foreground and background visible at first glance.
3. Watchable but with visible flaws on closer look: occasional flicker, mild compression artefacts, soft regions, OR partial harmonization where the foreground tone is in the right direction but not fully matched to the background.
4. Clean output with only minor issues when zoomed in or paused; foreground lighting and color grading are well aligned with the background, with only subtle discrepancies.
5. Indistinguishable from real captured footage: sharp, stable, well-graded across the entire clip, with foreground lighting, color temperature, and shadows fully harmonized with the new background environment.

Foreground Integrity
1. Foreground severely damaged: missing limbs/parts, large holes, replaced with a different subject, or shape collapsed.
2. Noticeable foreground damage: partial erosion by background, distorted contours, identity drift across frames.
3. Foreground mostly preserved but with visible defects: edge halos, slight shape deformation, occasional color bleed.
4. Foreground well preserved with only minute edge artefacts; shape and identity stable throughout.
5. Foreground perfectly preserved: every pixel of shape, texture, and identity intact across all frames.

Foreground Motion Consistency
1. Foreground motion completely different from source: actions replaced, frozen, looped, or temporally scrambled.
2. Major motion deviations: different gestures, dropped actions, or strong temporal jitter not present in source.
3. Same general action is recognizable but with timing drift, trajectory shifts, or inconsistent speed versus source.
4. Motion closely tracks the source with only minor temporal misalignment or subtle smoothing.
5. Foreground motion is identical to the source video in trajectory, timing, and articulation, frame by frame.

Background Dynamics (Liveness)
This dimension measures whether the background motion matches the intensity and character implied by the prompt. The bar is appropriateness to the prompt, not absolute amount of motion. A "gentle swaying grass" prompt rendered as subtle wind-like sway is fully correct and should receive a high score; the same subtle motion for a "rushing waterfall" prompt is severely under-rendered.
1. Background motion contradicts the prompt: completely static when the prompt implies any motion, or wrong type/direction of motion (e.g. crashing waves rendered as a still pond).
2. Motion intensity is far below what the prompt implies (e.g. a "rushing river" rendered as barely moving water), or required dynamics are largely absent.
3. Motion type is in the right direction but noticeably under- or over-rendered, OR motion exists but feels stiff and unnatural.
4. Motion intensity and character are well matched to the prompt, with only minor stiffness, small frozen patches, or slight over/under rendering.
5. Background motion perfectly matches the prompt in both intensity and character, rendered naturally and continuously throughout the clip — gentle prompts receive gentle motion, energetic prompts receive energetic motion.
Special case: if the prompt explicitly asks for a static background (e.g. "still photo", "frozen scene", "no motion"), a faithfully static background scores 5 and any unwanted motion lowers the score accordingly.

Background Visual Quality
1. Background severely degraded: melting structures, broken geometry, heavy blur, or incoherent textures.
2. Clear distortion or blur in major background regions; structures wobble or warp over time.
3. Acceptable background with visible imperfections: soft textures, mild geometric inconsistency, minor temporal warping.
4. High-quality background with only minor issues on close inspection; geometry and textures stable.
5. Background is sharp, geometrically coherent, and temporally stable; on par with real footage.

Constraints
The scores for Overall Visual Quality, Foreground Integrity, Foreground Motion Consistency, Background Dynamics, and Background Visual Quality must not exceed the score for Instruction Compliance.

Example Response Format
Brief reasoning: No more than 30 words.
Instruction Compliance: 1-5.
Overall Visual Quality: 1-5.
Foreground Integrity: 1-5.
Foreground Motion Consistency: 1-5.
Background Dynamics: 1-5.
Background Visual Quality: 1-5.

Editing instruction is: {edit_prompt}.

Below are the videos before and after editing:
"""
RUBRIC_HASH = hashlib.sha256(RUBRIC.encode()).hexdigest()[:16]
FRAMES_NOTE = ("\nThe videos are given as frames: the first {n} images are frames of the source video, the next {n} "
               "the same moments of the edited video, in time order.\n")


def judge_prompt(edit_prompt: str) -> str:
    """The rubric filled with the editing instruction, exactly as the official script sends it."""
    return RUBRIC.format(edit_prompt=edit_prompt)


def cap(scores: list[int]) -> list[int]:
    """Dimensions 2-6 clipped to Instruction Compliance (the first)."""
    return [scores[0]] + [min(s, scores[0]) for s in scores[1:]]


def parse_reply(reply: str) -> list[int] | None:
    """The six capped scores of a judge's reply (see the module docstring), or None when it does not parse."""
    found: dict[str, int] = {}
    prefixes = [(NAMES[d] + ":", d) for d in DIMENSIONS]
    for line in reply.splitlines():
        line = line.strip()
        for prefix, dim in prefixes:
            if line.startswith(prefix):
                try:
                    value = int(float(line.split(":")[-1].strip()))
                except ValueError:
                    return None
                if value not in range(1, 6):
                    return None
                found[dim] = value
                break
    if len(found) != len(DIMENSIONS):
        return None
    return cap([found[d] for d in DIMENSIONS])
