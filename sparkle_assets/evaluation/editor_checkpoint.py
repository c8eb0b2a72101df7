"""`editor_checkpoint` (per `run_config`): the editing model trained on the export of `sparkle_dataset`.

One partition per training configuration file (`run_configs.py`). The training data are the current
rows of every theme's export (or the configured theme mixture), each checked against the release
manifest's sha256 before use; their content (prompt, source and edited video hashes, weight) makes
the data manifest, whose hash with the config and the base model's identity is the checkpoint's
artifact id. So unchanged data and config reuse the stored checkpoint; anything else trains.

Training runs as its own process (`training_process.py`) through the live Pipes client: each step's
loss comes back while it runs (observations on this asset, and log lines), and a run killed mid-way
resumes from its last saved state (`<home>/training/<checkpoint id>/`) when rematerialized.

Stored (artifact store + lineage): the weights (`editor_checkpoint`, safetensors) and, beside them,
`editor_config` (what rebuilds the model), `editor_data_manifest`, `editor_loss` (per-step numbers)
and `editor_loss_curve` (PNG); lineage edges from the checkpoint to every `dataset_row` it trained on
(role `trained_on`). A copy to open by hand: `<home>/checkpoints/<run_config>/` (for `lora`, a folder
diffusers' `load_lora_weights` reads).

Staleness: this asset depends on every `sparkle_dataset` partition; when a refilter changes one, the
UI shows the checkpoint stale. Training starts only when asked (materialize it, `sparkle train`, or
turn on the `editor_retraining` automation sensor, off by default).
"""


import base64
import hashlib
import json
import shutil
from pathlib import Path

import dagster as dg
from dagster._core.errors import DagsterPipesExecutionError

from sparkle_bench.sparkle_format import ReleaseFormatError, read_release
from sparkle_model.editor.run_files import loss_sparkline_png

from ..core.clipstep import data_version_of
from ..core.config import ConfigError, config_failures
from ..core.lineage import ArtifactRow, Lineage, LineageBatch, now_iso
from ..core.resources import ArtifactStoreResource, LineageResource
from ..core.store import (ArtifactStore, StoredArtifact, artifact_id, atomic_write_bytes, canonical_json, contained,
                          file_sha256, publish_file)
from .checkpoint_files import CODE_VERSION, COMPANIONS, KIND, companion_id
from .run_configs import TrainingConfig, load_run_config, run_config_partitions
from .trainer import EditorTrainerResource, LivePipesSubprocessClient

RETRAIN_CONDITION = dg.AutomationCondition.eager()


def exported_themes(db: Lineage) -> list[str]:
    return [r["partition"] for r in db.query("SELECT DISTINCT partition FROM materialization "
                                             "WHERE asset_key = 'sparkle_dataset' ORDER BY partition")]


def pair_hash(prompt: str, src_sha256: str, tgt_sha256: str) -> str:
    return hashlib.sha256(canonical_json({"prompt": prompt, "src": src_sha256, "tgt": tgt_sha256}).encode()).hexdigest()


