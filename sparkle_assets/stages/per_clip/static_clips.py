"""Stage 1b, `static_clips`: the paper's coarse fixed-camera filter.

Two parts with different costs, kept apart so that changing the threshold decodes nothing:

1. score (expensive, cached): a `camera_motion` record per clip, optical flow + RANSAC homography
   (sparkle_model.camera_motion), stored for every clip whatever the threshold;
2. filter (cheap): a `static_clip` decision per clip, `ok` when the score is at most the threshold,
   `dropped` with the reason otherwise. Downstream stages read the `ok` decisions (role `clip`).
"""

from pathlib import Path

import dagster as dg

from sparkle_model.camera_motion import camera_motion
from sparkle_model.video import iter_frames

from ...core.config import Range, StageConfig
from ...core.lineage import ArtifactRow
from ...core.reports import histogram_md
from ...core.resources import ArtifactStoreResource, ClipExecutorResource, LineageResource
from ...core.stage import Stage
from ...core.store import artifact_id

CODE_VERSION = "static_clips-1"
SCORE_VERSION = "camera_motion-1"
STAGE = Stage("static_clips", CODE_VERSION, reads=("clip=source",))


class StaticClipsConfig(StageConfig):
    """`max_camera_motion`: the highest camera speed (percent of the frame diagonal per second)
    that still counts as a fixed camera. Fixed-camera footage scores below 0.6, pans above 3."""

    RANGES = {"max_camera_motion": Range(0, lo_open=True)}
    max_camera_motion: float = 1.0


def score_camera_motion(out: Path | None, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: the camera-motion score of one clip (record-only artifact)."""
    return camera_motion(iter_frames(inputs["clip"]), fps=params["fps"])


def decide(score: float, threshold: float) -> tuple[str, str | None]:
    if score <= threshold:
        return "ok", None
    return "dropped", f"camera motion {score:.2f} %diag/s > {threshold:g}"


@STAGE.asset(kinds={"video"},
             description="Fixed-camera clips: camera-motion score for every clip (flow + RANSAC homography), then a "
                         "threshold.")
def static_clips(context: dg.AssetExecutionContext, config: StaticClipsConfig,
                 artifact_store: ArtifactStoreResource, lineage: LineageResource,
                 clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    params = {"max_camera_motion": float(config.max_camera_motion)}
    store, db = artifact_store.store(), lineage.lineage()
    clips = STAGE.inputs(db, None, params=lambda rows: {"fps": rows["source"]["info"]["fps"]})
    report = STAGE.run(context, store, clips, fn=score_camera_motion, kind="camera_motion", ext=None,
                       code_version=SCORE_VERSION, params={}, executor=clip_executor.executor())

    batch, kept, scores = report.batch, [], []
    for clip in clips:
        scored = report.artifacts.get(clip.clip_id)
        if scored is None:
            continue  # scoring failed: recorded as a failed camera_motion row
        source = clip.parents["clip"]
        score = scored.info["score"]
        scores.append(score)
        batch.scores.append((scored.id, "camera_motion", score))
        status, reason = decide(score, params["max_camera_motion"])
        did = artifact_id("static_clip", {"clip": source["id"], "score": scored.id}, CODE_VERSION, params)
        batch.artifacts.append(ArtifactRow(
            id=did, kind="static_clip", asset_key="static_clips", clip_id=clip.clip_id, uri=source["uri"],
            bytes=source["bytes"], content_hash=source["content_hash"], code_version=CODE_VERSION, params=params,
            run_id=context.run_id, status=status, reason=reason,
            info={"camera_motion": score, "clip_artifact": source["id"]}))
        batch.edges += [(did, source["id"], "clip"), (did, scored.id, "score")]
        if status == "ok":
            kept.append(source["id"])

    counts = {**report.counts, "kept": len(kept), "dropped": len(scores) - len(kept)}
    metadata = {
        **counts,
        "pass_rate": round(len(kept) / len(scores), 3) if scores else 0.0,
        "threshold": params["max_camera_motion"],
        "camera_motion_histogram": histogram_md(scores, bins=[0, 0.25, 0.5, 1, 2, 4, 8, 16]),
        "failures": dg.MetadataValue.json(report.failures),
    }
    return STAGE.finish(context, db, batch, output_ids=kept, summary=counts, metadata=metadata)
