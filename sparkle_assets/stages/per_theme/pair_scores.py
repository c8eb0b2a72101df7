"""`pair_scores` (per theme): the expensive, score-only step over each final pair.

Per edited video: every `sparkle_bench.metrics.PAIR_METRICS` entry (foreground integrity, motion
consistency, background dynamics, temporal consistency, visual quality, instruction alignment
when a CLIP model is configured), the paper's final filter score, EditScore-style on four
non-first frames (`edit_score` = their mean overall; VLM-judged when `edit_backend.scorer` is `vlm`),
and the benchmark's automatic judgment of the pair (`sparkle_bench.automatic_judge`, the same code
that scores systems on Sparkle-Bench, with the pair's background video as the known backdrop):
`judge_<dimension>` on 1-5, `judge_overall` and `judge_min`, which `curated_pairs` can threshold.
The record is a JSON file; every value is also a row of DuckDB's `score` table (NULL when the
metric is not measured here), read through the `pair_metric` view. Nothing is decided here:
`curated_pairs` applies the thresholds.
"""

import json
from pathlib import Path

import dagster as dg
import numpy as np

from sparkle_bench.automatic_judge import judge_videos
from sparkle_bench.metrics import PAIR_METRICS, IqaModels, pair_metrics, sample_indices
from sparkle_bench.rubric import DIMENSIONS
from sparkle_model import backends
from sparkle_model.edit_scores import score_edit
from sparkle_model.masks import load_mask_npz
from sparkle_model.video import read_video

from ...core.config import ConfigError
from ...core.judging import EDIT_SCORE_PARTS, SCORE_BINS
from ...core.reports import histogram_md
from ...core.resources import (ArtifactStoreResource, ClipExecutorResource, EditBackendResource, LineageResource,
                               MetricModelsResource, VlmResource)
from ...core.stage import Stage

CODE_VERSION = "pair_scores-2"  # -2: the edit score sees ghosts and pasted patches; the automatic judgment
STAGE = Stage("pair_scores", CODE_VERSION, reads=("clip", "mask", "instruction", "video", "background"),
              per_theme=True)


def compute_pair_scores(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    record = json.loads(inputs["instruction"].read_text())
    source, edited = read_video(inputs["clip"]), read_video(inputs["video"])
    backdrop = read_video(inputs["background"])
    masks = load_mask_npz(inputs["mask"])
    models = IqaModels(**params["models"])
    metrics = pair_metrics(list(source), list(edited), masks, params["fps"], record["motion"], record["instruction"],
                           models)
    frames = []
    for i in sample_indices(min(len(source), len(edited))):
        m = masks[min(i, len(masks) - 1)]
        behind = backdrop[min(i, len(backdrop) - 1)]
        score = backends.score_edit_with(params, source[i], edited[i], record["instruction"],
                                         "replace the background of this video frame, keep the subject",
                                         lambda: score_edit(source[i], edited[i], m, behind))
        frames.append({"frame": i, **{k: score[k] for k in EDIT_SCORE_PARTS}, "scorer": score["scorer"],
                       "checks": score.get("checks", {})})
    edit = {part: round(float(np.mean([f[part] for f in frames])), 3) for part in EDIT_SCORE_PARTS}
    judgment = judge_videos(source, edited, masks, params["fps"], record["instruction"], backdrop, models)
    result = {"metrics": metrics, "edit_score": edit, "edit_score_frames": frames,
              "chosen_keyword": record["chosen_keyword"], "judge": judgment}
    out.write_text(json.dumps(result, indent=1))
    return result


def pair_score_rows(batch) -> list[tuple[str, str, float | None]]:
    """(artifact id, metric, value) for every ok row: each pair metric and the edit-score parts."""
    rows = []
    for row in batch.artifacts:
        if row.status == "ok":
            rows += [(row.id, name, row.info["metrics"].get(name)) for name in PAIR_METRICS]
            rows += [(row.id, f"edit_score_{part}" if part != "overall" else "edit_score", row.info["edit_score"][part])
                     for part in EDIT_SCORE_PARTS]
            scores = row.info["judge"]["scores"]
            rows += [(row.id, f"judge_{d}", float(v)) for d, v in zip(DIMENSIONS, scores)]
            rows += [(row.id, "judge_overall", round(float(np.mean(scores)), 4)), (row.id, "judge_min", float(min(scores)))]
    return rows


@STAGE.asset(kinds=set(),
             description="Expensive per-pair scores (foreground integrity, motion consistency, background dynamics, "
                         "temporal consistency, visual quality, instruction alignment, 4-frame edit score) into DuckDB.")
def pair_scores(context: dg.AssetExecutionContext, edit_backend: EditBackendResource, vlm: VlmResource,
                metric_models: MetricModelsResource, artifact_store: ArtifactStoreResource, lineage: LineageResource,
                clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    params = {"scorer": edit_backend.settings()["scorer"], "vlm": vlm.settings(), "models": metric_models.settings()}
    if params["scorer"] == "vlm" and params["vlm"]["name"] == "none":
        raise ConfigError("edit_backend.scorer is 'vlm' but vlm.backend is 'none'")
    store, db = artifact_store.store(), lineage.lineage()
    clips = STAGE.inputs(db, context.partition_key, params=lambda r: {"fps": r["clip"]["info"]["fps"]})
    report = STAGE.run(context, store, clips, fn=compute_pair_scores, kind="pair_score", ext="json", params=params,
                       executor=clip_executor.executor())
    report.batch.scores.extend(pair_score_rows(report.batch))
    infos = [a.info for a in report.artifacts.values()]
    measured = {name: [i["metrics"][name] for i in infos if i["metrics"].get(name) is not None] for name in PAIR_METRICS}
    table = "\n".join(f"| {name} | {rng} | {better} | {round(float(np.median(v)), 4) if v else 'missing'} |"
                      for name, (rng, better, _) in PAIR_METRICS.items() for v in [measured[name]])
    metadata = {**report.counts, "scorer": params["scorer"],
                "missing_metrics": dg.MetadataValue.json(sorted(n for n, v in measured.items() if not v)),
                "metrics": dg.MetadataValue.md("| metric | range | better | median |\n|---|---|---|---|\n" + table),
                "edit_score_histogram": histogram_md([i["edit_score"]["overall"] for i in infos], SCORE_BINS),
                "failures": dg.MetadataValue.json(report.failures)}
    return STAGE.finish(context, db, report.batch, output_ids=[a.id for a in report.artifacts.values()],
                        summary=report.counts, metadata=metadata)
