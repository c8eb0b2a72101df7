"""Stage 1b, `static_clips`: the paper's fixed-camera filter, coarse (optical flow) and fine (a VLM).

Scores and decisions have different costs, kept apart so that changing a threshold decodes nothing:

1. coarse score (expensive, cached): a `camera_motion` record per clip, optical flow + RANSAC
   homography (sparkle_model.camera_motion), stored for every clip whatever the threshold;
2. fine score (expensive, cached; only with a VLM configured and `vlm_camera_check` on): a
   `camera_check` record per clip the coarse threshold keeps: the VLM's reasoning, verdict and
   confidence on a few frames, with its prompt and reply; its id holds no threshold, so a new
   threshold asks the VLM nothing;
3. filter (cheap): a `static_clip` decision per clip, `ok` when the coarse score is at most
   `max_camera_motion` and (with the check) the VLM's probability that the camera moves is at most
   `max_camera_moving`; `dropped` with the reason otherwise. Downstream stages read the `ok`
   decisions (role `clip`). A clip whose score could not be computed gets no decision (its failed
   score row says why).
"""

import dagster as dg

from sparkle_model.camera_motion import CHECK_FRAMES

from ...core.clipstep import ClipInput
from ...core.config import Range, StageConfig
from ...core.lineage import ArtifactRow
from ...core.reports import histogram_md
from ...core.resources import ArtifactStoreResource, ClipExecutorResource, LineageResource, VlmResource
from ...core.stage import Stage
from ...core.steps import CAMERA_CHECK_VERSION, CAMERA_MOTION_VERSION, check_camera, score_camera_motion
from ...core.store import artifact_id

CODE_VERSION = "static_clips-1"
STAGE = Stage("static_clips", CODE_VERSION, reads=("clip=source",))


class StaticClipsConfig(StageConfig):
    """`max_camera_motion`: the highest camera speed (percent of the frame diagonal per second)
    that still counts as a fixed camera. Fixed-camera footage scores below 0.6, pans above 3.
    `vlm_camera_check`: ask the configured VLM too (the paper's fine filter); `max_camera_moving`:
    the highest probability of a moving camera, from its verdict and confidence, that is still kept."""

    RANGES = {"max_camera_motion": Range(0, lo_open=True), "max_camera_moving": Range(0, 1)}
    max_camera_motion: float = 1.0
    vlm_camera_check: bool = True
    max_camera_moving: float = 0.5


def decide(score: float, threshold: float) -> tuple[str, str | None]:
    if score <= threshold:
        return "ok", None
    return "dropped", f"camera motion {score:.2f} %diag/s > {threshold:g}"


def decide_check(check: dict, threshold: float) -> tuple[str, str | None]:
    if check["moving_probability"] <= threshold:
        return "ok", None
    return "dropped", (f"VLM camera check: {check['verdict']} (confidence {check['confidence']:.2f}, moving "
                       f"probability {check['moving_probability']:.2f} > {threshold:g})")


def check_state(config: StaticClipsConfig, vlm: dict) -> str | None:
    """Why the VLM check is off (None when it is on)."""
    if vlm["name"] == "none":
        return "off: no VLM configured (vlm.backend is 'none')"
    if not config.vlm_camera_check:
        return "off: vlm_camera_check is false"
    return None


@STAGE.asset(kinds={"video"},
             description="Fixed-camera clips: camera-motion score for every clip (flow + RANSAC homography), a VLM "
                         "camera check on those it keeps (when a VLM is configured), then thresholds.")
def static_clips(context: dg.AssetExecutionContext, config: StaticClipsConfig, vlm: VlmResource,
                 artifact_store: ArtifactStoreResource, lineage: LineageResource,
                 clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    params = {"max_camera_motion": float(config.max_camera_motion)}
    vlm_settings = vlm.settings()
    check_off = check_state(config, vlm_settings)
    store, db, executor = artifact_store.store(), lineage.lineage(), clip_executor.executor()
    clips = STAGE.inputs(db, None, params=lambda rows: {"fps": rows["source"]["info"]["fps"]})
    report = STAGE.run(context, store, clips, fn=score_camera_motion, kind="camera_motion", ext=None,
                       code_version=CAMERA_MOTION_VERSION, params={}, executor=executor)
    batch, failures = report.batch, dict(report.failures)

    checks = None
    if check_off is None:  # the fine filter, on the clips the coarse one keeps
        params["max_camera_moving"] = float(config.max_camera_moving)
        coarse = [ClipInput(c.clip_id, c.parents) for c in clips if c.clip_id in report.artifacts
                  and decide(report.artifacts[c.clip_id].info["score"], params["max_camera_motion"])[0] == "ok"]
        checks = STAGE.run(context, store, coarse, fn=check_camera, kind="camera_check", ext=None,
                           code_version=CAMERA_CHECK_VERSION, params={"vlm": vlm_settings, "check_frames": CHECK_FRAMES},
                           executor=executor)
        batch.artifacts += checks.batch.artifacts
        batch.edges += checks.batch.edges
        failures.update({cid: f"camera check: {reason}" for cid, reason in checks.failures.items()})

    kept, scores, moving = [], [], []
    for clip in clips:
        scored = report.artifacts.get(clip.clip_id)
        if scored is None:
            continue  # scoring failed: recorded as a failed camera_motion row
        source = clip.parents["clip"]
        score = scored.info["score"]
        scores.append(score)
        batch.scores.append((scored.id, "camera_motion", score))
        status, reason = decide(score, params["max_camera_motion"])
        inputs, info = {"clip": source["id"], "score": scored.id}, {"camera_motion": score}
        if checks is not None and status == "ok":
            check = checks.artifacts.get(clip.clip_id)
            if check is None:
                continue  # the VLM check failed: recorded as a failed camera_check row
            moving.append(check.info["moving_probability"])
            batch.scores.append((check.id, "camera_moving", check.info["moving_probability"]))
            status, reason = decide_check(check.info, params["max_camera_moving"])
            inputs["camera_check"] = check.id
            info.update(camera_check=check.info["verdict"], camera_moving=check.info["moving_probability"])
        did = artifact_id("static_clip", inputs, CODE_VERSION, params)
        batch.artifacts.append(ArtifactRow(
            id=did, kind="static_clip", asset_key="static_clips", clip_id=clip.clip_id, uri=source["uri"],
            bytes=source["bytes"], content_hash=source["content_hash"], code_version=CODE_VERSION, params=params,
            run_id=context.run_id, status=status, reason=reason, info={**info, "clip_artifact": source["id"]}))
        batch.edges += [(did, pid, role) for role, pid in inputs.items()]
        if status == "ok":
            kept.append(source["id"])

    decided = len(scores) - (len(checks.failures) if checks is not None else 0)
    counts = {**report.counts, "failed": len(failures), "kept": len(kept), "dropped": decided - len(kept)}
    if checks is not None:
        counts.update(camera_checks=len(checks.artifacts), camera_checks_computed=checks.computed)
    metadata = {
        **counts,
        "pass_rate": round(len(kept) / len(scores), 3) if scores else 0.0,
        "threshold": params["max_camera_motion"],
        "camera_motion_histogram": histogram_md(scores, bins=[0, 0.25, 0.5, 1, 2, 4, 8, 16]),
        "vlm_camera_check": check_off or f"on ({vlm_settings['name']}), max_camera_moving {config.max_camera_moving:g}",
        "failures": dg.MetadataValue.json(failures),
    }
    if checks is not None:
        metadata["camera_moving_histogram"] = histogram_md(moving, bins=[0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
    return STAGE.finish(context, db, batch, output_ids=kept, summary=counts, metadata=metadata)
