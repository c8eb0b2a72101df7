"""`sparkle_dataset` (per theme): the curated pairs exported in the Sparkle / Kiwi-Edit release layout.

Every kept pair of `curated_pairs` becomes a training row (`prompts/{theme}_train.csv` and its
metadata JSONL), with its videos and the pipeline's intermediates under `intermediate_data/{theme}/`
(layout: `sparkle_bench.sparkle_format`). Files are hard links to the artifact store where possible
(copies otherwise), each placed atomically; CSV and JSONL files are written after the files they
name, and files of pairs no longer curated are removed last. `release_manifest/{theme}.json` lists
each row's files with their sha256 and the lineage ids behind it, plus a content hash of the whole
theme, and what each pair cost (core.costs; not part of the content hash). Rows whose masks followed
VLM or detector boxes also get their lines in `foreground_grounding_r1.jsonl` / `_r2.jsonl`. Its
metadata shows the theme's yield and cost funnel (core.funnel). Nothing is decoded: this runs
nightly after `curated_pairs`.
"""

import hashlib
import json
from pathlib import Path

import dagster as dg

from sparkle_bench.sparkle_format import (GROUNDING_FILES, INTERMEDIATES, SCORE_FILES, TRAIN_COLUMNS,
                                          ReleaseFormatError, csv_text, grounding_lines, jsonl_text, read_release,
                                          train_paths)

from ...core.lineage import now_iso
from ...core.readers import ROLES
from ...core.funnel import funnel_metadata
from ...core.release import (ExportConfig, curated_records, export_root, pair_costs, record_rows, release_stage,
                             remove_stale)
from ...core.resources import ArtifactStoreResource, LineageResource
from ...core.stage import Stage
from ...core.store import atomic_write_bytes, canonical_json, contained, publish_file
from ...core.themes import theme_partitions

STAGE: Stage = release_stage("sparkle_dataset")
# release file role -> role of the artifact behind it
FILE_ROLES = {"src_video": "clip", "tgt_video": "video", "source_frame0": "frame0", "edited_frame0": "edited",
              "edited_frame0_foreground_removed": "plate", "edited_background_video": "background",
              "source_video_mask": "mask", "edited_video_canny": "guidance"}
LINEAGE_NAMES = {"clip": "source_clip", "mask": "foreground_mask", "frame0": "source_frame0",
                 "instruction": "instruction", "edited": "edited_first_frame", "plate": "background_plate",
                 "background": "background_video", "guidance": "guidance_video", "video": "edited_video",
                 "scores": "pair_score"}


def score_records(task: str, rows: dict) -> dict[str, dict]:
    """The three score JSONL records of one pair, as the release names them."""
    video = rows["scores"]["info"]
    frames = video["edit_score_frames"]
    return {
        "edited_frame0_score": {"id": task, **rows["edited"]["info"]["score"]},
        "edited_frame0_foreground_removed_score": {"id": task, **rows["plate"]["info"]["score"]},
        "edited_video_score": {"id": task, "frames": [f["frame"] for f in frames],
                               "SC_score": [min(f["prompt_following"], f["consistency"]) for f in frames],
                               "PQ_score": [f["perceptual_quality"] for f in frames],
                               "O_score": [f["overall"] for f in frames],
                               "mean_O_score": video["edit_score"]["overall"], "metrics": video["metrics"]},
    }


