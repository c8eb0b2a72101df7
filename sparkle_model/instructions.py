"""Editing instructions in the paper's style, deterministic by seed, plus the original-scene text.

`plan_instructions` picks, for each clip of a theme, a subtheme and scene (seeded by the clip id,
the theme and the seed) and a sentence opener and structure that differ from the previous clip's,
so consecutive instructions never share a template sentence. `write_instruction` turns a plan into
a long, motion-rich instruction (150-470 characters, like the release's prompts) from the scene's
`looks`, `lighting` and motion cues. `describe_original` describes the source's first frame from
simple image statistics (the default stand-in for the VLM's `original_scene`).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import cv2
import numpy as np

from .taxonomy import Scene, Theme

MIN_CHARS, MAX_CHARS = 150, 470

MOTION_PHRASES = {
    "clouds": ["soft clouds drifting slowly across the sky", "wisps of cloud sliding past on a high breeze",
               "billowing clouds rolling gently overhead", "scattered clouds gliding and changing shape"],
    "water": ["gentle ripples shimmering across the water", "small waves lapping softly and catching the light",
              "the water rolling and glinting as it moves", "the surface flowing and sparkling in constant motion"],
    "foliage": ["leaves and branches swaying gently in the breeze", "grass and foliage rippling in waves of wind",
                "treetops rocking softly back and forth", "plants trembling and bending with every gust"],
    "fog": ["low fog rolling slowly through the scene", "drifting wisps of mist curling between the shapes",
            "a soft haze thickening and thinning as it drifts", "banks of fog creeping along the ground"],
    "rain": ["steady rain streaking down through the air", "light rain falling in slanted silver lines",
             "raindrops pattering down and glistening as they fall"],
    "snow": ["snowflakes drifting down and tumbling in the air", "fresh snow falling softly and steadily",
             "flurries of snow swirling gently on the wind"],
    "petals": ["delicate petals drifting and spinning through the air", "blossom petals floating down on a light breeze",
               "soft petals fluttering and gliding past"],
    "leaves": ["dry leaves tumbling and twirling down", "fallen leaves skittering and drifting on the wind",
               "golden leaves fluttering slowly to the ground"],
    "embers": ["glowing embers floating upward and fading", "sparks and embers rising through the warm air",
               "tiny embers swirling up and flickering out"],
    "dust": ["fine dust motes glittering as they float in the light", "specks of dust and pollen drifting lazily",
             "sunlit particles hovering and drifting slowly"],
    "lights": ["lights flickering and shimmering softly", "distant lamps twinkling and pulsing gently",
               "points of light glowing brighter and dimmer in turn"],
    "traffic": ["distant traffic streaming past with moving headlights",
                "cars gliding by in the distance, their lights streaking", "a slow flow of vehicles along the far road"],
    "smoke": ["thin smoke trails curling and rising slowly", "plumes of smoke drifting upward and dissolving",
              "wisps of smoke rising and bending with the air"],
}

LIGHT_PHRASES = ["under {l}", "bathed in {l}", "lit by {l}"]

# Sentence structures; {o} opener, {s} scene, {l} lighting phrase, {m} joined motion phrases.
STRUCTURES = [
    "{o} {s}, {l}, with {m}.",
    "{o} {s}. The scene is {l}, with {m}.",
    "{o} {s}, {l}. Show {m} to keep the background alive.",
    "{o} {s}, {l}, featuring {m}.",
    "{o} {s}, {l}. Add {m}, giving the background natural motion.",
    "{o} {s}, {l}; keep the background moving with {m}.",
]

CLOSINGS = ["The motion stays smooth and continuous for the whole clip.",
            "Everything behind the subject keeps moving naturally from the first frame to the last.",
            "The background should feel alive, with steady, natural movement throughout.",
            "Let the movement build gently and never freeze."]


@dataclass(frozen=True)
class InstructionPlan:
    """What one clip's instruction is built from (all of it goes into the artifact id)."""

    clip_id: str
    scene: Scene
    opener: int
    structure: int
    seed: int

    def to_json(self) -> dict:
        return {"clip_id": self.clip_id, "scene": self.scene.to_json(), "opener": self.opener,
                "structure": self.structure, "seed": self.seed}

    @classmethod
    def from_json(cls, d: dict) -> InstructionPlan:
        return cls(d["clip_id"], Scene.from_json(d["scene"]), d["opener"], d["structure"], d["seed"])


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def plan_instructions(theme: Theme, clip_ids: list[str], seed: int) -> list[InstructionPlan]:
    """One plan per clip (in the order given): a seeded scene, and an opener and sentence structure
    that differ from the previous clip's."""
    scenes = theme.scenes
    plans, prev = [], (-1, -1)
    for clip_id in clip_ids:
        s = _seed(seed, theme.name, clip_id)
        rng = random.Random(s)
        scene = scenes[rng.randrange(len(scenes))]
        opener = rng.randrange(len(theme.openers))
        if opener == prev[0]:
            opener = (opener + 1) % len(theme.openers)
        structure = rng.randrange(len(STRUCTURES))
        if structure == prev[1]:
            structure = (structure + 1) % len(STRUCTURES)
        plans.append(InstructionPlan(clip_id, scene, opener, structure, s))
        prev = (opener, structure)
    return plans


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + (", and " if len(phrases) > 2 else " and ") + phrases[-1]


