"""`editor_outputs` (per `theme`): every trained checkpoint's edits of the theme's bench samples.

For each `run_config` with a current `editor_checkpoint`, each `bench_samples` source clip is edited by that
checkpoint with the backend that trained it (the training process again, task `infer`; Kiwi-Edit's
demo.py for `kiwi_edit`), one process per checkpoint. Each output is a `bench_output` artifact (H.264
mp4, `clip_id` = the sample id, `info["system"]` = `editor_<run_config>`) whose id comes from the
checkpoint and the sample's content, linked to the checkpoint (role `checkpoint`) and to the sample
(role `sample`); a sample that fails is recorded with its error and counted, the others go on.
That is how `bench_outputs` finds them (`systems.SYSTEM_ASSETS`; it depends on this asset through the
`editor_output` role): each checkpoint is a system of the bench table, next to the baselines. The
outputs are also published as `<home>/editor_outputs/<run_config>/<theme>/{id}_edited.mp4`.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

import dagster as dg
from dagster._core.errors import DagsterPipesExecutionError

from ..core.clipstep import data_version_of
from ..core.config import ConfigError, config_failures
from ..core.lineage import ArtifactRow, Lineage, LineageBatch, now_iso
from ..core.reports import pick_frames, sheet_metadata
from ..core.resources import ArtifactStoreResource, LineageResource
from ..core.store import ArtifactStore, artifact_id, atomic_write_bytes, canonical_json, contained, publish_file
from ..core.themes import check_theme_name, theme_partitions
from .checkpoint_files import COMPANIONS, KIND as CHECKPOINT, companion_id
from .run_configs import load_run_config
from .trainer import EditorTrainerResource, LivePipesSubprocessClient

CODE_VERSION = "editor_outputs-1"
KIND = "bench_output"  # what bench_outputs reads from this asset, one system per info["system"]


def system_name(run_config: str) -> str:
    return f"editor_{run_config}"


def bench_samples(db: Lineage, store: ArtifactStore, theme: str) -> list[dict]:
    """The theme's usable bench samples, each with its source clip and the hash of its content."""
    rows = db.current_artifacts("bench_samples", theme, kind="bench_sample")
    clips = db.artifacts_by_id([r["info"]["clip_artifact"] for r in rows])
    samples = []
    for row in rows:
        info, clip = row["info"], clips[row["info"]["clip_artifact"]]
        content = {"prompt": info["prompt"], "source": clip["content_hash"]}
        samples.append({"sample": info["sample_id"], "prompt": info["prompt"], "source": str(store.resolve(clip["uri"])),
                        "row": row["id"], "hash": hashlib.sha256(canonical_json(content).encode()).hexdigest()})
    return samples


def current_checkpoints(db: Lineage) -> dict[str, dict]:
    """run_config -> its current checkpoint row, for every run_config that has one."""
    names = [r["partition"] for r in db.query("SELECT DISTINCT partition FROM materialization WHERE asset_key = ? "
                                              "ORDER BY partition", [CHECKPOINT])]
    found = {name: db.current_artifacts(CHECKPOINT, name, kind=CHECKPOINT) for name in names}
    return {name: rows[0] for name, rows in found.items() if rows}


def checkpoint_folder(store: ArtifactStore, ckpt: dict, folder: Path) -> Path:
    """The checkpoint's weights and editor_config.json, linked from the store into `folder`."""
    config = store.lookup("editor_config", companion_id("editor_config", ckpt["id"]))
    if config is None:
        raise ConfigError(f"checkpoint {ckpt['id']}'s editor_config is missing from the store: rematerialize "
                          "editor_checkpoint")
    publish_file(store.resolve(ckpt["uri"]), folder / ckpt["info"]["weights"])
    publish_file(store.path_of(config), folder / COMPANIONS["editor_config"][0])
    return folder