def export_theme(store, theme: str, records: list[dict], root: Path,
                 groundings: dict[str, dict] | None = None, costs: dict[str, dict] | None = None) -> tuple[list[dict], dict]:
    """Write one theme's release files; returns (manifest rows, manifest). `groundings`: clip id ->
    the current `foreground_grounding` row, for the clips that have one; `costs`: task -> what the
    pair cost (`core.release.pair_costs`), each row's `cost` in the manifest, outside its content hash."""
    groundings = groundings or {}
    manifest_rows, train, meta, jsonl = [], [], [], {}
    for rec in records:
        task, rows = rec["task"], rec["rows"]
        record = json.loads(store.resolve(rows["instruction"]["uri"]).read_text())
        paths = train_paths(theme, task)
        files = {}
        for role, source_role in FILE_ROLES.items():
            src = rows[source_role]
            publish_file(store.resolve(src["uri"]), contained(root, paths[role]))
            files[role] = {"path": paths[role], "sha256": src["content_hash"], "bytes": src["bytes"]}
        train.append({"prompt": record["instruction"], "src_video": paths["src_video"],
                      "tgt_video": paths["tgt_video"], "task": task})
        meta.append({"id": task, "prompt": record["instruction"],
                     "metadata": {"edit_type": record["edit_type"], "chosen_keyword": record["chosen_keyword"],
                                  "original_scene": record["original_scene"]}})
        for name, rec_score in score_records(task, rows).items():
            jsonl.setdefault(name, []).append(rec_score)
        lineage_ids = {LINEAGE_NAMES[r]: rows[r]["id"] for r in LINEAGE_NAMES}
        grounding = groundings.get(rec["pair"]["clip_id"])
        if grounding is not None:
            lines = grounding_lines(task, record["instruction"], record["edit_type"],
                                    json.loads(store.resolve(grounding["uri"]).read_text()))
            for name, line in lines.items():
                jsonl.setdefault(name, []).append(line)
            lineage_ids["foreground_grounding"] = grounding["id"]
        manifest_rows.append({"task": task, "files": files,
                              "lineage": {**lineage_ids, "curated_pair": rec["pair"]["id"]}})
    texts = {f"prompts/{theme}_train.csv": csv_text(TRAIN_COLUMNS, train),
             f"prompts/{theme}_train_metadata.jsonl": jsonl_text(meta)}
    for name in SCORE_FILES + GROUNDING_FILES:
        texts[f"intermediate_data/{theme}/{name}.jsonl"] = jsonl_text(jsonl.get(name, []))
    listing = {rel: hashlib.sha256(text.encode()).hexdigest() for rel, text in texts.items()}
    for rel, text in texts.items():
        atomic_write_bytes(contained(root, rel), text.encode())
    manifest = {"theme": theme, "created_at": now_iso(), "code_version": STAGE.code_version, "rows": manifest_rows,
                "files": listing}
    manifest["content_hash"] = hashlib.sha256(canonical_json({"rows": manifest_rows, "files": listing}).encode()
                                              ).hexdigest()
    manifest["rows"] = [{**row, "cost": (costs or {}).get(row["task"])} for row in manifest_rows]
    atomic_write_bytes(contained(root, "release_manifest", f"{theme}.json"), json.dumps(manifest, indent=1).encode())
    folders = [f"{theme}/source_video", f"{theme}/edited_video"] + \
        [f"intermediate_data/{theme}/{folder}" for folder, _ in INTERMEDIATES.values()]
    remove_stale(root, folders, {r["task"] for r in records})
    return manifest_rows, manifest


@STAGE.asset(kinds={"csv", "video"},
             description="The curated pairs in the Sparkle / Kiwi-Edit release layout (prompts CSV + metadata JSONL, "
                         "videos, intermediate_data), with a release manifest (content hash, lineage ids per row).")
def sparkle_dataset(context: dg.AssetExecutionContext, config: ExportConfig, artifact_store: ArtifactStoreResource,
                    lineage: LineageResource) -> dg.MaterializeResult:
    theme = context.partition_key
    store, db = artifact_store.store(), lineage.lineage()
    root = export_root(config.root, artifact_store.home, "dataset")
    records, skipped = curated_records(db, theme, "ok")
    manifest_rows, manifest = export_theme(store, theme, records, root, ROLES["grounding"].rows(db, theme),
                                           pair_costs(db, records))
    batch = record_rows(records, "dataset_row", "sparkle_dataset", theme, context.run_id, {"root": str(root)},
                        [{"task": m["task"], "tgt_video_sha256": m["files"]["tgt_video"]["sha256"]}
                         for m in manifest_rows])
    summary = {"rows": len(records), "skipped": len(skipped)}
    metadata = {**summary, "root": dg.MetadataValue.path(str(root)),
                "train_csv": dg.MetadataValue.path(str(root / "prompts" / f"{theme}_train.csv")),
                "content_hash": manifest["content_hash"], "skipped_pairs": dg.MetadataValue.json(skipped)}
    return STAGE.finish(context, db, batch, output_ids=[a.id for a in batch.artifacts],
                        summary={**summary, "root": str(root), "content_hash": manifest["content_hash"]},
                        metadata=metadata, report=lambda db: funnel_metadata(db, artifact_store.home, theme))


@dg.asset_check(asset=sparkle_dataset, partitions_def=theme_partitions, blocking=True,
                description="The export reads back, every path in it exists, and its rows match the lineage 1:1.")
def sparkle_dataset_files(context: dg.AssetCheckExecutionContext, lineage: LineageResource) -> dg.AssetCheckResult:
    theme, db = context.partition_key, lineage.lineage()
    m = db.latest_materialization("sparkle_dataset", theme)
    if m is None:
        return dg.AssetCheckResult(passed=False, metadata={"error": "sparkle_dataset was never materialized"})
    root = Path(json.loads(m["summary"])["root"])
    problems: list[str] = []
    try:
        rows = read_release(root, [theme], require_files=False)
    except ReleaseFormatError as exc:
        rows, problems = [], [str(exc)]
    for row in rows:
        problems += [f"{row.task}: missing {p}" for p in (row.src_video, row.tgt_video) if not p.is_file()]
        problems += [f"{row.task}: missing {role}" for role in INTERMEDIATES if role not in row.intermediates]
    recorded = {r["info"]["task"] for r in db.current_artifacts("sparkle_dataset", theme, kind="dataset_row")}
    exported = {r.task for r in rows}
    if recorded != exported:
        problems.append(f"export rows {sorted(exported - recorded)[:5]} not in lineage; lineage rows "
                        f"{sorted(recorded - exported)[:5]} not exported")
    return dg.AssetCheckResult(passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"rows": len(rows), "problems": dg.MetadataValue.json(problems[:20])})
