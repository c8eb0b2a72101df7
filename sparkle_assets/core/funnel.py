"""The yield and cost funnel: per stage, the items in, kept and dropped (by reason), the compute
spent and the compute that never reached the dataset, attributed to the filter that discarded it.

For one partition (a theme, or the theme-independent stages), each stage row reads the stage's
latest materialization (the same rows `sparkle run`'s table counts: `kept` is its number):

- ``in``: the stage's items (its main kind) in that materialization: ``kept + dropped + failed``
  (for `source_clips`, the clips cut plus the files quarantined or failed, one item each);
- ``dropped`` / ``failed``: counts per reason, numbers in a reason replaced by ``N`` so that
  ``camera motion 3.1 %diag/s > 2`` and ``camera motion 5.0 %diag/s > 2`` are one reason;
- ``spent_s``: the recorded wall seconds (``artifact_cost``) of every artifact of the materialization,
  companions and sub-steps included (the compute these results embody, whichever run made them);
- ``wasted_s``: the full cost (core.costs) of the items this stage dropped or failed: their own
  compute and their share of everything upstream of them, which never reaches the dataset.

`funnel_metadata` renders a theme's funnel for the UI: a table, a bar plot (items kept, dropped and
failed per stage, and compute spent and wasted), and where the plot is saved.
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from dataclasses import dataclass, field

from .costs import full_costs
from .lineage import UNPARTITIONED
from .store import atomic_write_bytes, contained

SHARED_STAGES = [("source_clips", "source_clip", "clips"), ("static_clips", "static_clip", "fixed-cam"),
                 ("foreground_masks", "foreground_mask", "masks"), ("clean_backgrounds", "clean_background", "clean")]
# the per-theme stages as `sparkle run`'s table shows them: (asset, main kind, short name)
THEME_STAGES = [("instructions", "instruction", "instr"), ("edited_first_frames", "edited_first_frame", "frame0"),
                ("background_plates", "background_plate", "plate"), ("background_videos", "background_video", "bg_video"),
                ("guidance_videos", "guidance_video", "guidance"), ("edited_videos", "edited_video", "edited"),
                ("pair_scores", "pair_score", "scored"), ("curated_pairs", "curated_pair", "FINAL"),
                ("bench_split", "bench_row", "bench")]
DATASET_STAGE = ("sparkle_dataset", "dataset_row", "dataset")
FUNNEL_STAGES = THEME_STAGES[:-1] + [DATASET_STAGE]  # the way to the dataset (bench rows are a by-road)


@dataclass
class StageFunnel:
    stage: str
    short: str
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    spent_s: float = 0.0
    wasted_s: float = 0.0
    costed: int = 0  # artifacts with a recorded cost, of `artifacts`
    artifacts: int = 0
    item_costs: tuple[float, ...] = ()  # recorded wall seconds per clip (all its artifacts of the stage)

    @property
    def n_in(self) -> int:
        return self.kept + sum(self.dropped.values()) + sum(self.failed.values())

    def as_dict(self) -> dict:
        return {"stage": self.stage, "in": self.n_in, "kept": self.kept, "dropped": self.dropped,
                "failed": self.failed, "spent_s": round(self.spent_s, 3), "wasted_s": round(self.wasted_s, 3)}


def reason_of(reason: str | None) -> str:
    """A reason with its numbers replaced by N (at most 80 characters)."""
    return re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "N", reason or "no reason")[:80]


def stage_funnels(db, stages: list[tuple[str, str, str]], partition: str) -> list[StageFunnel]:
    """The funnel rows of `stages` (asset, main kind, short name) in one partition (see the module
    docstring): per stage its decisions and per-clip costs, then the full cost of everything lost."""
    out, lost = [], {}
    with db.session():  # one read connection for every query
        for stage, kind, short in stages:
            f = StageFunnel(stage, short)
            rows = db.query("SELECT a.id, a.kind, a.status, a.reason FROM current_artifact c JOIN artifact a "
                            "ON a.id = c.artifact_id WHERE c.asset_key = ? AND c.partition = ? AND (a.kind = ? OR "
                            "(a.kind = 'source_file' AND a.status != 'ok'))", [stage, partition, kind])
            # source_clips: the files that yielded no clip (quarantined or failed) count as items too
            rows = [r for r in rows if r["kind"] == kind or stage == "source_clips"]
            per_clip = db.query(
                "SELECT b.clip_id, count(*) AS n, count(c.artifact_id) AS costed, sum(c.wall_s) AS wall_s "
                "FROM current_artifact a JOIN artifact b ON b.id = a.artifact_id "
                "LEFT JOIN artifact_cost c ON c.artifact_id = a.artifact_id WHERE a.asset_key = ? AND a.partition = ? "
                "GROUP BY b.clip_id ORDER BY b.clip_id", [stage, partition])
            f.kept = sum(r["status"] == "ok" for r in rows)
            f.dropped = dict(Counter(reason_of(r["reason"]) for r in rows if r["status"] in ("dropped", "quarantined")))
            f.failed = dict(Counter(reason_of(r["reason"]) for r in rows if r["status"] == "failed"))
            f.artifacts, f.costed = sum(r["n"] for r in per_clip), sum(r["costed"] for r in per_clip)
            f.spent_s = sum(r["wall_s"] or 0.0 for r in per_clip)
            f.item_costs = tuple(r["wall_s"] or 0.0 for r in per_clip if r["costed"])
            lost[stage] = [r["id"] for r in rows if r["status"] != "ok"]
            out.append(f)
        every = sorted({i for ids in lost.values() for i in ids})
        wasted = full_costs(db, every) if every else {}
    for f in out:
        f.wasted_s = sum(wasted[i].total["wall_s"] for i in lost[f.stage])
    return out


def funnel(db, theme: str | None) -> list[StageFunnel]:
    """The funnel of a theme (None: of the theme-independent stages)."""
    if theme is None:
        return stage_funnels(db, SHARED_STAGES, UNPARTITIONED)
    return stage_funnels(db, FUNNEL_STAGES, theme)


def _reasons(counts: dict[str, int]) -> str:
    return "; ".join(f"{n}x {r}" for r, n in sorted(counts.items(), key=lambda x: (-x[1], x[0]))) or "-"


def funnel_text(rows: list[StageFunnel], title: str) -> str:
    """The funnel as a plain-text table (what `sparkle report` prints)."""
    head = f"{title}\n  {'stage':<20}{'in':>6}{'kept':>6}{'dropped':>8}{'failed':>7}{'spent s':>10}{'wasted s':>10}  reasons"
    lines = [f"  {r.stage:<20}{r.n_in:>6}{r.kept:>6}{sum(r.dropped.values()):>8}{sum(r.failed.values()):>7}"
             f"{r.spent_s:>10.2f}{r.wasted_s:>10.2f}  {_reasons({**r.dropped, **{'failed: ' + k: v for k, v in r.failed.items()}})}"
             for r in rows]
    return "\n".join([head, *lines])


KEPT, DROPPED, FAILED, SPENT = (80, 154, 58), (60, 163, 232), (59, 66, 200), (181, 120, 74)  # BGR


def funnel_plot(rows: list[StageFunnel], title: str) -> bytes:
    """A PNG (drawn with OpenCV: no plotting library to import in a run): per stage, a bar of items
    kept / dropped / failed, and a bar of compute spent at the stage with, over it, the compute
    wasted (the full cost of what it dropped or failed)."""
    import cv2
    import numpy as np

    label_w, panel_w, gap, row_h, top, bottom = 130, 270, 30, 22, 34, 46
    width, height = label_w + 2 * panel_w + gap + 20, top + row_h * len(rows) + bottom
    img = np.full((height, width, 3), 255, np.uint8)
    text = lambda s, x, y, scale=0.4, color=(40, 40, 40): cv2.putText(  # noqa: E731
        img, s, (int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    text(title, 8, 18, 0.5)
    most_items = max([r.n_in for r in rows] + [1])
    most_s = max([max(r.spent_s, r.wasted_s) for r in rows] + [1e-9])
    x1 = label_w + panel_w + gap
    for i, r in enumerate(rows):
        y = top + i * row_h
        text(r.stage, 8, y + 15)
        x = label_w
        for n, color in ((r.kept, KEPT), (sum(r.dropped.values()), DROPPED), (sum(r.failed.values()), FAILED)):
            w = int(round(panel_w * n / most_items))
            if w:
                cv2.rectangle(img, (x, y + 3), (x + w - 1, y + row_h - 3), color, -1)
            x += w
        text(str(r.kept), label_w + 3, y + 15, 0.35, (255, 255, 255)) if r.kept else None
        cv2.rectangle(img, (x1, y + 3), (x1 + max(1, int(panel_w * r.spent_s / most_s)), y + row_h - 3), SPENT, -1)
        if r.wasted_s:
            cv2.rectangle(img, (x1, y + 8), (x1 + max(1, int(panel_w * r.wasted_s / most_s)), y + row_h - 8), FAILED, -1)
    axis = top + row_h * len(rows) + 12
    text(f"items (0 - {most_items})", label_w, axis)
    text(f"compute, wall s (0 - {most_s:.3g})", x1, axis)
    legend = [("kept", KEPT), ("dropped", DROPPED), ("failed", FAILED), ("spent", SPENT), ("wasted", FAILED)]
    for j, (name, color) in enumerate(legend):
        lx = label_w + j * 95
        cv2.rectangle(img, (lx, axis + 14), (lx + 12, axis + 24), color, -1)
        text(name, lx + 16, axis + 23, 0.38)
    ok, png = cv2.imencode(".png", img)
    return png.tobytes()


def funnel_metadata(db, home: str, theme: str) -> dict:
    """A theme's funnel for the dataset asset's metadata: a table, the plot inline, and its file
    (`<home>/reports/<theme>/funnel.png`, written atomically)."""
    import dagster as dg

    rows = funnel(db, theme)
    png = funnel_plot(rows, f"{theme}: yield and compute per stage")
    path = contained(home, "reports", theme, "funnel.png")
    atomic_write_bytes(path, png)
    table = dg.MetadataValue.table(
        records=[dg.TableRecord({"stage": r.stage, "in": r.n_in, "kept": r.kept, "dropped": sum(r.dropped.values()),
                                 "failed": sum(r.failed.values()), "spent_s": round(r.spent_s, 3),
                                 "wasted_s": round(r.wasted_s, 3),
                                 "reasons": _reasons({**r.dropped, **{"failed: " + k: v for k, v in r.failed.items()}})})
                 for r in rows],
        schema=dg.TableSchema(columns=[
            dg.TableColumn("stage", "string"), dg.TableColumn("in", "int"), dg.TableColumn("kept", "int"),
            dg.TableColumn("dropped", "int"), dg.TableColumn("failed", "int"), dg.TableColumn("spent_s", "float"),
            dg.TableColumn("wasted_s", "float"), dg.TableColumn("reasons", "string")]))
    return {"funnel": table,
            "funnel_plot": dg.MetadataValue.md(f"![funnel](data:image/png;base64,{base64.b64encode(png).decode()})"),
            "funnel_plot_path": dg.MetadataValue.path(str(path))}
