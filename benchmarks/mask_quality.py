"""Foreground-mask quality and speed against Sparkle's own foreground reference clips, per grounding backend.

    .venv/bin/python benchmarks/mask_quality.py [--data ../shared/data/sparkle_tracker]
        [--out .sparkle/benchmarks/mask_quality] [--sam2-checkpoint PATH | --sam2-random] [--device cpu]
        [--detector-dir DIR] [--vlm-url URL --vlm-model NAME | --vlm-model-dir DIR] [--max-frames N]

The reference mask of each clip is everything that is not near-white in Sparkle's "minimalist clean
white space" edit (HSV value > 200 and saturation < 40 is background, then a 5x5 opening), as the
data README describes: the person AND the objects they are with. Every backend runs BAIT on the full
720p clip; the baseline is MediaPipe's person segmentation alone, measured in the same run.

Grounding backends measured:

- `classical`: the default (person segmentation + motion evidence, its own boxes);
- `vlm (recorded oracle)`: the VLM grounding code (prompts, reply parsing, both rounds, the stored
  record) answered by RECORDED replies whose boxes are ORACLE boxes taken from the reference mask
  (its person part and its other components, e.g. the bicycle), i.e. what a VLM that boxes the person
  and the object they are with gives. It shows what the tracker makes of such boxes, not how good any
  VLM is. The replies are written to `recorded_replies_<clip>.json`;
- `detector` with `--detector-dir` (OWLv2 / Grounding DINO), `vlm` with a live model (`--vlm-url`
  + `--vlm-model`, or `--vlm-model-dir`).

Trackers: the classical one, and sam2 with `--sam2-checkpoint` (or `--sam2-random`: random weights
at 256 px, plumbing only, its masks mean nothing). Reported per clip: IoU with the reference, the
share of the reference's non-person part (the objects) covered, frames per second (decode excluded)
and peak traced memory; a PNG per clip and backend (source with round-1 boxes | reference | mask).
"""

from __future__ import annotations

import argparse
import json
import re
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

from sparkle_model import backends
from sparkle_model.bait import bait_track, sample_indices
from sparkle_model.foreground import person_probability
from sparkle_model.grounding import DEFAULT_VOCABULARY, RecordedGrounder, VlmGrounding, to_norm, to_pixels
from sparkle_model.masks import iou, overlay
from sparkle_model.video import read_video

FPS = 16.0
# labels for the recorded oracle replies, written after looking at the clips (boxes come from the reference)
ORACLE_LABELS = {"Sparkle_style_001408": ("man with long hair and a beard", "road bicycle behind him"),
                 "Sparkle_style_005093": ("man in a plaid shirt", "easel with a chart")}


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


