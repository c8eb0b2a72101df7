"""Foreground-mask quality and speed against Sparkle's own foreground reference clips.

    .venv/bin/python benchmarks/mask_quality.py [--data ../shared/data/sparkle_tracker]
        [--out .sparkle/benchmarks/mask_quality] [--sam2-checkpoint PATH] [--device cpu]

The reference mask of each clip is everything that is not near-white in Sparkle's "minimalist clean
white space" edit (HSV value > 200 and saturation < 40 is background, then a 5x5 opening), as the
data README describes. Each backend runs BAIT on the full 720p clip; the baseline is MediaPipe's
person segmentation alone, measured in the same run. Reported: per-clip and mean IoU, frames per
second (decode excluded), peak traced memory, and a PNG per clip (source | reference | mask).
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

from sparkle_model.bait import bait_track
from sparkle_model.foreground import ClassicalBackend, person_probability
from sparkle_model.masks import iou, overlay
from sparkle_model.video import read_video


def reference_mask(edited: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = []
    kernel = np.ones((5, 5), np.uint8)
    for frame in edited:
        hsv = cv2.cvtColor(cv2.resize(frame, size), cv2.COLOR_RGB2HSV)
        fg = ~((hsv[..., 2] > 200) & (hsv[..., 1] < 40))
        out.append(cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool))
    return np.stack(out)


def person_only(frames: np.ndarray) -> np.ndarray:
    h, w = frames.shape[1:3]
    small = np.stack([cv2.resize(f, (320, int(round(h * 320 / w)))) for f in frames])
    return np.stack([cv2.resize(p, (w, h)) > 0.5 for p in person_probability(small)])


def measure(fn, frames):
    tracemalloc.start()
    start = time.perf_counter()
    mask = fn(frames)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return mask, len(frames) / seconds, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/sparkle_tracker"))
    parser.add_argument("--out", default=".sparkle/benchmarks/mask_quality")
    parser.add_argument("--sam2-checkpoint", default=None)
    parser.add_argument("--sam2-config", default="configs/sam2.1/sam2.1_hiera_t.yaml")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clips = sorted(p for p in data.glob("*.mp4") if not p.stem.endswith("_edited"))
    if not clips:
        raise SystemExit(f"no reference clips in {data}")

    backends = {"person_only (baseline)": person_only,
                "classical BAIT": lambda f: bait_track(f, 16.0, ClassicalBackend(), args.passes).mask}
    if args.sam2_checkpoint:
        from sparkle_model.sam2_tracker import Sam2Backend

        sam2 = Sam2Backend(args.sam2_checkpoint, args.sam2_config, args.device)
        backends["sam2 BAIT"] = lambda f: bait_track(f, 16.0, sam2, args.passes).mask
    person_only(read_video(clips[0], max_frames=2))  # load MediaPipe before timing

    results = {name: {} for name in backends}
    for clip in clips:
        frames = read_video(clip)
        ref = reference_mask(read_video(clip.with_name(clip.stem + "_edited.mp4")), frames.shape[2:0:-1])
        n = min(len(frames), len(ref))
        frames, ref = frames[:n], ref[:n]
        for name, fn in backends.items():
            mask, fps, peak = measure(fn, frames)
            score = float(np.mean([iou(mask[t], ref[t]) for t in range(n)]))
            results[name][clip.stem] = {"iou": round(score, 3), "fps": round(fps, 1), "peak_mib": round(peak)}
            t = n // 2
            sheet = np.concatenate([frames[t], overlay(frames[t], ref[t], (48, 200, 48)), overlay(frames[t], mask[t])], 1)
            slug = name.split()[0]
            cv2.imwrite(str(out / f"{clip.stem}_{slug}.png"),
                        cv2.cvtColor(cv2.resize(sheet, None, fx=0.4, fy=0.4), cv2.COLOR_RGB2BGR))

    base = results["person_only (baseline)"]
    base_iou = np.mean([r["iou"] for r in base.values()])
    print(f"{'backend':<24} {'mean IoU':>8} {'vs baseline':>11} {'fps@720p':>9} {'peak MiB':>9}  per clip")
    for name, per in results.items():
        mean_iou = float(np.mean([r["iou"] for r in per.values()]))
        fps = float(np.mean([r["fps"] for r in per.values()]))
        peak = max(r["peak_mib"] for r in per.values())
        clips_txt = ", ".join(f"{k[-6:]}={v['iou']}" for k, v in per.items())
        print(f"{name:<24} {mean_iou:>8.3f} {mean_iou / base_iou:>10.2f}x {fps:>9.1f} {peak:>9}  {clips_txt}")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"mask pictures (source | reference | mask, middle frame) and results.json in {out.resolve()}")


if __name__ == "__main__":
    main()
