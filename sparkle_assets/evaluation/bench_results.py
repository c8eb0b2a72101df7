"""`bench_results`: the Sparkle-Bench table of every system, over every theme partition judged.

Per system and theme: the mean of each dimension over the judged outputs, Overall = the mean of the
six, and across themes the macro average (`sparkle_bench.official`, the paper's arithmetic), with
per cell the counts of judged outputs, failed judgments and missing outputs (failures and missing
outputs shrink n; they are never scored). Results read from official JSONL folders
(`bench.official_results`) are added as rows of their own. The metadata shows the table and a bar
plot (each dimension per system) inline in the UI; the same table is written under
`$SPARKLE_HOME/bench_results/` as `results.csv`, `per_theme.csv`, `results.json` and `plot.png`,
and every system's judgments as the official `official/{system}/{theme}_{judge}_sparkle_score.jsonl`.
A `bench_table` record links the table to every judgment it averages.
"""

import base64
import csv
import io
import json
from pathlib import Path

import dagster as dg
import numpy as np

from sparkle_bench.official import jsonl_lines, macro_means, official_row, read_results_dir, theme_means
from sparkle_bench.rubric import DIMENSIONS, SHORT

from ..core.lineage import ArtifactRow, LineageBatch
from ..core.resources import ArtifactStoreResource, LineageResource
from ..core.stage import Stage
from ..core.store import artifact_id, atomic_write_bytes, contained
from .resources import BUILTIN_SYSTEMS, BenchResource

RESULTS_VERSION = "bench_results-1"
# one colour per table row, in both plots (bars of a group are in the table's row order)
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (230, 190, 30), (50, 50, 50)]
STAGE = Stage("bench_results", RESULTS_VERSION, reads=("judgment",), group="bench")
COLUMNS = ("overall", *DIMENSIONS)


def judged_cells(db, theme: str) -> tuple[dict[tuple[str, str], dict], list[str]]:
    """(system, judge) -> {scores, failed, missing, rows} for one theme, from the current outputs and
    judgments; and the ids of the judgments used."""
    samples = {s["clip_id"]: s for s in db.current_artifacts("bench_samples", theme, kind="bench_sample")}
    outputs = [o for o in db.current_artifacts("bench_outputs", theme, status=None, kind="bench_output")
               if o["clip_id"] in samples]
    judgments = {j["id"]: j for j in db.current_artifacts("bench_judgments", theme, status=None,
                                                          kind="bench_judgment")}
    edges = db.query("SELECT child_id, parent_id FROM artifact_edge WHERE role = 'output' AND list_contains(?, child_id)",
                     [list(judgments)])
    judgment_of = {e["parent_id"]: judgments[e["child_id"]] for e in edges}
    judge = next((j["info"]["judge_name"] for j in judgments.values()), "unjudged")
    cells: dict[tuple[str, str], dict] = {}
    used = []
    for o in outputs:
        cell = cells.setdefault((o["params"]["system"], judge), {"scores": [], "failed": 0, "missing": 0,
                                                                  "unjudged": 0, "rows": []})
        if o["status"] != "ok":
            cell["missing"] += 1
            continue
        j = judgment_of.get(o["id"])
        if j is None:
            cell["unjudged"] += 1
        elif j["status"] != "ok":
            cell["failed"] += 1
            used.append(j["id"])
        else:
            used.append(j["id"])
            info = samples[o["clip_id"]]["info"]
            cell["scores"].append(j["info"]["scores"])
            cell["rows"].append(official_row(info["sample_id"], info["prompt"], info["edit_type"],
                                             info["chosen_keyword"], j["info"]["scores"],
                                             j["info"].get("reply") or json.dumps(j["info"].get("signals", {}))))
    return cells, used


def results_table(per_theme: dict[str, dict[tuple[str, str], dict]]) -> dict[str, dict]:
    """Row label -> {system, judge, themes: {theme: means + counts}, macro}."""
    table: dict[str, dict] = {}
    judges: dict[str, set] = {}
    for cells in per_theme.values():
        for system, judge in cells:
            judges.setdefault(system, set()).add(judge)
    for theme, cells in sorted(per_theme.items()):
        for (system, judge), cell in cells.items():
            label = system if len(judges[system]) == 1 else f"{system} ({judge})"
            row = table.setdefault(label, {"system": system, "judge": judge, "themes": {}})
            means = theme_means(cell["scores"])
            row["themes"][theme] = {**(means or {}), "n": len(cell["scores"]), "failed": cell["failed"],
                                    "missing": cell["missing"], "unjudged": cell["unjudged"]}
    order = {name: k for k, name in enumerate(BUILTIN_SYSTEMS)}
    table = dict(sorted(table.items(), key=lambda kv: (order.get(kv[1]["system"], len(order)), kv[0])))
    for row in table.values():
        row["macro"] = macro_means({t: (v if "overall" in v else None) for t, v in row["themes"].items()})
        row["counts"] = {k: sum(v[k] for v in row["themes"].values()) for k in ("n", "failed", "missing", "unjudged")}
    return table


