"""Stage 1b, `static_clips`: the paper's coarse fixed-camera filter.

Two parts with different costs, kept apart so that changing the threshold decodes nothing:

1. score (expensive, cached): a `camera_motion` record per clip, optical flow + RANSAC homography
   (sparkle_model.camera_motion), stored for every clip whatever the threshold;
2. filter (cheap): a `static_clip` decision per clip, `ok` when the score is at most the threshold,
   `dropped` with the reason otherwise. Downstream stages read the `ok` decisions.
"""


from pathlib import Path

import dagster as dg

from sparkle_model.camera_motion import camera_motion
from sparkle_model.video import iter_frames

from .clipstep import ClipInput, run_clip_step
from .lineage import ArtifactRow
from .resources import ArtifactStoreResource, ClipExecutorResource, LineageResource
from .source_clips import source_clips
from .steps import finish_step, histogram_md
from .store import artifact_id

CODE_VERSION = "static_clips-1"
SCORE_VERSION = "camera_motion-1"


class StaticClipsConfig(dg.Config):
    """`max_camera_motion`: the highest camera speed (percent of the frame diagonal per second)
    that still counts as a fixed camera. Fixed-camera footage scores below 0.6, pans above 3."""

    max_camera_motion: float = 1.0

    def params(self) -> dict:
        if not self.max_camera_motion > 0:
            raise ValueError(f"max_camera_motion must be > 0, got {self.max_camera_motion}")
        return {"max_camera_motion": float(self.max_camera_motion)}


def score_camera_motion(out: Path | None, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: the camera-motion score of one clip (record-only artifact)."""
    return camera_motion(iter_frames(inputs["clip"]), fps=params["fps"])


def kept_clips(db) -> list[dict]:
    """The `source_clip` rows that passed the latest `static_clips` materialization: what every
    later stage reads. Their ids (not the decisions') are the parents of downstream artifacts, so a
    threshold change that keeps a clip does not invalidate anything derived from it."""
    keep = {d["info"]["clip_artifact"] for d in db.current_artifacts("static_clips", kind="static_clip")}
    return [c for c in db.current_artifacts("source_clips", kind="source_clip") if c["id"] in keep]


def decide(score: float, threshold: float) -> tuple[str, str | None]:
    if score <= threshold:
        return "ok", None
    return "dropped", f"camera motion {score:.2f} %diag/s > {threshold:g}"


@dg.asset(
    deps=[source_clips],
    code_version=CODE_VERSION,
    group_name="theme_independent",
    kinds={"video", "duckdb"},
    description="Fixed-camera clips: camera-motion score for every clip (flow + RANSAC homography), then a threshold.",
)
def static_clips(context: dg.AssetExecutionContext, config: StaticClipsConfig,
                 artifact_store: ArtifactStoreResource, lineage: LineageResource,
                 clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    try:
        params = config.params()
    except ValueError as exc:
        raise dg.Failure(description=f"bad static_clips configuration: {exc}") from exc
    store, db = artifact_store.store(), lineage.lineage()
    clips = db.current_artifacts("source_clips", kind="source_clip")
    report = run_clip_step(
        store=store, clips=[ClipInput(c["clip_id"], {"clip": c}, {"fps": c["info"]["fps"]}) for c in clips],
        fn=score_camera_motion, kind="camera_motion", ext=None, code_version=SCORE_VERSION, params={},
        asset_key="static_clips", run_id=context.run_id, executor=clip_executor.executor())

    batch, kept, scores = report.batch, [], []
    for clip in clips:
        scored = report.artifacts.get(clip["clip_id"])
        if scored is None:
            continue  # scoring failed: recorded as a failed camera_motion row
        score = scored.info["score"]
        scores.append(score)
        batch.scores.append((scored.id, "camera_motion", score))
        status, reason = decide(score, params["max_camera_motion"])
        did = artifact_id("static_clip", {"clip": clip["id"], "score": scored.id}, CODE_VERSION, params)
        batch.artifacts.append(ArtifactRow(
            id=did, kind="static_clip", asset_key="static_clips", clip_id=clip["clip_id"], uri=clip["uri"],
            bytes=clip["bytes"], content_hash=clip["content_hash"], code_version=CODE_VERSION, params=params,
            run_id=context.run_id, status=status, reason=reason, info={"camera_motion": score, "clip_artifact": clip["id"]}))
        batch.edges += [(did, clip["id"], "clip"), (did, scored.id, "score")]
        if status == "ok":
            kept.append(clip["id"])

    counts = {**report.counts, "kept": len(kept), "dropped": len(scores) - len(kept)}
    metadata = {
        **counts,
        "pass_rate": round(len(kept) / len(scores), 3) if scores else 0.0,
        "threshold": params["max_camera_motion"],
        "camera_motion_histogram": histogram_md(scores, bins=[0, 0.25, 0.5, 1, 2, 4, 8, 16]),
        "failures": dg.MetadataValue.json(report.failures),
    }
    return finish_step(context, db, batch, asset_key="static_clips", output_ids=kept,
                       all_ids=[a.id for a in batch.artifacts], code_version=CODE_VERSION,
                       summary=counts, metadata=metadata, input_assets=["source_clips"])
