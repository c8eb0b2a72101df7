"""Background motion of generated background videos against baselines measured in the same run.

For each demo clip and theme (the store of a finished `sparkle run` on the demo CSV), compare the
background-motion score (sparkle_bench.metrics.background_motion, % of the diagonal per second) of:

- `generated`: our background video;
- `repeated plate`: the plate repeated for the clip's length (what a static background scores);
- `real Sparkle`: the background of the released edited video (outside our source mask), for scale.

Usage (after `SPARKLE_HOME=.sparkle/demo sparkle run --no-bundled --csv ../shared/data/sparkle_demo/pairs.csv`):

    .venv/bin/python benchmarks/background_motion.py --home .sparkle/demo --demo ../shared/data/sparkle_demo
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from sparkle_assets.core.lineage import Lineage
from sparkle_assets.core.store import ArtifactStore
from sparkle_bench.metrics import background_motion
from sparkle_model.masks import load_mask_npz
from sparkle_model.video import read_png, read_video


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default=".sparkle/demo")
    ap.add_argument("--demo", default="../shared/data/sparkle_demo", help="folder with the released edited videos")
    args = ap.parse_args()
    home = Path(args.home)
    db, store = Lineage(home / "lineage.duckdb"), ArtifactStore(home / "store")
    masks = {r["clip_id"]: r for r in db.current_artifacts("foreground_masks", kind="foreground_mask")}
    themes = [r["partition"] for r in db.query(
        "SELECT DISTINCT partition FROM materialization WHERE asset_key = 'background_videos' ORDER BY 1")]
    rows = {}
    real = {}
    for theme in themes:
        videos = db.current_artifacts("background_videos", theme, status=None, kind="background_video")
        plates = {r["clip_id"]: r for r in db.current_artifacts("background_plates", theme, kind="background_plate")}
        for v in videos:
            n, fps = v["info"]["frames"], 16.0
            still = background_motion(np.stack([read_png(store.resolve(plates[v["clip_id"]]["uri"]))] * n), fps)
            rows.setdefault(theme, []).append((v["info"]["motion"]["score"], still["score"], v["info"]["motion"]["still_pairs"]))
            edited = Path(args.demo) / f"{v['clip_id']}_edited.mp4"
            if v["clip_id"] not in real and edited.is_file() and v["clip_id"] in masks:
                mask = load_mask_npz(store.resolve(masks[v["clip_id"]]["uri"]))
                frames = read_video(edited)
                if frames.shape[1:3] == mask.shape[1:]:
                    real[v["clip_id"]] = background_motion(frames, fps, masks=mask)["score"]
    print(f"{'theme':<10} {'videos':>6} {'generated (median)':>19} {'repeated plate':>15} {'still videos':>13}")
    for theme, vals in rows.items():
        gen = statistics.median(v[0] for v in vals)
        rep = statistics.median(v[1] for v in vals)
        print(f"{theme:<10} {len(vals):>6} {gen:>19.3f} {rep:>15.3f} {sum(v[2] >= 1.0 for v in vals):>13}")
    allgen = [v[0] for vals in rows.values() for v in vals]
    print(f"\nall: median generated {statistics.median(allgen):.3f} %diag/s, min {min(allgen):.3f}; "
          f"repeated plate {max(v[1] for vals in rows.values() for v in vals):.3f} (max)")
    if real:
        print(f"real Sparkle edited videos, background outside the mask: median {statistics.median(real.values()):.3f} "
              f"({len(real)} clips) {json.dumps({k: round(v, 3) for k, v in real.items()})}")


if __name__ == "__main__":
    main()
