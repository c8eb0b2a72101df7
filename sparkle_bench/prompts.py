"""Reading an editing prompt: which taxonomy scene it is nearest to, what should move, and how much.

A bench sample from outside the pipeline (an external Sparkle-Bench folder, OpenVE-Bench) comes with
a free-text prompt, while the built-in backends draw a scene from the theme taxonomy. So:

- `nearest_scene` matches the prompt to the taxonomy scene whose words it shares most: every scene
  is a bag of words (its subtheme, name, `looks`, `lighting` and motion cues), weighted by TF-IDF over
  all scenes of the given themes; the score is the cosine similarity with the prompt's words (lower
  case, stop words dropped, a light suffix stemming). Deterministic and explainable: the match
  reports the words it rests on. Ties go to the first scene in theme/subtheme/scene order.
- `prompt_cues` names the motion cues (`sparkle_model.taxonomy.MOTION_CUES`) the prompt's words
  ask for ("swaying grass" -> foliage, "drifting fog" -> fog), so the animation follows the prompt.
- `motion_intensity` reads how much background motion the prompt implies, for the judge's
  Background Dynamics: `static` (it asks for a still background, the rubric's special case),
  `gentle`, `energetic`, or `moderate` when it says neither.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

STOP = set("""a an and are as at be been by for from has have in into is it its of on or that the their them then there
these this to was were while with without where which who will your you than so such over under onto off up down out
very all any each every both few more most other some only own same too can just should now scene background subject
keep kept replace replaced replacing shift place put set move moving make turn transform change show shows showing
look looks like edit video frame around behind across through along""".split())

CUE_WORDS = {
    "water": "water river stream streams waves wave ocean sea lake waterfall waterfalls ripple ripples fountain creek "
             "brook tide surf current currents flowing pond",
    "foliage": "grass grasses tree trees branch branches foliage vine vines grapevine grapevines bamboo palm palms "
               "bush bushes reeds wheat crops canopy canopies forest",
    "clouds": "cloud clouds sky",
    "fog": "fog foggy mist misty haze hazy steam",
    "rain": "rain rainy raindrops drizzle downpour",
    "snow": "snow snowy snowflakes snowfall flurries blizzard",
    "petals": "petal petals blossom blossoms",
    "leaves": "leaf leaves",
    "embers": "ember embers spark sparks fire fires flame flames bonfire",
    "dust": "dust pollen particles motes sand",
    "lights": "lights neon lantern lanterns torch torchlight candle candles flicker flickering twinkle "
              "twinkling glow glowing signs stars",
    "traffic": "traffic car cars vehicles headlights",
    "smoke": "smoke smoky smokestacks fumes",
}
STATIC_PHRASES = ("still photo", "still image", "static background", "static scene", "frozen", "no motion",
                  "motionless", "completely still", "freeze frame", "freeze-frame", "without any motion")
ENERGETIC = set("""vigorous vigorously strong strongly rushing crashing roaring storm stormy heavy raging torrent torrents
gusting gusts whipping violent violently turbulent bustling racing rapid rapidly fast fierce fiercely churning pouring
blizzard howling""".split())
GENTLE = set("""gentle gently slow slowly soft softly subtle subtly lazily lazy calm calmly serene faint delicate delicately
lightly quiet quietly tranquil peaceful slight slightly""".split())
# background motion (% of the frame diagonal per second) the prompt's intensity asks for
MOTION_TARGETS = {"gentle": 0.15, "moderate": 0.3, "energetic": 0.6}


def words(text: str) -> list[str]:
    """Lower-case words of 3+ letters, stop words dropped, lightly stemmed."""
    out = []
    for w in re.findall(r"[a-z]+", text.lower()):
        if len(w) < 3 or w in STOP:
            continue
        for suffix in ("ing", "ed", "es", "s"):
            if w.endswith(suffix) and len(w) - len(suffix) >= 4:
                w = w[: -len(suffix)]
                break
        out.append(w)
    return out


@dataclass(frozen=True)
class SceneMatch:
    """The taxonomy scene nearest to a prompt, the cosine similarity and the shared words."""

    theme: str
    scene: object  # sparkle_model.taxonomy.Scene
    similarity: float
    shared: tuple[str, ...]


def _scene_text(scene) -> str:
    return " ".join([scene.subtheme, scene.name, scene.looks, scene.lighting, *scene.motion])


def nearest_scene(prompt: str, themes: dict) -> SceneMatch:
    """The scene of `themes` (name -> sparkle_model.taxonomy.Theme) nearest to `prompt` (see the
    module docstring). Raises ValueError when the themes hold no scene."""
    docs = [(name, scene, Counter(words(_scene_text(scene))))
            for name in sorted(themes) for scene in themes[name].scenes]
    if not docs:
        raise ValueError("no taxonomy scene to match the prompt against")
    df = Counter(w for _, _, bag in docs for w in bag)
    idf = {w: math.log((1 + len(docs)) / (1 + n)) + 1.0 for w, n in df.items()}
    query = Counter(words(prompt))

    def vector(bag: Counter) -> dict[str, float]:
        return {w: c * idf.get(w, 0.0) for w, c in bag.items()}

    q = vector(query)
    qn = math.sqrt(sum(v * v for v in q.values())) or 1.0
    best = None
    for name, scene, bag in docs:
        d = vector(bag)
        dot = sum(q.get(w, 0.0) * v for w, v in d.items())
        sim = dot / (qn * (math.sqrt(sum(v * v for v in d.values())) or 1.0))
        if best is None or sim > best.similarity + 1e-12:
            best = SceneMatch(name, scene, round(sim, 4), tuple(sorted(set(query) & set(bag))))
    return best


def prompt_cues(prompt: str) -> list[str]:
    """The motion cues the prompt's words name, in `CUE_WORDS` order."""
    found = set(re.findall(r"[a-z]+", prompt.lower()))
    return [cue for cue, vocab in CUE_WORDS.items() if found & set(vocab.split())]


def motion_intensity(prompt: str) -> str:
    """`static`, `energetic`, `gentle` or `moderate` (see the module docstring)."""
    text = " ".join(re.findall(r"[a-z\-]+", prompt.lower()))
    if any(p in text for p in STATIC_PHRASES):
        return "static"
    found = set(text.split())
    if found & ENERGETIC:
        return "energetic"
    if found & GENTLE:
        return "gentle"
    return "moderate"
