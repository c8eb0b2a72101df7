"""`editor_outputs` (per `run_config`): the current checkpoint's edits of the bench sources.

Every source of every theme's `bench_split` is edited by the checkpoint with the same backend that
trained it (the training process again, task `infer`; Kiwi-Edit's demo.py for `kiwi_edit`). Each
output is an `editor_output` artifact (H.264 mp4) whose id comes from the checkpoint and the sample's
content, linked to the checkpoint (role `checkpoint`) and to the bench row (role `sample`); a sample
that fails is recorded with its error and counted, the others go on. The outputs are also published
flat, as Sparkle-Bench's scorers read them: `<home>/editor_outputs/<run_config>/{id}_edited.mp4`.
"""


import hashlib
import json
import os
from pathlib import Path

import dagster as dg
from dagster._core.errors import DagsterPipesExecutionError

from sparkle_bench.sparkle_format import ReleaseFormatError, read_bench

from ..core.clipstep import data_version_of
from ..core.config import ConfigError, config_failures
from ..core.lineage import ArtifactRow, Lineage, LineageBatch, now_iso
from ..core.reports import pick_frames, sheet_metadata
from ..core.resources import ArtifactStoreResource, LineageResource
from ..core.store import ArtifactStore, artifact_id, atomic_write_bytes, canonical_json, file_sha256, publish_file
from .editor_checkpoint import COMPANIONS, KIND as CHECKPOINT
from .run_configs import load_run_config, run_config_partitions
from .trainer import EditorTrainerResource, LivePipesSubprocessClient

CODE_VERSION = "editor_outputs-1"
KIND = "editor_output"


def bench_samples(db: Lineage) -> list[dict]:
    """Every current bench row of every theme, with its source video and the hash of its content."""
    samples = []
    themes = [r["partition"] for r in db.query("SELECT DISTINCT partition FROM materialization "
                                               "WHERE asset_key = 'bench_split' ORDER BY partition")]
    for theme in themes:
        m = db.latest_materialization("bench_split", theme)
        root = Path(json.loads(m["summary"])["root"])
        rows = {r["info"]["task"]: r for r in db.current_artifacts("bench_split", theme, kind="bench_row")}
        if not rows:
            continue
        try:
            bench = {b.task: b for b in read_bench(root, [theme])}
        except (ReleaseFormatError, OSError) as exc:
            raise ConfigError(f"the {theme} bench in {root} cannot be read ({exc}): rematerialize bench_split")
        for task, row in rows.items():
            if task not in bench:
                raise ConfigError(f"bench row {task} ({theme}) is in the lineage but not in {root}: "
                                  "rematerialize bench_split")
            b = bench[task]
            content = {"prompt": b.prompt, "source": file_sha256(b.original_video)}
            samples.append({"task": task, "theme": theme, "prompt": b.prompt, "source": str(b.original_video),
                            "bench_row": row["id"], "clip_id": row["clip_id"],
                            "hash": hashlib.sha256(canonical_json(content).encode()).hexdigest()})
    return samples


def current_checkpoint(db: Lineage, name: str) -> dict:
    m = db.latest_materialization(CHECKPOINT, name)
    rows = db.current_artifacts(CHECKPOINT, name, kind=CHECKPOINT) if m else []
    if not rows:
        raise ConfigError(f"editor_checkpoint[{name}] has no checkpoint yet: materialize it first")
    return rows[0]


def checkpoint_folder(store: ArtifactStore, db: Lineage, ckpt: dict, folder: Path) -> Path:
    """The checkpoint's weights and editor_config.json, linked from the store into `folder`."""
    config = db.query("SELECT a.uri FROM artifact_edge e JOIN artifact a ON a.id = e.child_id "
                      "WHERE e.parent_id = ? AND e.role = 'checkpoint' AND a.kind = 'editor_config'", [ckpt["id"]])
    publish_file(store.resolve(ckpt["uri"]), folder / ckpt["info"]["weights"])
    publish_file(store.resolve(config[0]["uri"]), folder / COMPANIONS["editor_config"][0])
    return folder


@dg.asset(name="editor_outputs", partitions_def=run_config_partitions, group_name="evaluation",
          deps=[dg.AssetDep(CHECKPOINT),
                dg.AssetDep("bench_split", partition_mapping=dg.AllPartitionMapping())],
          kinds={"video", "duckdb"}, pool="gpu", code_version=CODE_VERSION,
          description="The checkpoint's edits of every bench source ({id}_edited.mp4), each linked to the "
                      "checkpoint and the bench row.")