def split_reference(ref: np.ndarray, person: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(person part, object part) of reference masks: the object part is what is left outside the
    (dilated) person segmentation, opened, without specks."""
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (25, 25))
    people, things = [], []
    for r, p in zip(ref, person):
        near = cv2.dilate(p.astype(np.uint8), grow).astype(bool)
        rest = cv2.morphologyEx((r & ~near).astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(rest, connectivity=8)
        big = [k for k in range(1, n) if stats[k, 4] >= 0.003 * r.size]
        people.append(r & near)
        things.append(np.isin(labels, big))
    return np.stack(people), np.stack(things)


def bbox_of(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return []
    h, w = mask.shape
    return to_norm([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], w, h)


def oracle_replies(clip: str, people: np.ndarray, things: np.ndarray, sampled: list[int]) -> list[str]:
    """The recorded replies: round 1 on the first sampled frame, then round 2 on each sampled frame,
    with the boxes of the reference's person part and object part."""
    labels = ORACLE_LABELS.get(clip, ("person", "object the person is with"))

    def objects(i: int) -> list[dict]:
        return [{"bbox_2d": bbox_of(part[i]), "label": label} for part, label in zip((people, things), labels)]

    def reply(items: list[dict]) -> str:
        return "```json\n" + json.dumps(items) + "\n```"

    return [reply([o for o in objects(sampled[0]) if o["bbox_2d"]])] + [reply(objects(i)) for i in sampled]


class RecordedVlm:
    """A VLM client that answers with recorded replies, in order."""

    def __init__(self, replies: list[str]):
        self.replies = list(replies)

    def generate(self, prompt: str, images: list[np.ndarray]) -> str:
        return self.replies.pop(0)


def grounded(grounding, tracker: dict, passes: int):
    """A BAIT runner: ground the sampled frames with `grounding` (an object with `ground_clip`, or a
    callable building one), then track with the `tracker` settings; returns (mask, record)."""
    def run(frames: np.ndarray):
        sampled = sample_indices(len(frames), FPS)
        source = grounding() if callable(grounding) else grounding
        record = source.ground_clip({i: frames[i] for i in sampled})
        backend = backends.mask_backend(tracker, RecordedGrounder(record))
        return bait_track(frames, FPS, backend, passes).mask, record
    return run


def measure(fn, frames):
    tracemalloc.start()
    start = time.perf_counter()
    out = fn(frames)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    mask, record = out if isinstance(out, tuple) else (out, None)
    return mask, record, len(frames) / seconds, peak / 2**20


def draw_boxes(frame: np.ndarray, record: dict | None) -> np.ndarray:
    out = frame.copy()
    h, w = out.shape[:2]
    for obj in (record or {}).get("round1", {}).get("objects", []):
        x1, y1, x2, y2 = to_pixels(obj["bbox_2d"], w, h)
        cv2.rectangle(out, (x1, y1), (x2, y2), (255, 230, 0), 4)
        cv2.putText(out, obj["label"][:40], (x1 + 6, y1 + 34), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (255, 230, 0), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/sparkle_tracker"))
    parser.add_argument("--out", default=".sparkle/benchmarks/mask_quality")
    parser.add_argument("--sam2-checkpoint", default=None)
    parser.add_argument("--sam2-config", default="configs/sam2.1/sam2.1_hiera_t.yaml")
    parser.add_argument("--sam2-random", action="store_true", help="random-weight sam2 at 256 px (plumbing only)")
    parser.add_argument("--detector-dir", default=None, help="a local OWLv2 / Grounding DINO directory")
    parser.add_argument("--detector-threshold", type=float, default=0.3)
    parser.add_argument("--vlm-url", default=None, help="an OpenAI-compatible base URL (with --vlm-model)")
    parser.add_argument("--vlm-model", default=None)
    parser.add_argument("--vlm-model-dir", default=None, help="a local transformers VLM directory")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--max-frames", type=int, default=None, help="only the first N frames of each clip")
    args = parser.parse_args()
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clips = sorted(p for p in data.glob("*.mp4") if not p.stem.endswith("_edited"))
    if not clips:
        raise SystemExit(f"no reference clips in {data}")

    trackers = {"classical": {"name": "classical"}}
    if args.sam2_checkpoint or args.sam2_random:
        trackers["sam2" if args.sam2_checkpoint else "sam2 random (plumbing)"] = {
            "name": "sam2", "checkpoint": args.sam2_checkpoint, "config": args.sam2_config, "device": args.device,
            "image_size": None if args.sam2_checkpoint else 256, "random_weights": not args.sam2_checkpoint}
    live = {}  # grounding name -> settings for backends.grounding
    if args.detector_dir:
        live["detector"] = {"name": "detector", "model_dir": args.detector_dir, "vocabulary": list(DEFAULT_VOCABULARY),
                            "threshold": args.detector_threshold, "device": args.device}
    if args.vlm_url or args.vlm_model_dir:
        vlm = ({"name": "endpoint", "base_url": args.vlm_url, "model": args.vlm_model,
                "api_key_env": "SPARKLE_VLM_API_KEY"} if args.vlm_url else
               {"name": "local", "model_dir": args.vlm_model_dir, "device": args.device})
        live["vlm (live)"] = {"name": "vlm", "vlm": vlm}
    person_only(read_video(clips[0], max_frames=2))  # load MediaPipe before timing
    if len(trackers) > 1:
        import torch

        torch.set_flush_denormal(True)  # after MediaPipe has started; random weights are far faster with it

    results: dict[str, dict] = {}
    for clip in clips:
        frames = read_video(clip, args.max_frames)
        ref = reference_mask(read_video(clip.with_name(clip.stem + "_edited.mp4"), args.max_frames),
                             frames.shape[2:0:-1])
        n = min(len(frames), len(ref))
        frames, ref = frames[:n], ref[:n]
        people, things = split_reference(ref, person_only(frames))
        sampled = sample_indices(n, FPS)
        replies = oracle_replies(clip.stem, people, things, sampled)
        (out / f"recorded_replies_{clip.stem}.json").write_text(json.dumps(
            {"note": "recorded replies with ORACLE boxes from the reference mask (person part, object part)",
             "frames": sampled, "replies": replies}, indent=1))
        runs = {"person_only (baseline)": person_only}
        for tname, tracker in trackers.items():
            runs[f"classical + {tname}"] = lambda f, t=tracker: bait_track(f, FPS, backends.mask_backend(t),
                                                                           args.passes).mask
            runs[f"vlm (recorded oracle) + {tname}"] = grounded(lambda: VlmGrounding(RecordedVlm(replies)), tracker,
                                                                 args.passes)
            for gname, settings in live.items():
                runs[f"{gname} + {tname}"] = grounded(lambda s=settings: backends.grounding(s), tracker, args.passes)
        for name, fn in runs.items():
            mask, record, fps, peak = measure(fn, frames)
            score = float(np.mean([iou(mask[t], ref[t]) for t in range(n)]))
            covered = float((mask & things).sum() / max(1, things.sum()))
            results.setdefault(name, {})[clip.stem] = {"iou": round(score, 3), "object_coverage": round(covered, 3),
                                                       "fps": round(fps, 1), "peak_mib": round(peak)}
            t = n // 2
            sheet = np.concatenate([draw_boxes(frames[0], record), overlay(frames[t], ref[t], (48, 200, 48)),
                                    overlay(frames[t], mask[t])], 1)
            slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
            cv2.imwrite(str(out / f"{clip.stem}_{slug}.png"),
                        cv2.cvtColor(cv2.resize(sheet, None, fx=0.4, fy=0.4), cv2.COLOR_RGB2BGR))

    base = float(np.mean([r["iou"] for r in results["person_only (baseline)"].values()]))
    print(f"{'backend (grounding + tracker)':<40} {'mean IoU':>8} {'vs base':>8} {'objects':>8} {'fps@720p':>9} "
          f"{'peak MiB':>9}  per clip IoU / object coverage")
    for name, per in results.items():
        mean_iou = float(np.mean([r["iou"] for r in per.values()]))
        cover = float(np.mean([r["object_coverage"] for r in per.values()]))
        fps = float(np.mean([r["fps"] for r in per.values()]))
        peak = max(r["peak_mib"] for r in per.values())
        clips_txt = ", ".join(f"{k[-6:]}={v['iou']}/{v['object_coverage']}" for k, v in per.items())
        print(f"{name:<40} {mean_iou:>8.3f} {mean_iou / base:>7.2f}x {cover:>8.3f} {fps:>9.1f} {peak:>9}  {clips_txt}")
    print("vlm (recorded oracle): recorded replies whose boxes are ORACLE boxes taken from the reference masks "
          "(person part + object part); they measure the tracker given such boxes, not a VLM.")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"pictures (source with round-1 boxes | reference | mask, middle frame), recorded replies and results.json "
          f"in {out.resolve()}")


if __name__ == "__main__":
    main()
