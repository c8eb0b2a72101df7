"""`edited_first_frames` (per theme): frame 0 with the background replaced, and its edit score.

Default backend: the scene's new background (`background_layer`: a procedural render for
`procedural` themes, the clip's clean background graded for `transform` themes) with the source
foreground feathered and harmonised over it. `diffusers` backend: the configured edit/inpainting
pipeline repaints everything outside the (dilated) mask from the instruction, and the source
foreground is put back. Scored EditScore-style (automatic checks, or the VLM); frames whose
overall score is below `min_edit_score` (paper: 8) are kept on disk but marked `dropped`.
"""

import json
from pathlib import Path

import cv2
import dagster as dg
import numpy as np

from sparkle_model.contact_sheet import contact_sheet
from sparkle_model.edit_scores import score_edit
from sparkle_model.first_frame_edit import background_layer, composite, edit_first_frame, feather_radius, feathered
from sparkle_model.masks import load_mask_npz
from sparkle_model.taxonomy import Scene
from sparkle_model.video import first_frame, read_png, write_png
from sparkle_model.vlm import vlm_edit_score

from .clean_backgrounds import clean_background_rows
from .clipstep import ClipInput, run_clip_step
from .instructions import current_by_clip, instructions, theme_clips
from .resources import (ArtifactStoreResource, ClipExecutorResource, EditBackendResource, LineageResource,
                        VlmResource)
from .steps import contact_sheet_metadata, finish_step, histogram_md
from .themes import theme_partitions

CODE_VERSION = "edited_first_frames-1"
SCORE_BINS = [0, 2, 4, 6, 7, 8, 8.5, 9, 9.5, 10]


class EditedFirstFramesConfig(dg.Config):
    """`min_edit_score`: overall score (0-10) below which an edit is dropped (paper: 8).
    `harmony`: how far the default backend moves the subject's colour toward the new background."""

    min_edit_score: float = 8.0
    harmony: float = 0.35

    def validate(self) -> None:
        if not 0 <= self.min_edit_score <= 10:
            raise ValueError(f"min_edit_score must be in [0, 10], got {self.min_edit_score}")
        if not 0 <= self.harmony <= 1:
            raise ValueError(f"harmony must be in [0, 1], got {self.harmony}")


def grown(mask: np.ndarray, scale: float = 3.0) -> np.ndarray:
    r = int(round(scale * feather_radius(mask.shape)))
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0


def score_with(settings: dict, before: np.ndarray, after: np.ndarray, mask: np.ndarray, instruction: str,
               what: str, automatic) -> dict:
    """The configured scorer: automatic checks, or the VLM (EditScore-style)."""
    if settings["scorer"] == "vlm":
        vlm = VlmResource.build(settings["vlm"])
        if vlm is None:
            raise ValueError("edit_backend.scorer is 'vlm' but vlm.backend is 'none'")
        return vlm_edit_score(vlm, before, after, instruction, what)
    return automatic()


