"""`curated_pairs` (per theme): thresholds applied to `pair_scores` in DuckDB; cheap, no video decoded.

Each threshold is a config field naming one metric of the `pair_metric` view; unset (None) turns
that filter off. One SQL query pivots the stored scores and decides every pair, with the reasons
it was dropped; each decision is a record-only `curated_pair` artifact. This is what the nightly
schedule re-runs: a new threshold changes the curated set without touching a single video.

Checks (blocking, so bad data never reaches the export): each filter's pass rate lies within
[`min_pass_rate`, `max_pass_rate`], and every kept pair traces back to a stored foreground mask.
"""

import json

import dagster as dg

from ...core.config import ConfigError, Range, StageConfig
from ...core.judging import decide_pairs
from ...core.lineage import ArtifactRow, LineageBatch
from ...core.readers import ROLES
from ...core.resources import ArtifactStoreResource, LineageResource
from ...core.stage import Stage
from ...core.store import artifact_id
from ...core.themes import theme_partitions

CODE_VERSION = "curated_pairs-2"  # -2: the automatic judgment as a filter
STAGE = Stage("curated_pairs", CODE_VERSION, reads=("scores",), per_theme=True)
# config field -> (metric in pair_metric, comparison a pair must pass)
FILTERS = {
    "min_edit_score": ("edit_score", ">="),
    "min_fg_structure": ("fg_structure", ">="),
    "min_fg_ssim": ("fg_ssim", ">="),
    "max_fg_motion_error": ("fg_motion_error", "<="),
    "min_background_dynamics": ("background_dynamics", ">="),
    "max_warp_error": ("warp_error", "<="),
    "max_flicker": ("flicker", "<="),
    "max_niqe": ("niqe", "<="),
    "min_clip_score": ("clip_score", ">="),
    "min_judge_dimension": ("judge_min", ">="),
}


class CuratedPairsConfig(StageConfig):
    """Thresholds (None = filter off). `min_edit_score` is the paper's final filter (mean overall
    EditScore of four non-first frames >= 8). `min_judge_dimension`: every dimension of the
    benchmark's automatic judgment (1-5, `pair_scores`' `judge_min`) at least this: a frozen subject,
    a frozen background, a ghost or a pasted patch of the source scene fails it. `min_pass_rate` /
    `max_pass_rate` bound each filter's pass rate once a theme has at least `rate_min_pairs` pairs (fewer say little about a rate);
    outside them the blocking check stops the export."""

    RANGES = {"min_edit_score": Range(0, 10), "min_fg_structure": Range(-1, 1), "min_fg_ssim": Range(-1, 1),
              "max_fg_motion_error": Range(0, 100), "min_background_dynamics": Range(0, 100),
              "max_warp_error": Range(0, 255), "max_flicker": Range(0, 255), "max_niqe": Range(0, 1000),
              "min_clip_score": Range(0, 100), "min_judge_dimension": Range(1, 5), "min_pass_rate": Range(0, 1),
              "max_pass_rate": Range(0, 1), "rate_min_pairs": Range(1)}
    min_edit_score: float | None = 8.0
    min_fg_structure: float | None = 0.85
    min_fg_ssim: float | None = None
    max_fg_motion_error: float | None = 0.5
    min_background_dynamics: float | None = 0.05
    max_warp_error: float | None = 12.0
    max_flicker: float | None = 3.0
    max_niqe: float | None = None
    min_clip_score: float | None = None
    min_judge_dimension: float | None = 3.0
    min_pass_rate: float = 0.05
    max_pass_rate: float = 1.0
    rate_min_pairs: int = 10

    def thresholds(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in FILTERS if getattr(self, name) is not None}

    def problems(self) -> list[str]:
        if self.min_pass_rate > self.max_pass_rate:
            return [f"need 0 <= min_pass_rate <= max_pass_rate <= 1, got {self.min_pass_rate}, {self.max_pass_rate}"]
        return []


@STAGE.asset(kinds=set(),
             description="Config thresholds applied to the stored pair scores in DuckDB: kept pairs and each dropped "
                         "pair with its reason. Cheap; re-run nightly.")