def training_rows(db: Lineage, mixture: dict[str, float]) -> list[dict]:
    """Every current exported row of the mixture's themes (all exported themes when it is empty),
    with its files checked against the release manifest; ConfigError when they disagree."""
    themes = sorted(mixture) or exported_themes(db)
    rows = []
    for theme in themes:
        m = db.latest_materialization("sparkle_dataset", theme)
        if m is None:
            raise ConfigError(f"themes: {theme!r} has no sparkle_dataset export yet (materialize it first)")
        root = Path(json.loads(m["summary"])["root"])
        try:
            release = {r.task: r for r in read_release(root, [theme])}
            manifest = json.loads((root / "release_manifest" / f"{theme}.json").read_text())
        except (ReleaseFormatError, OSError, ValueError) as exc:
            raise ConfigError(f"the {theme} export in {root} cannot be read ({exc}): rematerialize sparkle_dataset")
        files = {r["task"]: r["files"] for r in manifest["rows"]}
        current = db.current_artifacts("sparkle_dataset", theme, kind="dataset_row")
        for art in current:
            task = art["info"]["task"]
            if task not in release or task not in files:
                raise ConfigError(f"dataset row {task} ({theme}) is in the lineage but not in the export {root}: "
                                  "rematerialize sparkle_dataset")
            rel, f = release[task], files[task]
            rows.append({"task": task, "theme": theme, "dataset_row": art["id"], "clip_id": art["clip_id"],
                         "prompt": rel.prompt, "src_video": str(rel.src_video), "tgt_video": str(rel.tgt_video),
                         "src_video_sha256": f["src_video"]["sha256"], "tgt_video_sha256": f["tgt_video"]["sha256"],
                         "weight": mixture[theme] / len(current) if mixture else 1.0})
    if not rows:
        raise ConfigError(f"no exported dataset rows to train on (themes: {', '.join(themes) or 'none exported'})")
    for row in rows:
        for side in ("src_video", "tgt_video"):
            if not Path(row[side]).is_file() or file_sha256(row[side]) != row[f"{side}_sha256"]:
                raise ConfigError(f"{row[side]} does not match its sha256 in the release manifest: the export "
                                  "changed since sparkle_dataset recorded it; rematerialize sparkle_dataset")
        row["pair_hash"] = pair_hash(row["prompt"], row["src_video_sha256"], row["tgt_video_sha256"])
    return rows


def data_manifest(rows: list[dict]) -> dict:
    """The content of every pair used (and its sampling weight), with one hash over all of it."""
    entries = [{k: r[k] for k in ("task", "theme", "dataset_row", "clip_id", "pair_hash", "src_video_sha256",
                                   "tgt_video_sha256", "weight", "prompt")} for r in rows]
    content = sorted((e["pair_hash"], e["weight"]) for e in entries)
    return {"rows": entries, "pairs": len(entries),
            "content_hash": hashlib.sha256(canonical_json(content).encode()).hexdigest()}


def stored_checkpoint(store: ArtifactStore, ckpt_id: str) -> tuple[StoredArtifact, dict[str, StoredArtifact]] | None:
    """The checkpoint and its companions, if all of them exist and verify."""
    main = store.lookup(KIND, ckpt_id)
    extra = {kind: store.lookup(kind, companion_id(kind, ckpt_id)) for kind in COMPANIONS}
    if main is None or not all(extra.values()):
        return None
    return main, extra  # type: ignore[return-value]


def commit_checkpoint(store: ArtifactStore, ckpt_id: str, final: Path, result: dict, manifest: dict,
                      params: dict) -> tuple[StoredArtifact, dict[str, StoredArtifact]]:
    """Copy the training process's outputs into the store: companions first, the weights last."""
    atomic_write_bytes(final / COMPANIONS["editor_data_manifest"][0], json.dumps(manifest, indent=1).encode())
    extra = {}
    for kind, (name, ext) in COMPANIONS.items():
        cid = companion_id(kind, ckpt_id)
        with store.writing(kind, cid, ext) as tmp:
            shutil.copyfile(final / name, tmp)
        extra[kind] = store.commit(kind, cid, code_version=CODE_VERSION, params={}, inputs={"checkpoint": ckpt_id},
                                   info={"file": name}, ext=ext)
    with store.writing(KIND, ckpt_id, "safetensors") as tmp:
        shutil.copyfile(final / result["weights"], tmp)
    info = {**{k: result[k] for k in ("steps", "resumed_from_step", "first_loss", "final_loss", "weights",
                                      "processes")},
            "seconds": result.get("seconds"), "pairs": manifest["pairs"], "data_hash": manifest["content_hash"]}
    main = store.commit(KIND, ckpt_id, code_version=CODE_VERSION, params=params,
                        inputs={"data": manifest["content_hash"]}, info=info, ext="safetensors")
    return main, extra


