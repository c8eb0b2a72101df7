"""The one judging protocol of the pipeline's filters: a stored score, then a decision with a reason.

A per-clip function stores its score in the artifact's info; the stage then decides with a
threshold from its config: rows below it stay on disk but become `dropped`, with a reason that
names the score and the threshold. Changing a threshold re-decides stored rows, recomputing nothing.
"""

from __future__ import annotations

from .lineage import LineageBatch

EDIT_SCORE_PARTS = ("overall", "prompt_following", "consistency", "perceptual_quality")
SCORE_BINS = [0, 2, 4, 6, 7, 8, 8.5, 9, 9.5, 10]


def judge_edit_scores(batch: LineageBatch, kind: str, prefix: str,
                      threshold: float) -> tuple[list[str], dict[str, str]]:
    """Record each ok `kind` row's EditScore-shaped score as `<prefix>_<part>` scores and mark rows
    whose overall score is below `threshold` as dropped. Returns (kept ids, dropped reasons by clip)."""
    return judge(batch, kind=kind, scores=lambda info: {f"{prefix}_{p}": info["score"][p] for p in EDIT_SCORE_PARTS},
                 reason=lambda info: (f"{prefix} score {info['score']['overall']:.2f} < {threshold}"
                                      if info["score"]["overall"] < threshold else None))


def judge(batch: LineageBatch, *, kind: str | None, scores, reason) -> tuple[list[str], dict[str, str]]:
    """For each ok row (of `kind`, if given): record `scores(info)` (metric -> value) and drop it when
    `reason(info)` is not None. Returns (kept ids, dropped reasons by clip)."""
    kept, dropped = [], {}
    for row in batch.artifacts:
        if row.status != "ok" or (kind is not None and row.kind != kind):
            continue
        batch.scores.extend((row.id, metric, value) for metric, value in scores(row.info).items())
        why = reason(row.info)
        if why:
            row.status, row.reason = "dropped", why
            dropped[row.clip_id] = why
        else:
            kept.append(row.id)
    return kept, dropped


def decide_pairs(db, pair_score_ids: list[str], filters: dict[str, tuple[str, str, float]]) -> list[dict]:
    """The curation decision in one DuckDB query over `pair_metric`: `filters` maps a config field to
    (metric, comparison a pair must pass, threshold). One row per pair: ids, each filtered metric,
    `pass_<field>` per filter and `reason` (every failed filter, NULL when kept). Only the filtered
    metrics' rows are read (a scored pair has a row, NULL when unmeasured, for every metric a filter
    can name: `pair_scores` writes them all), not the 35 a pair has."""
    if bad := [metric for metric, _, _ in filters.values() if not metric.isidentifier()]:
        raise ValueError(f"not metric names: {bad}")
    pivot = ", ".join(f"max(value) FILTER (WHERE metric = '{metric}') AS {metric}" for metric, _, _ in filters.values())
    passes, reasons, params = [], [], []
    for field, (metric, op, value) in filters.items():
        passes.append(f"coalesce({metric} {op} ?, false) AS pass_{field}")
        reasons.append(f"CASE WHEN {metric} IS NULL THEN '{metric} not measured' WHEN NOT ({metric} {op} ?) "
                       f"THEN printf('{metric} %.3f (need {op} %s)', {metric}, ?) END")
        params.append(value)
    for _, _, value in filters.values():
        params += [value, str(value)]
    names = sorted({metric for metric, _, _ in filters.values()})
    metrics = f" AND metric IN ({', '.join(repr(m) for m in names)})" if names else ""
    sql = f"""
        WITH wide AS (
            SELECT pair_score_id, any_value(clip_id) AS clip_id, any_value(edited_video_id) AS edited_video_id
                   {', ' + pivot if pivot else ''}
            FROM pair_metric WHERE pair_score_id IN (SELECT unnest(?::VARCHAR[])){metrics} GROUP BY pair_score_id
        )
        SELECT *{', ' + ', '.join(passes) if passes else ''},
               {f"nullif(concat_ws('; ', {', '.join(reasons)}), '')" if reasons else 'NULL::VARCHAR'} AS reason
        FROM wide ORDER BY clip_id"""
    return db.query(sql, [list(pair_score_ids), *params])