def curated_pairs(context: dg.AssetExecutionContext, config: CuratedPairsConfig,
                  lineage: LineageResource) -> dg.MaterializeResult:
    theme = context.partition_key
    db = lineage.lineage()
    thresholds = config.thresholds()
    scored = ROLES["scores"].rows(db, theme)
    rows = decide_pairs(db, [r["id"] for r in scored.values()], {f: (*FILTERS[f], v) for f, v in thresholds.items()})
    unmeasured = [f for f in thresholds if rows and all(r[FILTERS[f][0]] is None for r in rows)]
    if unmeasured:
        raise ConfigError(f"{', '.join(unmeasured)} set but {', '.join(FILTERS[f][0] for f in unmeasured)} is not "
                          "measured here (configure its model in metric_models, or set the threshold to None)")
    batch_rows, edges, kept, dropped = [], [], [], {}
    for r in rows:
        aid = artifact_id("curated_pair", {"scores": r["pair_score_id"]}, CODE_VERSION, thresholds)
        status = "ok" if r["reason"] is None else "dropped"
        info = {"pair_score_id": r["pair_score_id"], "edited_video_id": r["edited_video_id"],
                **{FILTERS[f][0]: r[FILTERS[f][0]] for f in thresholds}}
        batch_rows.append(ArtifactRow(id=aid, kind="curated_pair", asset_key="curated_pairs", partition=theme,
                                      clip_id=r["clip_id"], theme=theme, code_version=CODE_VERSION, params=thresholds,
                                      run_id=context.run_id, status=status, reason=r["reason"], info=info))
        edges += [(aid, r["pair_score_id"], "scores"), (aid, r["edited_video_id"], "video")]
        if status == "ok":
            kept.append(r["pair_score_id"])
        else:
            dropped[r["clip_id"]] = r["reason"]
    filters = {f: {"metric": FILTERS[f][0], "threshold": v, "passed": sum(bool(r[f"pass_{f}"]) for r in rows),
                   "pairs": len(rows), "bounds": [config.min_pass_rate, config.max_pass_rate],
                   "min_pairs": config.rate_min_pairs}
               for f, v in thresholds.items()}
    summary = {"pairs": len(rows), "kept": len(kept), "dropped": len(dropped)}
    batch = LineageBatch(artifacts=batch_rows, edges=edges)
    table = "\n".join(f"| {f} | {d['threshold']} | {d['passed']}/{d['pairs']} |" for f, d in filters.items())
    metadata = {**summary, "pass_rate": round(len(kept) / len(rows), 3) if rows else 0.0,
                "filters": dg.MetadataValue.md("| filter | threshold | passed |\n|---|---|---|\n" + table),
                "dropped_pairs": dg.MetadataValue.json(dropped), "thresholds": dg.MetadataValue.json(thresholds)}
    return STAGE.finish(context, db, batch, output_ids=kept, summary={**summary, "filters": filters},
                        metadata=metadata)


@dg.asset_check(asset=curated_pairs, partitions_def=theme_partitions, blocking=True,
                description="Each filter's pass rate lies within the configured bounds.")
def curated_pairs_pass_rates(context: dg.AssetCheckExecutionContext, lineage: LineageResource) -> dg.AssetCheckResult:
    m = lineage.lineage().latest_materialization("curated_pairs", context.partition_key)
    outside, rates, unjudged = {}, {}, []
    for name, f in (json.loads(m["summary"]) if m else {}).get("filters", {}).items():
        rate = f["passed"] / f["pairs"] if f["pairs"] else 0.0
        rates[name] = round(rate, 3)
        if f["pairs"] < f["min_pairs"]:
            unjudged.append(name)
            continue
        lo, hi = f["bounds"]
        if not lo <= rate <= hi:
            outside[name] = f"pass rate {rate:.3f} outside [{lo}, {hi}] (threshold {f['threshold']})"
    return dg.AssetCheckResult(passed=not outside, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"pass_rates": dg.MetadataValue.json(rates),
                                         "outside_bounds": dg.MetadataValue.json(outside),
                                         "too_few_pairs_to_judge": dg.MetadataValue.json(unjudged)})


@dg.asset_check(asset=curated_pairs, partitions_def=theme_partitions, blocking=True,
                description="Every kept pair traces back to a stored, usable foreground mask.")
def curated_pairs_have_masks(context: dg.AssetCheckExecutionContext, lineage: LineageResource,
                             artifact_store: ArtifactStoreResource) -> dg.AssetCheckResult:
    db, store = lineage.lineage(), artifact_store.store()
    kept = db.current_artifacts("curated_pairs", context.partition_key)
    masks = db.ancestors_of_kind([r["id"] for r in kept], "foreground_mask")
    missing = {}
    for r in kept:
        usable = [m for m in masks[r["id"]] if m["status"] == "ok" and m["uri"] and store.resolve(m["uri"]).is_file()]
        if not usable:
            missing[r["clip_id"]] = "no stored foreground mask behind this pair"
    return dg.AssetCheckResult(passed=not missing, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"kept_pairs": len(kept), "without_mask": dg.MetadataValue.json(missing)})
