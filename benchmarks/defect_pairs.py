"""Defect pairs on the demo clips: does the automatic judge see what a person sees at once?

For each demo source clip: a BAIT mask (classical backend), a lively night background (the
`location` theme's "harbour at night" scene, rendered and animated by the built-in backends), the
clean composite and its defects (`sparkle_bench.defects`: a translucent ghost, a pasted patch of the
source scene, a frozen foreground, a frozen background, a subject left in daylight under the night
sky; a defect only where the night sky changes the light, i.e. for a bright source). Each is judged twice with `sparkle_bench.automatic_judge`: as the benchmark judges any system
(no backdrop known) and as the pipeline's final filter judges its own pairs (the background video
known); the final-filter decision uses `curated_pairs`' defaults (edit score >= 8 on the four
sampled frames, every judge dimension >= 3).

    .venv/bin/python benchmarks/defect_pairs.py --demo ../shared/data/sparkle_demo --frames 49 --width 640
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from sparkle_bench.automatic_judge import judge_videos
from sparkle_bench.defects import BROKEN, defect_pairs
from sparkle_bench.metrics import sample_indices
from sparkle_bench.rubric import DIMENSIONS, SHORT
from sparkle_model import backends
from sparkle_model.background_animation import animate
from sparkle_model.bait import bait_track
from sparkle_model.edit_scores import SHIFT_L, score_edit
from sparkle_model.first_frame_edit import background_layer
from sparkle_model.scene_grade import clean_background
from sparkle_model.taxonomy import parse_theme
from sparkle_model.video import read_video

REPO = Path(__file__).resolve().parent.parent
NIGHT_PROMPT = ("Place the subject at a harbour at night, with the city lights shimmering on the gently rippling "
                "water and stars twinkling in the dark sky.")


def night_background(frames: np.ndarray, masks: np.ndarray, fps: float) -> np.ndarray:
    """The location theme's night harbour, rendered at the clip's size and animated for its length."""
    theme = parse_theme(REPO / "themes" / "location.yaml")
    scene = next(s for s in theme.scenes if s.name == "harbour at night")
    layer = background_layer(scene, theme.render, clean_background(frames, masks), seed=0)
    _, video = animate(layer.image, layer.regions, layer.lights, list(scene.motion), len(frames), fps, 0)
    return np.stack(list(video))


def load(path: Path, frames: int, width: int) -> np.ndarray:
    video = read_video(path, frames)
    h, w = video.shape[1:3]
    size = (width, int(round(h * width / w / 2)) * 2)
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in video])


def final_filter(source, edited, masks, backdrop, judgment) -> dict:
    """`pair_scores`' edit score (mean of the four sampled frames) and `curated_pairs`' decision."""
    overall = [score_edit(source[i], edited[i], masks[i], backdrop[i])["overall"] for i in sample_indices(len(source))]
    edit, low = float(np.mean(overall)), min(judgment["scores"])
    return {"edit_score": round(edit, 2), "judge_min": low, "kept": edit >= 8 and low >= 3}


def judge_clip(path: Path, frames: int, width: int, fps: float = 16.0) -> dict:
    source = load(path, frames, width)
    masks = bait_track(source, fps, backends.mask_backend({"name": "classical"})).mask
    background = night_background(source, masks, fps)
    out = {}
    for name, video in defect_pairs(source, masks, background).items():
        bench = judge_videos(source, video, masks, fps, NIGHT_PROMPT)
        own = judge_videos(source, video, masks, fps, NIGHT_PROMPT, backdrop=background)
        out[name] = {"bench": bench["scores"], "filter": own["scores"], "bg_shift_l": bench["signals"]["bg_shift_l"],
                     **final_filter(source, video, masks, background, own)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", default="../shared/data/sparkle_demo")
    ap.add_argument("--frames", type=int, default=49)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    results = {p.name[: -len("_source.mp4")]: judge_clip(p, args.frames, args.width)
               for p in sorted(Path(args.demo).glob("*_source.mp4"))}
    print(f"{'clip':<24} {'pair':<18} " + " ".join(f"{SHORT[d]:>6}" for d in DIMENSIONS)
          + "   (as the bench judges it | with the backdrop, as the final filter)  edit  kept")
    for clip, pairs in results.items():
        for name, r in pairs.items():
            mark = lambda k: "*" if BROKEN.get(name) == DIMENSIONS[k] else " "  # noqa: E731
            cells = " ".join(f"{r['bench'][k]:>5}{mark(k)}" for k in range(len(DIMENSIONS)))
            own = "/".join(str(v) for v in r["filter"])
            print(f"{clip:<24} {name:<18} {cells}   {own:>13} {r['edit_score']:>6} {'yes' if r['kept'] else 'NO'}")
    summary = {}
    for name, dim in BROKEN.items():
        k = DIMENSIONS.index(dim)
        # a subject left in its light is a defect only where the light changed (a bright source under the night sky)
        clips = [p for p in results.values() if name != "colour_mismatch" or abs(p["clean"]["bg_shift_l"]) >= SHIFT_L]
        drops = [p["clean"]["bench"][k] - p[name]["bench"][k] for p in clips]
        own = [p["clean"]["filter"][k] - p[name]["filter"][k] for p in clips]
        summary[name] = {"dimension": dim, "clips": len(clips), "bench_drop_mean": round(float(np.mean(drops)), 2),
                         "bench_drop_min": int(min(drops)), "filter_drop_mean": round(float(np.mean(own)), 2),
                         "filter_drop_min": int(min(own)),
                         "kept_by_final_filter": sum(p[name]["kept"] for p in clips)}
    summary["clean"] = {"kept_by_final_filter": sum(p["clean"]["kept"] for p in results.values())}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"pairs": results, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