def write_instruction(plan: InstructionPlan, openers: tuple[str, ...]) -> str:
    """The instruction text for a plan: 150-470 characters, every motion cue of the scene named."""
    rng = random.Random(plan.seed + 1)
    scene = plan.scene
    phrases = [rng.choice(MOTION_PHRASES[cue]) for cue in scene.motion]
    light = rng.choice(LIGHT_PHRASES).format(l=scene.lighting)
    text = STRUCTURES[plan.structure].format(o=openers[plan.opener], s=scene.looks, l=light, m=_join(phrases))
    if len(text) < MIN_CHARS:
        text = f"{text} {rng.choice(CLOSINGS)}"
    while len(text) > MAX_CHARS and len(phrases) > 1:
        phrases.pop()
        text = STRUCTURES[plan.structure].format(o=openers[plan.opener], s=scene.looks, l=light, m=_join(phrases))
    return text[0].upper() + text[1:]


_HUE_NAMES = [(10, "red"), (22, "orange"), (34, "yellow"), (78, "green"), (100, "teal"), (130, "blue"),
              (150, "purple"), (170, "pink"), (180, "red")]


def _colour_name(hsv_pixels: np.ndarray) -> str:
    """The dominant colour family of some HSV pixels (OpenCV ranges)."""
    sat = hsv_pixels[:, 1] > 60
    if sat.mean() < 0.25:
        v = float(np.median(hsv_pixels[:, 2]))
        return "white and light grey" if v > 190 else "black and dark grey" if v < 60 else "grey and neutral"
    hist = np.bincount(hsv_pixels[sat, 0].astype(int), minlength=180)
    top = int(np.argmax(np.convolve(hist, np.ones(9), mode="same")))
    name = next(n for limit, n in _HUE_NAMES if top < limit)
    if name in ("orange", "red") and np.median(hsv_pixels[sat, 2]) < 150:
        name = "brown"
    return name


def describe_original(frame: np.ndarray, mask: np.ndarray, labels: list[str]) -> str:
    """A one-sentence description of the source's first frame (RGB) around its foreground mask."""
    h, w = mask.shape
    bg = ~mask
    if bg.mean() < 0.02:
        bg = np.ones_like(mask)
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
    lum = float(hsv[..., 2][bg].mean())
    light = "bright" if lum > 160 else "dimly lit" if lum < 80 else "evenly lit"
    edges = cv2.Canny(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), 80, 160) > 0
    density = float(edges[bg].mean())
    texture = "plain and uncluttered" if density < 0.03 else "busy and detailed" if density > 0.12 else "moderately detailed"
    top = hsv[: max(1, h // 5)]
    sky = top[..., 0].mean() > 85 and top[..., 0].mean() < 130 and top[..., 1].mean() > 50 and top[..., 2].mean() > 140
    subject = "a person" if "person" in labels else "a moving subject" if mask.any() else "no clear subject"
    if mask.any():
        ys, xs = np.nonzero(mask)
        cx = xs.mean() / w
        where = "on the left" if cx < 0.38 else "on the right" if cx > 0.62 else "in the centre"
        cover = mask.mean()
        size = "filling much of the frame" if cover > 0.25 else "small in the frame" if cover < 0.05 else "at medium size"
        subject = f"{subject} {where}, {size},"
    return (f"A fixed-camera shot of {subject} in front of a {light} background of mostly "
            f"{_colour_name(hsv[bg])} tones that is {texture}{', with open sky above' if sky else ''}.")
