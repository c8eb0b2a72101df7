"""`bench_split` (per theme): the paper's benchmark pool, in Sparkle-Bench's layout.

The pairs that passed every earlier stage but failed the final filter (`curated_pairs` dropped
them): hard cases for an editing model, with no trusted target. Written as `{theme}_bench.csv`
(`edited_type,prompt,original_video`), `{theme}_metadata.jsonl` (id, prompt, metadata with the
scene keyword and why the pair was dropped), `source_videos/{theme}/{id}.mp4` and the clean plate
as `ref_images/{theme}/{id}.png`. Like the export, nothing is decoded.
"""

import json

import dagster as dg

from sparkle_bench.sparkle_format import BENCH_COLUMNS, bench_paths, csv_text, jsonl_text

from ...core.release import ExportConfig, curated_records, export_root, record_rows, release_stage, remove_stale
from ...core.resources import ArtifactStoreResource, LineageResource
from ...core.stage import Stage
from ...core.store import atomic_write_bytes, contained, publish_file

STAGE: Stage = release_stage("bench_split")


@STAGE.asset(kinds={"csv", "video"},
             description="Pairs that passed stages 1-4 but failed the final filter, in Sparkle-Bench's layout.")
def bench_split(context: dg.AssetExecutionContext, config: ExportConfig, artifact_store: ArtifactStoreResource,
                lineage: LineageResource) -> dg.MaterializeResult:
    theme = context.partition_key
    store, db = artifact_store.store(), lineage.lineage()
    root = export_root(config.root, artifact_store.home, "bench")
    records, skipped = curated_records(db, theme, "dropped")
    table, meta = [], []
    for rec in records:
        rows, task = rec["rows"], rec["task"]
        record = json.loads(store.resolve(rows["instruction"]["uri"]).read_text())
        paths = bench_paths(theme, task)
        publish_file(store.resolve(rows["clip"]["uri"]), contained(root, paths["original_video"]))
        publish_file(store.resolve(rows["plate"]["uri"]), contained(root, paths["ref_image"]))
        table.append({"edited_type": theme, "prompt": record["instruction"], "original_video": paths["original_video"]})
        meta.append({"id": task, "prompt": record["instruction"],
                     "metadata": {"edit_type": record["edit_type"], "chosen_keyword": record["chosen_keyword"],
                                  "original_scene": record["original_scene"], "failed_filter": rec["pair"]["reason"]}})
    atomic_write_bytes(contained(root, f"{theme}_bench.csv"), csv_text(BENCH_COLUMNS, table).encode())
    atomic_write_bytes(contained(root, f"{theme}_metadata.jsonl"), jsonl_text(meta).encode())
    remove_stale(root, [f"source_videos/{theme}", f"ref_images/{theme}"], {r["task"] for r in records})
    batch = record_rows(records, "bench_row", "bench_split", theme, context.run_id, {"root": str(root)},
                        [{"task": r["task"], "reason": r["pair"]["reason"]} for r in records])
    summary = {"rows": len(records), "skipped": len(skipped)}
    metadata = {**summary, "root": dg.MetadataValue.path(str(root)),
                "bench_csv": dg.MetadataValue.path(str(root / f"{theme}_bench.csv")),
                "reasons": dg.MetadataValue.json({r["task"]: r["pair"]["reason"] for r in records}),
                "skipped_pairs": dg.MetadataValue.json(skipped)}
    return STAGE.finish(context, db, batch, output_ids=[a.id for a in batch.artifacts],
                        summary={**summary, "root": str(root)}, metadata=metadata)
