"""What a stage can read: the named inputs (roles) of the pipeline and where their rows come from.

A role names one kind of stored artifact and the asset whose latest materialization holds the
current ones, e.g. `mask` = the ok `foreground_mask` artifacts of `foreground_masks`. A stage
declares the roles it reads (`core.stage.Stage`); its Dagster deps, the lineage rows it is given and
the input data versions it records all follow from that list. Nothing here imports a stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .lineage import UNPARTITIONED, Lineage


def current_by_clip(db: Lineage, asset_key: str, partition: str, kind: str) -> dict[str, dict]:
    """clip_id -> the ok artifact rows of `kind` in an asset's latest materialization."""
    return {r["clip_id"]: r for r in db.current_artifacts(asset_key, partition, kind=kind)}


def kept_clips(db: Lineage, partition: str = UNPARTITIONED) -> dict[str, dict]:
    """clip_id -> the `source_clip` row of every clip the latest `static_clips` kept. Their ids (not
    the decisions') are the parents of downstream artifacts, so a threshold change that keeps a clip
    invalidates nothing derived from it."""
    keep = {d["info"]["clip_artifact"] for d in db.current_artifacts("static_clips", kind="static_clip")}
    return {c["clip_id"]: c for c in db.current_artifacts("source_clips", kind="source_clip") if c["id"] in keep}


@dataclass(frozen=True)
class Role:
    """One named input: the asset that holds it, its artifact kind, and whether it is per theme."""

    asset: str
    kind: str
    per_theme: bool = False
    reader: Callable[[Lineage, str], dict[str, dict]] | None = None

    def partition(self, theme: str | None) -> str:
        return theme if self.per_theme and theme else UNPARTITIONED

    def rows(self, db: Lineage, theme: str | None) -> dict[str, dict]:
        if self.reader is not None:
            return self.reader(db, self.partition(theme))
        return current_by_clip(db, self.asset, self.partition(theme), self.kind)


ROLES: dict[str, Role] = {
    "source": Role("source_clips", "source_clip"),  # every ingested clip, before the camera filter
    "clip": Role("static_clips", "source_clip", reader=kept_clips),  # the fixed-camera clips
    "mask": Role("foreground_masks", "foreground_mask"),  # usable BAIT masks
    "grounding": Role("foreground_masks", "foreground_grounding"),  # VLM / detector boxes (not with classical)
    "clean": Role("clean_backgrounds", "clean_background"),
    "frame0": Role("clean_backgrounds", "source_frame0"),  # frame 0 of the clip, as PNG
    "instruction": Role("instructions", "instruction", per_theme=True),
    "edited": Role("edited_first_frames", "edited_first_frame", per_theme=True),
    "layer": Role("edited_first_frames", "background_layer", per_theme=True),  # the new background, no subject
    "plate": Role("background_plates", "background_plate", per_theme=True),
    "background": Role("background_videos", "background_video", per_theme=True),
    "guidance": Role("guidance_videos", "guidance_video", per_theme=True),
    "video": Role("edited_videos", "edited_video", per_theme=True),
    "scores": Role("pair_scores", "pair_score", per_theme=True),
    "curated": Role("curated_pairs", "curated_pair", per_theme=True),
    "bench_row": Role("bench_split", "bench_row", per_theme=True),  # keyed by the pair's clip id
    "bench_sample": Role("bench_samples", "bench_sample", per_theme=True),  # keyed by the sample id
    "bench_output": Role("bench_outputs", "bench_output", per_theme=True),  # one per system and sample
    "editor_output": Role("editor_outputs", "bench_output", per_theme=True),  # a checkpoint's, as a system's
    "judgment": Role("bench_judgments", "bench_judgment", per_theme=True),
}


def rows_by_clip(db: Lineage, theme: str | None, roles: Iterable[str]) -> dict[str, dict[str, dict]]:
    """clip_id -> {role: current row} for every clip that has a current row of each role, in clip order."""
    roles = list(roles)
    found = {role: ROLES[role].rows(db, theme) for role in roles}
    if not roles:
        return {}
    common = set(found[roles[0]]).intersection(*(set(found[r]) for r in roles[1:]))
    return {cid: {role: found[role][cid] for role in roles} for cid in sorted(common)}