def compute_edited_first_frame(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: the edited frame 0 as PNG, with its score."""
    record = json.loads(inputs["instruction"].read_text())
    frame0 = first_frame(inputs["clip"])
    mask0 = load_mask_npz(inputs["mask"])[0]
    settings = params["backend"]
    editor = EditBackendResource.build(settings)
    if editor is None:
        layer = background_layer(Scene.from_json(record["scene"]), record["render"], read_png(inputs["clean"]), record["seed"])
        edited = edit_first_frame(frame0, mask0, layer, params["harmony"])
    else:
        raw = editor.edit(frame0, record["instruction"], record["seed"], repaint=~grown(mask0))
        edited = composite(frame0, raw, feathered(mask0, feather_radius(mask0.shape)))
    write_png(out, edited)
    score = score_with(settings, frame0, edited, mask0, record["instruction"], "replace the background, keep the subject",
                       lambda: score_edit(frame0, edited, mask0))
    return {"score": score, "chosen_keyword": record["chosen_keyword"]}


def judge_edit_scores(batch, prefix: str, threshold: float) -> tuple[list[str], dict[str, str]]:
    """Record each ok row's EditScore-shaped score as `<prefix>_<part>` scores and mark rows whose
    overall score is below `threshold` as dropped. Returns (kept ids, dropped reasons by clip)."""
    kept, dropped = [], {}
    for row in batch.artifacts:
        if row.status != "ok":
            continue
        score = row.info["score"]
        for part in ("overall", "prompt_following", "consistency", "perceptual_quality"):
            batch.scores.append((row.id, f"{prefix}_{part}", score[part]))
        if score["overall"] < threshold:
            row.status, row.reason = "dropped", f"{prefix} score {score['overall']:.2f} < {threshold}"
            dropped[row.clip_id] = row.reason
        else:
            kept.append(row.id)
    return kept, dropped


def clip_sheet_rows(clips: dict, columns: list, limit: int = 4):
    """Rows for a contact sheet: for up to `limit` clips, one image per column getter."""
    rows, labels = [], []
    for clip_id in sorted(clips)[:limit]:
        rows.append([get(clips[clip_id]) for _, get in columns])
        labels.append(f"{clip_id}  {clips[clip_id].get('label', '')}")
    return rows, labels


@dg.asset(
    deps=[instructions],
    partitions_def=theme_partitions,
    code_version=CODE_VERSION,
    group_name="theme",
    kinds={"image", "duckdb"},
    pool="gpu",
    description="Frame 0 with the background replaced by the instruction's scene, the foreground kept; "
                "EditScore-style score, dropped below min_edit_score.",
)
def edited_first_frames(context: dg.AssetExecutionContext, config: EditedFirstFramesConfig,
                        edit_backend: EditBackendResource, vlm: VlmResource, artifact_store: ArtifactStoreResource,
                        lineage: LineageResource, clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    theme = context.partition_key
    try:
        config.validate()
        settings = {**edit_backend.settings(), "vlm": vlm.settings()}
    except ValueError as exc:
        raise dg.Failure(description=f"edited_first_frames[{theme}]: {exc}") from exc
    store, db = artifact_store.store(), lineage.lineage()
    found = current_by_clip(db, "instructions", theme, "instruction")
    cleans = clean_background_rows(db)
    clips = [ClipInput(c["clip_id"], {"clip": c, "mask": m, "instruction": found[c["clip_id"]],
                                      "clean": cleans[c["clip_id"]]})
             for c, m in theme_clips(db) if c["clip_id"] in found and c["clip_id"] in cleans]
    report = run_clip_step(store=store, clips=clips, fn=compute_edited_first_frame, kind="edited_first_frame",
                           ext="png", code_version=CODE_VERSION, params={"backend": settings, "harmony": config.harmony},
                           asset_key="edited_first_frames", run_id=context.run_id, partition=theme, theme=theme,
                           executor=clip_executor.executor())
    batch = report.batch
    kept, dropped = judge_edit_scores(batch, "edit", config.min_edit_score)
    overall = [a.info["score"]["overall"] for a in report.artifacts.values()]
    counts = {**report.counts, "kept": len(kept), "dropped": len(dropped)}
    by_clip = {c.clip_id: c for c in clips}
    sheet_clips = {cid: {"clip": by_clip[cid].parents["clip"], "edited": a, "label": a.info["chosen_keyword"]}
                   for cid, a in report.artifacts.items()}
    metadata = {**counts, "pass_rate": round(len(kept) / len(overall), 3) if overall else 0.0,
                "threshold": config.min_edit_score, "scorer": settings["scorer"], "backend": settings["name"],
                "score_histogram": histogram_md(overall, SCORE_BINS), "dropped_clips": dg.MetadataValue.json(dropped),
                "failures": dg.MetadataValue.json(report.failures)}
    if sheet_clips:
        rows, labels = clip_sheet_rows(sheet_clips, [
            ("source frame 0", lambda c: first_frame(store.resolve(c["clip"]["uri"]))),
            ("edited frame 0", lambda c: read_png(store.path_of(c["edited"])))])
        metadata.update(contact_sheet_metadata(artifact_store.home, theme, "edited_first_frames",
                                               contact_sheet(rows, ["source frame 0", "edited frame 0"], labels)))
    return finish_step(context, db, batch, asset_key="edited_first_frames", output_ids=kept,
                       all_ids=[a.id for a in batch.artifacts], code_version=CODE_VERSION, summary=counts,
                       metadata=metadata, partition=theme, input_assets=[("instructions", theme)])