def external_rows(settings: dict) -> dict[str, dict]:
    """Rows from official JSONL folders (`bench.official_results`)."""
    out = {}
    for name, folder in settings["official_results"].items():
        read = read_results_dir(folder)
        for judge, themes in read.items():
            per = {t: {**(v["means"] or {}), "n": v["means"]["n"] if v["means"] else 0, "failed": 0, "missing": 0,
                       "unjudged": 0, "skipped_lines": v["skipped"]} for t, v in themes.items()}
            out[f"{name} (official)" if len(read) == 1 else f"{name} (official, {judge})"] = {
                "system": name, "judge": judge, "themes": per, "source": folder,
                "macro": macro_means({t: (v["means"]) for t, v in themes.items()}),
                "counts": {"n": sum(p["n"] for p in per.values()), "failed": 0, "missing": 0, "unjudged": 0}}
    return out


def table_markdown(table: dict[str, dict]) -> str:
    """The macro-averaged table: one row per system, Overall and the six dimensions, and n (judged
    outputs), failed judgments and missing outputs as `n/failed/missing`."""
    ours = sorted({row["judge"] for row in table.values() if "source" not in row})
    theirs = sorted({row["judge"] for row in table.values() if "source" in row})
    head = "| system | Overall | " + " | ".join(SHORT[d] for d in DIMENSIONS) + " | n/fail/miss |"
    lines = [f"judge: {', '.join(ours) or '-'}" + (f"; official rows: {', '.join(theirs)}" if theirs else ""), "",
             head, "|" + "---|" * (len(DIMENSIONS) + 3)]
    for label, row in table.items():
        m = row["macro"]
        cells = " | ".join(f"{m[c]:.2f}" if m else "-" for c in COLUMNS)
        c = row["counts"]
        lines.append(f"| {label} | {cells} | {c['n']}/{c['failed']}/{c['missing']} |")
    return "\n".join(lines)


def inline_plot(table: dict[str, dict], bar: int = 11, gap: int = 16, unit: int = 22) -> bytes:
    """The bars (Overall and each dimension, one bar per row in the table's colours, 0-5 with a grid
    line at each point) as a palette PNG small enough for the UI to show inline."""
    from PIL import Image

    rows = [row["macro"] for row in table.values()][: len(COLOURS)]
    height, width = 5 * unit + 2, len(COLUMNS) * (len(rows) * bar + gap) + gap
    img = np.zeros((height, width), np.uint8)
    for k in range(1, 6):
        img[height - 1 - k * unit, :] = 1
    img[height - 1, :] = 2
    for d, column in enumerate(COLUMNS):
        x0 = gap + d * (len(rows) * bar + gap)
        for s, macro in enumerate(rows):
            if macro:
                top = height - 1 - int(round(macro[column] * unit))
                img[top:height - 1, x0 + s * bar: x0 + (s + 1) * bar - 1] = 3 + s
    palette = [255, 255, 255, 225, 225, 225, 120, 120, 120] + [v for rgb in COLOURS for v in rgb]
    image = Image.fromarray(img, "P")
    image.putpalette(palette + [0] * (768 - len(palette)))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True, bits=4)
    return buf.getvalue()