def edit_samples(context, trainer: EditorTrainerResource, client: LivePipesSubprocessClient, store: ArtifactStore,
                 home: Path, name: str, ckpt: dict, samples: list[dict], params: dict) -> dict[str, str]:
    """Run the checkpoint's inference process on `samples`; store each output; returns the failures."""
    config = load_run_config(trainer.configs_dir, name)
    work = contained(home, "inference", ckpt["id"], context.partition_key)
    request = {"task": "infer", "backend": config.backend, "config": config.model_settings(),
               "settings": trainer.settings(config.backend), "work_dir": str(work), "weights": ckpt["info"]["weights"],
               "checkpoint_dir": str(checkpoint_folder(store, ckpt, work / "checkpoint")),
               "samples": [{"task": s["sample"], "prompt": s["prompt"], "source": s["source"],
                            "out": str(contained(work, "outputs", f"{s['sample']}.mp4"))} for s in samples]}
    path = work / "request.json"
    atomic_write_bytes(path, json.dumps(request).encode())
    try:
        client.run(context=context, command=trainer.command(path, distributed=False), extras={"request": str(path)})
    except DagsterPipesExecutionError as exc:
        return {s["sample"]: f"the inference process of {name} exited: {exc}" for s in samples}
    failed = json.loads((work / "infer_result.json").read_text())["failed"]
    for s in samples:
        if s["sample"] in failed:
            continue
        with store.writing(KIND, s["id"], "mp4") as tmp:
            os.replace(contained(work, "outputs", f"{s['sample']}.mp4"), tmp)
        store.commit(KIND, s["id"], code_version=CODE_VERSION, params=params,
                     inputs={"checkpoint": ckpt["id"], "sample": s["hash"]}, info=s["info"], ext="mp4")
    shutil.rmtree(work, ignore_errors=True)
    return failed


@dg.asset(name="editor_outputs", partitions_def=theme_partitions, group_name="bench",
          deps=[dg.AssetDep(CHECKPOINT, partition_mapping=dg.AllPartitionMapping()), dg.AssetDep("bench_samples")],
          kinds={"video", "duckdb"}, pool="gpu", code_version=CODE_VERSION,
          description="Every trained checkpoint's edits of the theme's bench samples ({id}_edited.mp4), each linked "
                      "to the checkpoint and the sample: one bench system per checkpoint.")
def editor_outputs(context: dg.AssetExecutionContext, editor_trainer: EditorTrainerResource,
                   artifact_store: ArtifactStoreResource, lineage: LineageResource,
                   pipes_subprocess_client: LivePipesSubprocessClient) -> dg.MaterializeResult:
    theme, home = context.partition_key, Path(artifact_store.home)
    store, db = artifact_store.store(), lineage.lineage()
    with config_failures(f"editor_outputs[{theme}]"):
        check_theme_name(theme)
        samples = bench_samples(db, store, theme)
    batch, counts, failures, published = LineageBatch(), {}, {}, {}
    for name, ckpt in current_checkpoints(db).items():
        system = system_name(name)
        try:
            config = load_run_config(editor_trainer.configs_dir, name)
        except ConfigError as exc:
            failures[system] = {"*": f"not edited: {exc}"}
            continue
        params = {k: getattr(config, k) for k in ("inference_steps", "guidance", "inference_frames")}
        mine = []
        for s in samples:
            aid = artifact_id(KIND, {"checkpoint": ckpt["id"], "sample": s["hash"]}, CODE_VERSION, params)
            mine.append({**s, "id": aid, "info": {"system": system, "sample": s["sample"], "checkpoint": ckpt["id"],
                                                  "run_config": name, "prompt": s["prompt"]}})
        todo = [s for s in mine if store.lookup(KIND, s["id"]) is None]
        todo_ids = {s["id"] for s in todo}
        failed = {}
        if todo:
            try:
                failed = edit_samples(context, editor_trainer, pipes_subprocess_client, store, home, name, ckpt, todo,
                                      params)
            except ConfigError as exc:  # e.g. its base model directory is gone: the other checkpoints go on
                failed = {s["sample"]: str(exc) for s in todo}
        for s in mine:
            art = store.lookup(KIND, s["id"])
            row = ArtifactRow(id=s["id"], kind=KIND, asset_key="editor_outputs", partition=theme, clip_id=s["sample"],
                              theme=theme, code_version=CODE_VERSION, params=params, run_id=context.run_id,
                              info=s["info"], fresh=s["id"] in todo_ids)
            if art is None:
                row.status, row.reason = "failed", failed.get(s["sample"], "no output written")
            else:
                row.uri, row.bytes, row.content_hash = art.uri, art.bytes, art.content_hash
                published.setdefault(name, []).append((s, art))
            batch.artifacts.append(row)
            batch.edges += [(s["id"], ckpt["id"], "checkpoint"), (s["id"], s["row"], "sample")]
        counts[system] = {"checkpoint": ckpt["id"], "outputs": len(published.get(name, [])),
                          "computed": len(todo) - len(failed), "reused": len(mine) - len(todo), "failed": len(failed)}
        if failed:
            failures[system] = failed
    return record(context, db, store, home, batch, samples, counts, failures, published)