def publish_folder(store: ArtifactStore, folder: Path, main: StoredArtifact, extra: dict[str, StoredArtifact]) -> Path:
    """`<home>/checkpoints/<run_config>/`: the weights under their library's name and the companions."""
    keep = {main.info["weights"]: main, **{COMPANIONS[k][0]: a for k, a in extra.items()}}
    for name, art in keep.items():
        publish_file(store.path_of(art), folder / name)
    for path in folder.iterdir():
        if path.is_file() and path.name not in keep:
            path.unlink()
    return folder


def train_with_pipes(context: dg.AssetExecutionContext, trainer: EditorTrainerResource,
                     client: LivePipesSubprocessClient, request: dict, work: Path) -> dict:
    """Run the training process; its events become observations (throttled) and log lines."""
    name = context.partition_key
    path = work / "request.json"
    atomic_write_bytes(path, json.dumps(request).encode())
    last = {"step": 0, "saved": 0}

    def on_message(message) -> None:
        if not isinstance(message, dict):
            return
        event = message.get("event")
        if event == "saved":
            last["saved"] = message["step"]
        if event == "start":
            last["step"] = message.get("resumed_from_step", 0)
            context.log.info(f"training {name}: " + json.dumps(message))
        if event == "step":
            last["step"] = message["step"]
            every = max(1, (message.get("steps") or 100) // 50)
            if message["step"] % every == 0 or message["step"] == message.get("steps"):
                context.log_event(dg.AssetObservation(
                    asset_key=KIND, partition=name,
                    metadata={"step": message["step"], "loss": float(message["loss"]),
                              "steps_total": message.get("steps") or 0}))

    try:
        client.run(context=context, command=trainer.command(path, distributed=request["backend"] != "kiwi_edit"),
                   extras={"request": str(path)},
                   on_message=on_message)
    except DagsterPipesExecutionError as exc:
        raise dg.Failure(description=f"editor_checkpoint[{name}]: {exc} after step {last['step']}; the last saved "
                                     f"state is step {last['saved']} in {work}: rematerialize to resume from it") from exc
    return json.loads((work / "result.json").read_text())


def loss_metadata(store: ArtifactStore, extra: dict[str, StoredArtifact], folder: Path) -> dict:
    """The loss inline (a sparkline the UI shows in place), the full curve's file, per-step numbers."""
    losses = json.loads(store.path_of(extra["editor_loss"]).read_text())["loss"]
    png = base64.b64encode(loss_sparkline_png(losses)).decode()
    stride = max(1, len(losses) // 1000)
    caption = f"running mean of the loss over {len(losses)} steps; step 1: {losses[0]:.3f}, last: {losses[-1]:.3f}"
    return {"loss_curve": dg.MetadataValue.md(f"![loss](data:image/png;base64,{png})\n\n{caption}"),
            "loss_curve_png": dg.MetadataValue.path(str(folder / COMPANIONS["editor_loss_curve"][0])),
            "loss_per_step": dg.MetadataValue.json({"stride": stride, "loss": [round(v, 5) for v in losses[::stride]]}),
            "loss_first_10": float(sum(losses[:10]) / len(losses[:10])),
            "loss_last_10": float(sum(losses[-10:]) / len(losses[-10:]))}


@dg.asset(name="editor_checkpoint", partitions_def=run_config_partitions, group_name="evaluation",
          deps=[dg.AssetDep("sparkle_dataset", partition_mapping=dg.AllPartitionMapping())],
          kinds={"pytorch", "safetensors", "duckdb"}, pool="gpu", code_version=CODE_VERSION,
          automation_condition=RETRAIN_CONDITION,
          description="The editing model trained on the dataset export by one training configuration: "
                      "safetensors weights, config, data manifest, loss curve; reused when data and config "
                      "are unchanged, resumed after a kill.")
def editor_checkpoint(context: dg.AssetExecutionContext, editor_trainer: EditorTrainerResource,
                      artifact_store: ArtifactStoreResource, lineage: LineageResource,
                      pipes_subprocess_client: LivePipesSubprocessClient) -> dg.MaterializeResult:
    name = context.partition_key
    with config_failures(f"editor_checkpoint[{name}]"):
        config = load_run_config(editor_trainer.configs_dir, name)
        settings = editor_trainer.settings(config.backend)
        store, db = artifact_store.store(), lineage.lineage()
        rows = training_rows(db, config.themes)
        manifest = data_manifest(rows)
        params = {"config": config.model_dump(), "base": editor_trainer.identity(config.backend, settings)}
        ckpt_id = artifact_id(KIND, {"data": manifest["content_hash"]}, CODE_VERSION, params)
        found = stored_checkpoint(store, ckpt_id)
        if found is None:
            work = contained(artifact_store.home, "training", ckpt_id)
            request = {"task": "train", "backend": config.backend, "config": config.model_settings(),
                       "settings": settings, "work_dir": str(work),
                       "pairs": [{k: r[k] for k in ("task", "prompt", "src_video", "tgt_video", "weight")}
                                 for r in rows]}
            result = train_with_pipes(context, editor_trainer, pipes_subprocess_client, request, work)
            main, extra = commit_checkpoint(store, ckpt_id, Path(result["final_dir"]), result, manifest, params)
            shutil.rmtree(work, ignore_errors=True)
        else:
            main, extra = found
        fresh = found is None
    return record(context, db, store, Path(artifact_store.home), config, main, extra, rows, fresh)


def record(context: dg.AssetExecutionContext, db: Lineage, store: ArtifactStore, home: Path, config: TrainingConfig,
           main: StoredArtifact, extra: dict[str, StoredArtifact], rows: list[dict], fresh: bool) -> dg.MaterializeResult:
    """Lineage (checkpoint, companions, trained_on edges, materialization), the folder copy, metadata."""
    name = context.partition_key
    batch = LineageBatch()
    for art in [main, *extra.values()]:
        batch.artifacts.append(ArtifactRow(id=art.id, kind=art.kind, asset_key=KIND, partition=name, uri=art.uri,
                                           bytes=art.bytes, content_hash=art.content_hash,
                                           code_version=art.code_version, params=art.params, run_id=context.run_id,
                                           info=art.info, fresh=fresh))
    batch.edges += [(main.id, r["dataset_row"], "trained_on") for r in rows]
    batch.edges += [(a.id, main.id, "checkpoint") for a in extra.values()]
    version = data_version_of([main.id])
    themes = sorted({r["theme"] for r in rows})
    summary = {"checkpoint": main.id, "backend": config.backend, "reused": not fresh, "pairs": len(rows),
               "steps": main.info["steps"], "resumed_from_step": main.info["resumed_from_step"],
               "first_loss": main.info["first_loss"], "final_loss": main.info["final_loss"]}
    batch.materialization = {
        "run_id": context.run_id, "asset_key": KIND, "partition": name, "code_version": CODE_VERSION,
        "data_version": version, "created_at": now_iso(), "artifact_ids": [main.id, *(a.id for a in extra.values())],
        "input_data_versions": {f"sparkle_dataset[{t}]": (db.latest_materialization("sparkle_dataset", t) or {})
                                .get("data_version") for t in themes},
        "summary": summary}
    db.write(batch)
    folder = publish_folder(store, contained(home, "checkpoints", name), main, extra)
    context.log.info(f"editor_checkpoint[{name}]: {summary}")
    metadata = {**summary, "themes": dg.MetadataValue.json({t: sum(r["theme"] == t for r in rows) for t in themes}),
                "data_hash": main.info["data_hash"], "training_seconds": main.info.get("seconds") or 0.0,
                "processes": main.info["processes"], "folder": dg.MetadataValue.path(str(folder)),
                "training_config": dg.MetadataValue.json(config.model_dump()),
                **loss_metadata(store, extra, folder), "lineage_db": dg.MetadataValue.path(str(db.db_path))}
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(version))