def per_theme_markdown(table: dict[str, dict]) -> str:
    themes = sorted({t for row in table.values() for t in row["themes"]})
    lines = ["| system | " + " | ".join(themes) + " |", "|" + "---|" * (len(themes) + 1)]
    for label, row in table.items():
        cells = []
        for t in themes:
            v = row["themes"].get(t)
            cells.append("-" if not v else (f"{v['overall']:.2f} (n={v['n']}, failed={v['failed']}, "
                                             f"missing={v['missing']})" if "overall" in v else
                                             f"- (failed={v['failed']}, missing={v['missing']})"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_png(table: dict[str, dict]) -> bytes:
    """Bars per dimension (and Overall) per system, 1-5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(table.items())
    fig, ax = plt.subplots(figsize=(10, 3.8), dpi=100)
    width = 0.8 / max(1, len(rows))
    for k, (label, row) in enumerate(rows):
        if not row["macro"]:
            continue
        xs = [i + (k - (len(rows) - 1) / 2) * width for i in range(len(COLUMNS))]
        color = [v / 255 for v in COLOURS[k]] if k < len(COLOURS) else None
        ax.bar(xs, [row["macro"][c] for c in COLUMNS], width=width, label=label, color=color)
    ax.set_xticks(range(len(COLUMNS)), ["Overall", *(SHORT[d] for d in DIMENSIONS)])
    ax.set_ylim(0, 5.2)
    ax.set_ylabel("score (1-5)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def csv_bytes(header: list[str], rows: list[list]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


def write_files(root: Path, table: dict[str, dict], per_theme: dict[str, dict], png: bytes) -> dict[str, str]:
    """The table as CSV / JSON / PNG and every system's official JSONL under `root`."""
    fmt = lambda v: round(v, 4) if isinstance(v, float) else v  # noqa: E731
    macro = [[label, row["system"], row["judge"], *(fmt(row["macro"][c]) if row["macro"] else "" for c in COLUMNS),
              row["counts"]["n"], row["counts"]["failed"], row["counts"]["missing"]] for label, row in table.items()]
    themed = [[label, theme, *(fmt(v.get(c, "")) for c in COLUMNS), v["n"], v["failed"], v["missing"]]
              for label, row in table.items() for theme, v in sorted(row["themes"].items())]
    atomic_write_bytes(root / "results.csv", csv_bytes(["row", "system", "judge", *COLUMNS, "n", "failed", "missing"],
                                                       macro))
    atomic_write_bytes(root / "per_theme.csv", csv_bytes(["row", "theme", *COLUMNS, "n", "failed", "missing"], themed))
    atomic_write_bytes(root / "results.json", json.dumps(table, indent=1, default=str).encode())
    atomic_write_bytes(root / "plot.png", png)
    files = {}
    for theme, cells in per_theme.items():
        for (system, judge), cell in cells.items():
            path = contained(root, "official", system, f"{theme}_{judge}_sparkle_score.jsonl")
            atomic_write_bytes(path, jsonl_lines(cell["rows"]).encode())
            files[f"{system}/{theme}"] = str(path)
    return files


@STAGE.asset(kinds={"csv", "json"},
             description="The Sparkle-Bench table (systems x Overall, Ins., Vis., FgIn., FgMo., BgDy., BgVi.), per "
                         "theme and macro-averaged, with counts, failures and missing outputs; plot, CSV, JSON and "
                         "official JSONL.")
def bench_results(context: dg.AssetExecutionContext, bench: BenchResource, artifact_store: ArtifactStoreResource,
                  lineage: LineageResource) -> dg.MaterializeResult:
    settings, db = bench.settings(), lineage.lineage()
    themes = [r["partition"] for r in db.query(
        "SELECT DISTINCT partition FROM materialization WHERE asset_key = 'bench_judgments' ORDER BY 1")]
    per_theme, used = {}, []
    for theme in themes:
        per_theme[theme], ids = judged_cells(db, theme)
        used += ids
    table = {**results_table(per_theme), **external_rows(settings)}
    png = plot_png(table)
    root = contained(artifact_store.home, "bench_results")
    files = write_files(root, table, per_theme, png)
    rid = artifact_id("bench_table", {"judgments": sorted(set(used))}, RESULTS_VERSION,
                      {"official_results": settings["official_results"]})
    batch = LineageBatch(artifacts=[ArtifactRow(id=rid, kind="bench_table", asset_key="bench_results",
                                                code_version=RESULTS_VERSION, params={}, run_id=context.run_id,
                                                uri=None, info={"rows": list(table), "themes": themes})],
                         edges=[(rid, j, "judgment") for j in sorted(set(used))])
    plot = base64.b64encode(inline_plot(table)).decode()
    summary = {"themes": themes, "rows": {k: {"macro": v["macro"], "counts": v["counts"]} for k, v in table.items()}}
    metadata = {"table": dg.MetadataValue.md(table_markdown(table)),
                "plot": dg.MetadataValue.md(f"![bars per dimension per system](data:image/png;base64,{plot})\n\n"
                                            "Groups: Overall, " + ", ".join(SHORT[d] for d in DIMENSIONS)
                                            + "; bars 0-5 in the table's row order (labelled: plot_png)"),
                "per_theme": dg.MetadataValue.md(per_theme_markdown(table)),
                "plot_png": dg.MetadataValue.path(str(root / "plot.png")),
                "themes": dg.MetadataValue.json(themes), "systems": len(table),
                "results_csv": dg.MetadataValue.path(str(root / "results.csv")),
                "official_jsonl": dg.MetadataValue.json(files)}
    return STAGE.finish(context, db, batch, output_ids=[rid], summary=summary, metadata=metadata)