def record(context, db: Lineage, store: ArtifactStore, home: Path, batch: LineageBatch, samples: list[dict],
           counts: dict, failures: dict, published: dict) -> dg.MaterializeResult:
    theme = context.partition_key
    for name, done in published.items():
        folder = contained(home, "editor_outputs", name, theme)
        for s, art in done:
            publish_file(store.path_of(art), contained(folder, f"{s['sample']}_edited.mp4"))
        keep = {f"{s['sample']}_edited.mp4" for s, _ in done}
        for path in folder.glob("*_edited.mp4"):
            if path.name not in keep:
                path.unlink()
    ok = [a.id for a in batch.artifacts if a.status == "ok"]
    version = data_version_of(ok)
    summary = {"samples": len(samples), "per_system": counts, "failures": failures}
    batch.materialization = {
        "run_id": context.run_id, "asset_key": "editor_outputs", "partition": theme, "code_version": CODE_VERSION,
        "data_version": version, "created_at": now_iso(), "artifact_ids": [a.id for a in batch.artifacts],
        "input_data_versions": {f"{CHECKPOINT}[{name}]": (db.latest_materialization(CHECKPOINT, name) or {})
                                .get("data_version") for name in published} |
                               {"bench_samples": (db.latest_materialization("bench_samples", theme) or {})
                                .get("data_version")},
        "summary": summary}
    db.write(batch)
    table = "\n".join(f"| {system} | {c['outputs']} | {c['computed']} | {c['reused']} | {c['failed']} |"
                      for system, c in counts.items())
    metadata = {"samples": len(samples), "systems": len(counts),
                "per_system": dg.MetadataValue.md("| system | outputs | computed | reused | failed |\n"
                                                  "|---|---|---|---|---|\n" + table),
                "failures": dg.MetadataValue.json(failures),
                "folder": dg.MetadataValue.path(str(home / "editor_outputs"))}
    if published and samples:
        made = {name: {s["sample"]: store.path_of(art) for s, art in done} for name, done in published.items()}
        ids = {name: {s["sample"]: art.id for s, art in done} for name, done in published.items()}
        clips = {s["sample"]: {"source": s["source"], "label": "", "outputs": {n: m.get(s["sample"]) for n, m in
                                                                             made.items()},
                               "shows": [s["row"]] + [i.get(s["sample"]) for i in ids.values()]} for s in samples}
        first = lambda path: pick_frames(path, [0])[0] if path else None  # noqa: E731
        columns = [("source", lambda c: first(c["source"]))] + [
            (system_name(name), lambda c, name=name: first(c["outputs"][name])) for name in made]
        metadata.update(sheet_metadata(str(home), theme, "editor_outputs", clips, columns))
    context.log.info(f"editor_outputs[{theme}]: {summary}")
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(version))