def editor_outputs(context: dg.AssetExecutionContext, editor_trainer: EditorTrainerResource,
                   artifact_store: ArtifactStoreResource, lineage: LineageResource,
                   pipes_subprocess_client: LivePipesSubprocessClient) -> dg.MaterializeResult:
    name = context.partition_key
    home = Path(artifact_store.home)
    with config_failures(f"editor_outputs[{name}]"):
        config = load_run_config(editor_trainer.configs_dir, name)
        settings = editor_trainer.settings(config.backend)
        store, db = artifact_store.store(), lineage.lineage()
        ckpt = current_checkpoint(db, name)
        samples = bench_samples(db)
    params = {k: getattr(config, k) for k in ("inference_steps", "guidance", "inference_frames")}
    for s in samples:
        s["id"] = artifact_id(KIND, {"checkpoint": ckpt["id"], "sample": s["hash"]}, CODE_VERSION, params)
    missing = [s for s in samples if store.lookup(KIND, s["id"]) is None]
    failed: dict[str, str] = {}
    if missing:
        work = home / "inference" / ckpt["id"]
        request = {"task": "infer", "backend": config.backend, "config": config.model_settings(), "settings": settings,
                   "work_dir": str(work), "weights": ckpt["info"]["weights"],
                   "checkpoint_dir": str(checkpoint_folder(store, db, ckpt, work / "checkpoint")),
                   "samples": [{"task": s["task"], "prompt": s["prompt"], "source": s["source"],
                                "out": str(work / "outputs" / f"{s['task']}.mp4")} for s in missing]}
        path = work / "request.json"
        atomic_write_bytes(path, json.dumps(request).encode())
        try:
            pipes_subprocess_client.run(context=context, command=editor_trainer.command(path, distributed=False),
                                        extras={"request": str(path)},
                                        on_message=lambda m: context.log.info(f"editor_outputs[{name}]: {m}"))
        except DagsterPipesExecutionError as exc:
            raise dg.Failure(description=f"editor_outputs[{name}]: {exc}") from exc
        failed = json.loads((work / "infer_result.json").read_text())["failed"]
        for s in missing:
            if s["task"] in failed:
                continue
            with store.writing(KIND, s["id"], "mp4") as tmp:
                os.replace(work / "outputs" / f"{s['task']}.mp4", tmp)
            store.commit(KIND, s["id"], code_version=CODE_VERSION, params=params,
                         inputs={"checkpoint": ckpt["id"], "sample": s["hash"]},
                         info={"task": s["task"], "prompt": s["prompt"]}, ext="mp4")
    return record(context, db, store, home, ckpt, samples, failed, len(missing), params)


def record(context, db: Lineage, store: ArtifactStore, home: Path, ckpt: dict, samples: list[dict],
           failed: dict[str, str], computed: int, params: dict) -> dg.MaterializeResult:
    name = context.partition_key
    batch, ok = LineageBatch(), []
    for s in samples:
        art = store.lookup(KIND, s["id"])
        row = ArtifactRow(id=s["id"], kind=KIND, asset_key="editor_outputs", partition=name, clip_id=s["clip_id"],
                          theme=s["theme"], code_version=CODE_VERSION, params=params, run_id=context.run_id,
                          info={"task": s["task"], "prompt": s["prompt"]})
        if art is None:
            row.status, row.reason = "failed", failed.get(s["task"], "no output written")
        else:
            row.uri, row.bytes, row.content_hash = art.uri, art.bytes, art.content_hash
            ok.append(s)
        batch.artifacts.append(row)
        batch.edges += [(s["id"], ckpt["id"], "checkpoint"), (s["id"], s["bench_row"], "sample")]
    folder = home / "editor_outputs" / name
    for s in ok:
        publish_file(store.resolve(store.lookup(KIND, s["id"]).uri), folder / f"{s['task']}_edited.mp4")
    keep = {f"{s['task']}_edited.mp4" for s in ok}
    for path in folder.glob("*_edited.mp4"):
        if path.name not in keep:
            path.unlink()
    summary = {"checkpoint": ckpt["id"], "samples": len(samples), "computed": computed - len(failed),
               "reused": len(samples) - computed, "failed": len(failed), "folder": str(folder)}
    version = data_version_of([s["id"] for s in ok])
    batch.materialization = {
        "run_id": context.run_id, "asset_key": "editor_outputs", "partition": name, "code_version": CODE_VERSION,
        "data_version": version, "created_at": now_iso(), "artifact_ids": [a.id for a in batch.artifacts],
        "input_data_versions": {CHECKPOINT: (db.latest_materialization(CHECKPOINT, name) or {}).get("data_version")},
        "summary": summary}
    db.write(batch)
    metadata = {**summary, "folder": dg.MetadataValue.path(str(folder)), "failures": dg.MetadataValue.json(failed)}
    if ok:
        clips = {s["task"]: {"source": s["source"], "edited": str(folder / f"{s['task']}_edited.mp4"),
                             "label": s["theme"]} for s in ok}
        first = lambda key: (lambda c: pick_frames(c[key], [0])[0])  # noqa: E731
        metadata.update(sheet_metadata(str(home), name, "editor_outputs", clips,
                                       [("source", first("source")), ("edited", first("edited"))]))
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(version))
