"""What the release stages (`sparkle_dataset`, `bench_split`) share: the pairs a curation decided,
with their current rows by role, and how their files and lineage rows are written out.

Both export the same roles, under one code version; neither decodes anything.
"""

from __future__ import annotations

from pathlib import Path

from .config import ConfigError, StageConfig
from .costs import full_costs
from .lineage import ArtifactRow, Lineage, LineageBatch
from .readers import ROLES
from .stage import Stage
from .store import StoreError, artifact_id, contained

EXPORT_VERSION = "sparkle_dataset-1"
# what an exported pair is made of: the curation decision, and every artifact behind it by role
EXPORT_ROLES = ("clip", "mask", "frame0", "instruction", "edited", "plate", "background", "guidance", "video",
                "scores")


def release_stage(name: str) -> Stage:
    return Stage(name, EXPORT_VERSION, reads=("curated", *EXPORT_ROLES), per_theme=True)


class ExportConfig(StageConfig):
    """`root`: the folder, inside the project home, the export goes to (default: `dataset` or `bench`,
    i.e. `<SPARKLE_HOME>/dataset`); a path that leaves the home is refused."""

    root: str = ""


def task_id(theme: str, clip_id: str) -> str:
    return f"sparkle_{theme}_{clip_id}"


def curated_records(db: Lineage, theme: str, status: str) -> tuple[list[dict], dict[str, str]]:
    """The pairs `curated_pairs` last judged `status` ('ok' or 'dropped'), each with its decision
    (`pair`), its artifact rows by role and its task id; and the pairs left out, with why."""
    with db.session():
        roles = {role: ROLES[role].rows(db, theme) for role in EXPORT_ROLES}
        pairs = db.current_artifacts("curated_pairs", theme, status=status, kind="curated_pair")
    out, skipped = [], {}
    for pair in pairs:
        cid = pair["clip_id"]
        rows = {role: found[cid] for role, found in roles.items() if cid in found}
        absent = [r for r in EXPORT_ROLES if r not in rows]
        if absent or rows["video"]["id"] != pair["info"]["edited_video_id"]:
            skipped[cid] = f"missing current {', '.join(absent)}" if absent else "edited video changed since curation"
            continue
        out.append({"pair": pair, "rows": rows, "task": task_id(theme, cid)})
    return out, skipped


def pair_costs(db: Lineage, records: list[dict]) -> dict[str, dict]:
    """task id -> what the pair cost up to its curation (core.costs: the full cost of its
    `curated_pair` decision, in wall, CPU and GPU seconds, with the wall seconds by stage)."""
    costs = full_costs(db, [rec["pair"]["id"] for rec in records]) if records else {}
    return {rec["task"]: {**costs[rec["pair"]["id"]].total, "by_stage_wall_s": {
        stage: c["wall_s"] for stage, c in costs[rec["pair"]["id"]].by_stage.items()}} for rec in records}


def remove_stale(root: Path, folders: list[str], keep: set[str]) -> int:
    """Delete files in `folders` (relative to `root`, contained in it) whose stem is not in `keep`;
    returns how many."""
    removed = 0
    for folder in (contained(root, f) for f in folders):
        for path in folder.glob("*") if folder.is_dir() else []:
            if path.is_file() and path.stem not in keep:
                path.unlink()
                removed += 1
    return removed


def record_rows(records: list[dict], kind: str, asset_key: str, theme: str, run_id: str, params: dict,
                infos: list[dict]) -> LineageBatch:
    """One record-only lineage row per exported pair, linked to its curation decision and video."""
    batch = LineageBatch()
    for rec, info in zip(records, infos):
        aid = artifact_id(kind, {"pair": rec["pair"]["id"]}, EXPORT_VERSION, params)
        batch.artifacts.append(ArtifactRow(id=aid, kind=kind, asset_key=asset_key, partition=theme,
                                           clip_id=rec["pair"]["clip_id"], theme=theme, code_version=EXPORT_VERSION,
                                           params=params, run_id=run_id, info=info))
        batch.edges += [(aid, rec["pair"]["id"], "pair"), (aid, rec["rows"]["video"]["id"], "video")]
    return batch


def export_root(config_root: str, home: str, default: str) -> Path:
    """The export folder: `config_root` (run config, untrusted) or `default`, inside the home."""
    try:
        return contained(home, config_root or default)
    except StoreError as exc:
        raise ConfigError(f"root must be a folder inside the project home {home}: {exc}") from None
