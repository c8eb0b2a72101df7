"""Foreground grounding for BAIT: the clip's foreground objects, boxed on the frames sampled at ~2 fps.

The paper asks a VLM twice (Sparkle, stages 3-4):

- round 1, on frame 0: every foreground object to keep (each person, parts worth tracking on their own,
  and the things people are with: a bicycle, an easel, the chair they sit on), as labels with `bbox_2d`
  in Qwen-VL's normalised [0, 1000] `x1, y1, x2, y2` form;
- round 2, on every sampled frame: each round-1 label re-located, an empty box where it is not seen.

`VlmGrounding` does that through any client with `generate(prompt, images) -> str`. A reply that holds
no JSON list of boxes is asked again with a reminder of the format; after `attempts` tries the clip
fails with a `GroundingError` quoting the reply. `DetectorGrounding` fills the same record from an
open-vocabulary detector (OWLv2 or Grounding DINO through transformers, from a local directory) prompted
with `person` plus a vocabulary of things people are with. A record keeps every prompt and raw reply;
its round-1 / round-2 parts carry the fields of the release's foreground_grounding_r1/r2.jsonl
(`sparkle_bench.sparkle_format.grounding_lines`). `RecordedGrounder` serves a record's boxes to BAIT.

Coordinates: the VLM is asked for [0, 1000] coordinates, Qwen3-VL's native convention (and the
release's). Qwen2.5-VL answers in pixels of its resized input instead; use a Qwen3-VL-class model.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .bait import Box

NORM = 1000
MAX_OBJECTS = 16  # round-1 objects kept (a reply is untrusted text)
MAX_LABEL = 120  # characters
ATTEMPTS = 3  # tries per question: the first and two retries
MAX_REPLY = 20_000  # characters of a reply kept in the record
DEFAULT_VOCABULARY = ("bicycle", "chair", "table", "laptop", "guitar", "microphone", "easel", "car", "dog", "cat",
                      "horse", "umbrella", "bag", "ball", "book", "phone", "cup", "skateboard")

ROUND1_PROMPT = (
    "The image is the first frame of a fixed-camera video whose background will be replaced. List every "
    "foreground object that must be kept: each person (the whole person, plus separate entries for parts worth "
    "tracking on their own such as hands or a hat) and every object a person is holding, using, wearing, sitting "
    "or leaning on, or standing with (for example a bicycle, an easel, a chair, a car, an animal). Leave out the "
    "background scenery. Give each object a short distinct label and its box as "
    "{\"bbox_2d\": [x1, y1, x2, y2], \"label\": \"...\"} with coordinates normalised to 0-1000 (x1, y1 the "
    "top-left corner, x2, y2 the bottom-right). Reply with the JSON list only.")
RETRY_NOTE = "\nYour previous reply could not be read as a JSON list of boxes. Reply with the JSON list only."


class GroundingError(RuntimeError):
    """Grounding could not be done: an unusable model directory, or replies that never parsed."""


def round2_prompt(labels: Sequence[str]) -> str:
    listing = "\n".join(f"{n}. {json.dumps(label, ensure_ascii=False)}" for n, label in enumerate(labels, start=1))
    return ("Locate each of these objects in the image:\n" + listing + "\n"
            "Reply with a JSON list with one item per object, in this order: {\"bbox_2d\": [x1, y1, x2, y2], "
            "\"label\": the label exactly as written above}, coordinates normalised to 0-1000 (x1, y1 the top-left "
            "corner, x2, y2 the bottom-right). Use \"bbox_2d\": [] for an object that is not visible in this image.")


# -- replies and boxes ---------------------------------------------------------------------------------------------

def parse_boxes(text: str) -> list[dict] | None:
    """The box objects of a grounding reply: a JSON list of `{"bbox_2d": ..., "label": ...}` (bare, in a
    ```json fence, or with prose around it) or a single such object. `[]` for an empty list; None when
    the reply holds no such JSON at all."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, flags=re.S)
    body = (fenced.group(1) if fenced else text).strip()
    start, end = body.find("["), body.rfind("]")
    for candidate in (body, body[start:end + 1] if 0 <= start < end else None):
        if candidate is None:
            continue
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            value = [value]
        if isinstance(value, list):
            items = [o for o in value if isinstance(o, dict) and "bbox_2d" in o]
            return items if items or not value else None
    items = []
    for chunk in re.findall(r"\{[^{}]*\}", body):
        try:
            obj = json.loads(chunk)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and "bbox_2d" in obj:
            items.append(obj)
    return items or None


def clean_bbox(value) -> list[int] | None:
    """A reply's `bbox_2d` as [x1, y1, x2, y2] integers in [0, 1000], ordered; `[]` for an empty or
    degenerate box; None when it is not a box at all."""
    if value in (None, "", []):
        return []
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    if not isinstance(value, list) or len(value) != 4:
        return None
    try:
        coords = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in coords):
        return None
    x1, y1, x2, y2 = (int(round(min(max(v, 0.0), NORM))) for v in coords)
    x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
    return [x1, y1, x2, y2] if x2 > x1 and y2 > y1 else []


def to_pixels(bbox: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """A [0, 1000] box in pixels of a width x height frame, clamped and ordered (the release
    README's `normalize_bbox`)."""
    x1, y1 = int(bbox[0] / NORM * width), int(bbox[1] / NORM * height)
    x2, y2 = int(bbox[2] / NORM * width), int(bbox[3] / NORM * height)
    x1, x2 = max(0, min(min(x1, x2), width - 1)), max(0, min(max(x1, x2), width - 1))
    y1, y2 = max(0, min(min(y1, y2), height - 1)), max(0, min(max(y1, y2), height - 1))
    return x1, y1, x2, y2


def to_norm(box: Sequence[float], width: int, height: int) -> list[int]:
    """A pixel box (x1, y1, x2, y2) in the [0, 1000] form (`clean_bbox` rules)."""
    return clean_bbox([box[0] / width * NORM, box[1] / height * NORM, box[2] / width * NORM,
                       box[3] / height * NORM]) or []


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def unique_label(label: str, taken: set[str]) -> str:
    """`label`, or `label 2`, `label 3`... when it is taken (round 2 matches labels by name)."""
    out, n = label, 1
    while out.lower() in taken:
        n += 1
        out = f"{label} {n}"
    taken.add(out.lower())
    return out


def round1_objects(items: list[dict]) -> list[dict]:
    """Round-1 objects from parsed reply items: usable boxes only, short distinct labels."""
    objects, taken = [], set()
    for item in items:
        bbox = clean_bbox(item.get("bbox_2d"))
        if not bbox:
            continue
        label = " ".join(str(item.get("label") or "").split())[:MAX_LABEL] or f"object {len(objects) + 1}"
        objects.append({"bbox_2d": bbox, "label": unique_label(label, taken)})
        if len(objects) == MAX_OBJECTS:
            break
    return objects


def relocated(labels: Sequence[str], items: list[dict]) -> list[dict]:
    """Round 2 on one frame: every round-1 label with the box the reply gave it (by name), `[]` if none."""
    found: dict[str, list[int]] = {}
    for item in items:
        key = " ".join(str(item.get("label") or "").split()).lower()
        bbox = clean_bbox(item.get("bbox_2d"))
        if key and key not in found and bbox is not None:
            found[key] = bbox
    return [{"bbox_2d": found.get(label.lower(), []), "label": label} for label in labels]


# -- grounders -----------------------------------------------------------------------------------------------------

def _record(backend: str, frames: dict[int, np.ndarray], round1: dict, round2: dict) -> dict:
    h, w = next(iter(frames.values())).shape[:2]
    return {"backend": backend, "size": [w, h], "frames": sorted(frames), "round1": round1, "round2": round2}


class VlmGrounding:
    """The paper's two grounding rounds through a VLM client (`generate(prompt, images) -> str`)."""

    def __init__(self, client, attempts: int = ATTEMPTS):
        self.client, self.attempts = client, attempts

    def ask(self, prompt: str, image: np.ndarray, what: str) -> tuple[list[dict], list[dict]]:
        """(parsed box items, the exchanges); retried with a format reminder while the reply does not parse."""
        exchanges, reply = [], ""
        for attempt in range(self.attempts):
            text = prompt if attempt == 0 else prompt + RETRY_NOTE
            reply = self.client.generate(text, [image])
            exchanges.append({"prompt": text, "reply": reply[:MAX_REPLY]})
            items = parse_boxes(reply)
            if items is not None:
                return items, exchanges
        raise GroundingError(f"{what}: no JSON list of boxes in the VLM reply after {self.attempts} tries; "
                             f"last reply: {reply[:200]!r}")

    def ground_clip(self, frames: dict[int, np.ndarray]) -> dict:
        """The grounding record of a clip from its sampled frames (index -> RGB), round 1 on the first."""
        indices = sorted(frames)
        items, first = self.ask(ROUND1_PROMPT, frames[indices[0]], f"round 1 (frame {indices[0]})")
        objects = round1_objects(items)
        labels = [o["label"] for o in objects]
        frame_objects, exchanges = [], []
        for i in indices:
            if not labels:
                frame_objects.append([])
                exchanges.append([])
                continue
            items, asked = self.ask(round2_prompt(labels), frames[i], f"round 2 (frame {i})")
            frame_objects.append(relocated(labels, items))
            exchanges.append(asked)
        return _record("vlm", frames, {"frame": indices[0], "labels": labels, "objects": objects, "exchanges": first},
                       {"frame_objects": frame_objects, "exchanges": exchanges})


class TransformersDetector:
    """An open-vocabulary detector (OWLv2 / OWL-ViT or Grounding DINO) from a local transformers directory."""

    def __init__(self, model_dir: str, device: str = "cpu"):
        if not model_dir or not Path(model_dir).is_dir():
            raise GroundingError(f"mask_backend.detector_dir ({model_dir or 'unset'}) is not a directory: set it (or "
                                 "SPARKLE_DETECTOR_DIR) to a local OWLv2 or Grounding DINO model")
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModelForZeroShotObjectDetection.from_pretrained(model_dir, local_files_only=True).to(device)
        self.model.eval()
        self.device = device
        self.is_dino = "grounding" in self.model.config.model_type

    def detect(self, rgb: np.ndarray, queries: Sequence[str], threshold: float) -> list[tuple[str, float, list[int]]]:
        """(query, score, [0, 1000] box) for every detection above `threshold`."""
        import torch
        from PIL import Image

        h, w = rgb.shape[:2]
        inputs = self.processor(text=[list(queries)], images=Image.fromarray(rgb), return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        if self.is_dino:
            res = self.processor.post_process_grounded_object_detection(
                outputs, inputs["input_ids"], threshold=threshold, text_threshold=threshold, target_sizes=[(h, w)])[0]
            names = [_query_of(str(t), queries) for t in res["text_labels"]]
        else:  # OWL pads bottom/right to a square before resizing: boxes are in that square's pixels
            side = max(h, w)
            res = self.processor.post_process_grounded_object_detection(
                outputs=outputs, threshold=threshold, target_sizes=[(side, side)], text_labels=[list(queries)])[0]
            names = [queries[int(k)] for k in res["labels"]]
        out = []
        for name, score, box in zip(names, res["scores"].tolist(), res["boxes"].tolist()):
            norm = to_norm([min(max(box[0], 0), w), min(max(box[1], 0), h), min(max(box[2], 0), w),
                            min(max(box[3], 0), h)], w, h)
            if name is not None and norm:
                out.append((name, round(float(score), 4), norm))
        return out


def _query_of(phrase: str, queries: Sequence[str]) -> str | None:
    """The query a Grounding DINO phrase (decoded tokens, lower case) stands for."""
    phrase = " ".join(phrase.lower().split())
    for q in queries:
        if phrase == q.lower():
            return q
    return next((q for q in queries if q.lower() in phrase or (phrase and phrase in q.lower())), None)


class DetectorGrounding:
    """Both rounds from an open-vocabulary detector: round 1 = frame 0's detections of `person` and the
    vocabulary (per-query non-maximum suppression, at most `max_objects`); round 2 = on each sampled
    frame, each object's detection of the same query that overlaps its last known box most."""

    def __init__(self, detector, vocabulary: Sequence[str], threshold: float, max_objects: int = 8,
                 min_overlap: float = 0.1):
        self.detector, self.threshold = detector, threshold
        self.max_objects, self.min_overlap = max_objects, min_overlap
        self.queries = ["person"] + [v for v in dict.fromkeys(vocabulary) if v and v != "person"]

    def ground_clip(self, frames: dict[int, np.ndarray]) -> dict:
        indices = sorted(frames)
        found = {i: self.detector.detect(frames[i], self.queries, self.threshold) for i in indices}
        kept: list[tuple[str, float, list[int]]] = []
        for det in sorted(found[indices[0]], key=lambda d: -d[1]):
            if all(det[0] != k[0] or box_iou(det[2], k[2]) < 0.5 for k in kept):
                kept.append(det)
        taken: set[str] = set()
        objects = [{"bbox_2d": box, "label": unique_label(query, taken), "query": query, "score": score}
                   for query, score, box in kept[:self.max_objects]]
        last = [o["bbox_2d"] for o in objects]
        frame_objects = []
        for i in indices:
            row = []
            for n, obj in enumerate(objects):
                same = [d for d in found[i] if d[0] == obj["query"]]
                best = max(same, key=lambda d: box_iou(d[2], last[n]), default=None)
                box = best[2] if best is not None and box_iou(best[2], last[n]) >= self.min_overlap else []
                if box:
                    last[n] = box
                row.append({"bbox_2d": box, "label": obj["label"]})
            frame_objects.append(row)
        return _record("detector", frames,
                       {"frame": indices[0], "labels": [o["label"] for o in objects], "objects": objects,
                        "queries": self.queries, "threshold": self.threshold},
                       {"frame_objects": frame_objects})


class RecordedGrounder:
    """BAIT's `ground` from a stored grounding record: round 2's boxes on the sampled frames, in pixels."""

    def __init__(self, record: dict):
        self.by_frame = dict(zip(record["frames"], record["round2"]["frame_objects"]))

    def prepare(self, frames: np.ndarray) -> None:
        """Nothing to prepare: the boxes are stored."""

    def ground(self, frames: np.ndarray, indices: Sequence[int]) -> dict[int, list[Box]]:
        h, w = frames.shape[1:3]
        out = {}
        for i in indices:
            boxes = []
            for obj in self.by_frame.get(i, []):
                if obj["bbox_2d"]:
                    x1, y1, x2, y2 = to_pixels(obj["bbox_2d"], w, h)
                    if x2 > x1 and y2 > y1:
                        boxes.append(Box(x1, y1, x2, y2, obj["label"], float(obj.get("score", 1.0))))
            out[i] = boxes
        return out
