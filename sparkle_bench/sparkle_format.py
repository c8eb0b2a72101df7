"""The Sparkle release layout (Kiwi-Edit compatible) and Sparkle-Bench's: paths, serialisation, readers.

Training release, under one root::

    prompts/{theme}_train.csv               prompt,src_video,tgt_video,task (paths relative to the root)
    prompts/{theme}_train_metadata.jsonl    {id, prompt, metadata: {edit_type, chosen_keyword, original_scene}}
    {theme}/source_video/{id}.mp4, {theme}/edited_video/{id}.mp4
    intermediate_data/{theme}/source_frame0/{id}.png, edited_frame0/, edited_frame0_foreground_removed/,
        edited_background_video/{id}.mp4, source_video_mask/{id}.npz, edited_video_canny/{id}.mp4,
        edited_frame0_score.jsonl, edited_frame0_foreground_removed_score.jsonl, edited_video_score.jsonl,
        foreground_grounding_r1.jsonl, foreground_grounding_r2.jsonl (rows whose masks followed VLM or
        detector boxes: `grounding_lines`)
    release_manifest/{theme}.json           (ours) content hash and lineage ids behind every row

Bench, under one root: `{theme}_bench.csv` (edited_type,prompt,original_video with
`source_videos/{theme}/{id}.mp4`), `{theme}_metadata.jsonl`, `source_videos/{theme}/`, and
optionally `ref_images/{theme}/{id}.png`. The readers accept the real release downloaded from
Hugging Face (missing intermediates are simply absent) as well as our export.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

TRAIN_COLUMNS = ("prompt", "src_video", "tgt_video", "task")
BENCH_COLUMNS = ("edited_type", "prompt", "original_video")
# intermediate role -> (folder under intermediate_data/{theme}/, extension)
INTERMEDIATES = {
    "source_frame0": ("source_frame0", "png"),
    "edited_frame0": ("edited_frame0", "png"),
    "edited_frame0_foreground_removed": ("edited_frame0_foreground_removed", "png"),
    "edited_background_video": ("edited_background_video", "mp4"),
    "source_video_mask": ("source_video_mask", "npz"),
    "edited_video_canny": ("edited_video_canny", "mp4"),
}
SCORE_FILES = ("edited_frame0_score", "edited_frame0_foreground_removed_score", "edited_video_score")
GROUNDING_FILES = ("foreground_grounding_r1", "foreground_grounding_r2")


def grounding_lines(task: str, prompt: str, edit_type: str, record: dict) -> dict[str, dict]:
    """The release's two grounding records of one row from a grounding record
    (sparkle_model.grounding): round 1 on frame 0, and round 2 adding `frame_objects`, one list per
    sampled frame with every round-1 label (an empty `bbox_2d` where it was not found)."""
    def objects(items: list[dict]) -> list[dict]:
        return [{"bbox_2d": list(o["bbox_2d"]), "label": o["label"]} for o in items]

    r1 = {"id": task, "prompt": prompt, "edit_type": edit_type, "round1_labels": list(record["round1"]["labels"]),
          "round1_objects": objects(record["round1"]["objects"])}
    return {"foreground_grounding_r1": r1,
            "foreground_grounding_r2": {**r1, "frame_objects": [objects(f) for f in record["round2"]["frame_objects"]]}}


class ReleaseFormatError(ValueError):
    """A release or bench folder that does not follow the layout; the message says where."""


def train_paths(theme: str, task: str) -> dict[str, str]:
    """Every file of one training row, relative to the release root, by role."""
    paths = {"src_video": f"{theme}/source_video/{task}.mp4", "tgt_video": f"{theme}/edited_video/{task}.mp4"}
    for role, (folder, ext) in INTERMEDIATES.items():
        paths[role] = f"intermediate_data/{theme}/{folder}/{task}.{ext}"
    return paths


def bench_paths(theme: str, task: str) -> dict[str, str]:
    return {"original_video": f"source_videos/{theme}/{task}.mp4", "ref_image": f"ref_images/{theme}/{task}.png"}


def csv_text(columns: tuple[str, ...], rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows([{c: r[c] for c in columns} for r in rows])
    return buf.getvalue()


def jsonl_text(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ReleaseFormatError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(columns)}")
        return list(reader)


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    if not path.is_file():
        return rows
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ReleaseFormatError(f"{path}:{n}: not JSON ({exc.msg})") from exc
    return rows


def _inside(root: Path, rel: str, where: str) -> Path:
    path = (root / rel).resolve()
    if root not in path.parents:
        raise ReleaseFormatError(f"{where}: path {rel!r} leaves the release folder {root}")
    return path


@dataclass
class ReleaseRow:
    theme: str
    task: str
    prompt: str
    src_video: Path
    tgt_video: Path
    metadata: dict = field(default_factory=dict)  # edit_type, chosen_keyword, original_scene
    intermediates: dict[str, Path] = field(default_factory=dict)  # the roles present on disk
    scores: dict[str, dict] = field(default_factory=dict)  # score file -> its record for this id
    grounding: dict[str, dict] = field(default_factory=dict)  # grounding file -> its record for this id


def release_themes(root: str | Path) -> list[str]:
    prompts = Path(root) / "prompts"
    return sorted(p.name[: -len("_train.csv")] for p in prompts.glob("*_train.csv"))


def read_release(root: str | Path, themes: list[str] | None = None, require_files: bool = True) -> list[ReleaseRow]:
    """Every training row of a release folder. With `require_files`, a row whose source or edited
    video is missing raises ReleaseFormatError (listing every missing file)."""
    root = Path(root).expanduser().resolve()
    if not (root / "prompts").is_dir():
        raise ReleaseFormatError(f"{root} is not a Sparkle release folder (no prompts/ folder)")
    out, missing = [], []
    for theme in themes or release_themes(root):
        csv_path = root / "prompts" / f"{theme}_train.csv"
        if not csv_path.is_file():
            raise ReleaseFormatError(f"{root}: no prompts/{theme}_train.csv")
        meta = {r["id"]: r for r in read_jsonl(root / "prompts" / f"{theme}_train_metadata.jsonl")}
        by_file = {name: {r["id"]: r for r in read_jsonl(root / "intermediate_data" / theme / f"{name}.jsonl")
                          if "id" in r} for name in SCORE_FILES + GROUNDING_FILES}
        for n, r in enumerate(_read_csv(csv_path, TRAIN_COLUMNS), start=2):
            where = f"{csv_path}:{n}"
            task = r["task"].strip()
            row = ReleaseRow(theme=theme, task=task, prompt=r["prompt"], src_video=_inside(root, r["src_video"], where),
                             tgt_video=_inside(root, r["tgt_video"], where),
                             metadata=meta.get(task, {}).get("metadata", {}))
            for role, rel in train_paths(theme, task).items():
                if role in INTERMEDIATES and (root / rel).is_file():
                    row.intermediates[role] = root / rel
            row.scores = {name: by_file[name][task] for name in SCORE_FILES if task in by_file[name]}
            row.grounding = {name: by_file[name][task] for name in GROUNDING_FILES if task in by_file[name]}
            missing += [f"{where}: {p}" for p in (row.src_video, row.tgt_video) if not p.is_file()]
            out.append(row)
    if require_files and missing:
        raise ReleaseFormatError(f"{len(missing)} missing video file(s): " + "; ".join(missing[:5]))
    return out


@dataclass
class BenchRow:
    theme: str
    task: str
    prompt: str
    original_video: Path
    metadata: dict = field(default_factory=dict)


def read_bench(root: str | Path, themes: list[str] | None = None) -> list[BenchRow]:
    """Every row of a Sparkle-Bench folder (ours or the released one); source videos must exist."""
    root = Path(root).expanduser().resolve()
    themes = themes or sorted(p.name[: -len("_bench.csv")] for p in root.glob("*_bench.csv"))
    out, missing = [], []
    for theme in themes:
        csv_path = root / f"{theme}_bench.csv"
        meta = {r["id"]: r for r in read_jsonl(root / f"{theme}_metadata.jsonl")}
        for n, r in enumerate(_read_csv(csv_path, BENCH_COLUMNS), start=2):
            video = _inside(root, r["original_video"], f"{csv_path}:{n}")
            task = video.stem
            out.append(BenchRow(theme, task, r["prompt"], video, meta.get(task, {}).get("metadata", {})))
            if not video.is_file():
                missing.append(f"{csv_path}:{n}: {video}")
    if missing:
        raise ReleaseFormatError(f"{len(missing)} missing source video(s): " + "; ".join(missing[:5]))
    return out


OPENVE_BACKGROUND = "background_change"
MAX_OUTPUT_BYTES = 1 << 30  # an edited video larger than this is refused before anything reads it


@dataclass
class OpenVeRow:
    task: str
    prompt: str
    original_video: Path


def read_openve(csv_path: str | Path, root: str | Path | None = None) -> list[OpenVeRow]:
    """The background-change rows of an OpenVE-Bench CSV (`edited_type,prompt,original_video`;
    `original_video` relative to `root`, by default the CSV's folder, and kept inside it). A missing
    video raises ReleaseFormatError listing them."""
    csv_path = Path(csv_path).expanduser().resolve()
    if not csv_path.is_file():
        raise ReleaseFormatError(f"OpenVE-Bench CSV does not exist: {csv_path}")
    base = Path(root).expanduser().resolve() if root else csv_path.parent
    out, missing = [], []
    for n, r in enumerate(_read_csv(csv_path, BENCH_COLUMNS), start=2):
        if r["edited_type"].strip() != OPENVE_BACKGROUND:
            continue
        video = _inside(base, r["original_video"].strip(), f"{csv_path}:{n}")
        out.append(OpenVeRow(video.stem, r["prompt"], video))
        if not video.is_file():
            missing.append(f"{csv_path}:{n}: {video}")
    if missing:
        raise ReleaseFormatError(f"{len(missing)} missing source video(s): " + "; ".join(missing[:5]))
    return out


def edited_output_candidates(theme: str, task: str, chosen_keyword: str | None) -> list[str]:
    """Where an editing model's output for one bench row may be, relative to its results folder, in
    the order looked at: Kiwi-Edit's / Sparkle's inference layout
    `{theme}/{subtheme}---{scene_key}/{id}_edited.mp4` (`scene_key` = the scene with spaces as
    underscores), then `{theme}/{id}_edited.mp4`, then flat `{id}_edited.mp4`."""
    name = f"{task}_edited.mp4"
    out = []
    if chosen_keyword and ": " in chosen_keyword:
        subtheme, scene = chosen_keyword.split(": ", 1)
        out.append(f"{theme}/{subtheme}---{scene.replace(' ', '_')}/{name}")
    return out + [f"{theme}/{name}", name]


def find_edited_output(folder: str | Path, theme: str, task: str, chosen_keyword: str | None) -> Path | None:
    """The first existing candidate of `edited_output_candidates` inside `folder` (else any
    `{theme}/*/{id}_edited.mp4`, for a run whose scene keywords differ from ours), or None. Paths that
    leave the folder or files over `MAX_OUTPUT_BYTES` are refused with ReleaseFormatError."""
    if not re.fullmatch(r"[\w.\-]+", task) or task.startswith("."):
        raise ReleaseFormatError(f"bench id {task!r} is not a plain file name")
    root = Path(folder).expanduser().resolve()
    found = [root / rel for rel in edited_output_candidates(theme, task, chosen_keyword)]
    found += sorted((root / theme).glob(f"*/{task}_edited.mp4")) if (root / theme).is_dir() else []
    for path in found:
        resolved = path.resolve()
        if root not in resolved.parents:
            raise ReleaseFormatError(f"output path for {task!r} leaves the results folder {root}")
        if resolved.is_file():
            if resolved.stat().st_size > MAX_OUTPUT_BYTES:
                raise ReleaseFormatError(f"{resolved}: larger than {MAX_OUTPUT_BYTES >> 20} MiB")
            return resolved
    return None
