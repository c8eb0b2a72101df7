"""Sparkle-Bench results as the paper aggregates them, and the official script's JSONL in and out.

Aggregation (Sparkle's `eval_sparkle_bench_gemini.py`): per theme, the mean of each dimension over
the judged rows, Overall = the mean of the six means; across themes an unweighted macro average of
the per-theme means (Overall again the mean of the six). A row counts only when it carries six
scores: failed judgments and missing outputs shrink n, they are never scored 0; here they are
counted per cell instead of being dropped silently.

Files: `{theme}_{judge}_sparkle_score.jsonl`, one JSON object per line with the sample's metadata
(`id`, `prompt`, `edit_type`, `subtheme`, `scene`), `scores` (six ints, capped) and `result` (the
judge's reply). `read_results_dir` reads a folder of such files written anywhere (by the official
script or by us), so results computed elsewhere sit beside ours.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from .rubric import DIMENSIONS

RESULT_FILE = re.compile(r"^(?P<theme>[a-z][a-z0-9_]*)_(?P<judge>.+)_sparkle_score\.jsonl$")


def theme_means(rows: Iterable[list[int | float]]) -> dict | None:
    """{dim: mean, overall, n} over score lists of six; None when there is none."""
    rows = [r for r in rows if isinstance(r, list) and len(r) == len(DIMENSIONS)]
    if not rows:
        return None
    means = [sum(r[i] for r in rows) / len(rows) for i in range(len(DIMENSIONS))]
    return {**dict(zip(DIMENSIONS, means)), "overall": sum(means) / len(DIMENSIONS), "n": len(rows)}


def macro_means(per_theme: dict[str, dict | None]) -> dict | None:
    """The unweighted mean over themes of each dimension's mean; `n` is the total of rows."""
    present = [v for v in per_theme.values() if v]
    if not present:
        return None
    means = [sum(v[d] for v in present) / len(present) for d in DIMENSIONS]
    return {**dict(zip(DIMENSIONS, means)), "overall": sum(means) / len(DIMENSIONS),
            "n": sum(v["n"] for v in present), "themes": len(present)}


def official_row(sample_id: str, prompt: str, edit_type: str, chosen_keyword: str, scores: list[int],
                 result: str) -> dict:
    """One line of the official JSONL (`chosen_keyword` is "subtheme: scene")."""
    subtheme, _, scene = (chosen_keyword or "").partition(": ")
    return {"id": sample_id, "prompt": prompt, "edit_type": edit_type, "subtheme": subtheme, "scene": scene,
            "scores": [int(s) for s in scores], "result": result}


def jsonl_lines(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def read_jsonl_scores(path: str | Path, theme: str) -> tuple[list[list], int]:
    """The score lists of the rows of `path` whose `edit_type` is `theme` (as the official script
    counts them), and how many lines were skipped (invalid JSON, another edit type, no six scores)."""
    scores, skipped = [], 0
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        s = record.get("scores") if isinstance(record, dict) else None
        if record.get("edit_type") == theme and isinstance(s, list) and len(s) == len(DIMENSIONS):
            scores.append(s)
        else:
            skipped += 1
    return scores, skipped


def read_results_dir(folder: str | Path) -> dict[str, dict[str, dict]]:
    """judge -> theme -> {means (theme_means), skipped, path} for every result file in `folder`."""
    out: dict[str, dict[str, dict]] = {}
    for path in sorted(Path(folder).glob("*_sparkle_score.jsonl")):
        m = RESULT_FILE.match(path.name)
        if not m:
            continue
        scores, skipped = read_jsonl_scores(path, m["theme"])
        out.setdefault(m["judge"], {})[m["theme"]] = {"means": theme_means(scores), "skipped": skipped,
                                                       "path": str(path)}
    return out
