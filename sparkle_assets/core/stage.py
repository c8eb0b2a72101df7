"""A stage, declared once: what it reads, and the Dagster policy every stage shares.

`Stage(name, code_version, reads=..., by_products=..., per_theme=...)` is the one declaration a
stage module makes. From it follow:

- its Dagster deps (the assets that hold the roles it reads, `core.readers.ROLES`), group
  (`theme_independent` or `theme`), partitions (the `theme` dynamic partition), pool and kinds;
- the per-clip inputs it is given (`Stage.inputs`: the current rows of every role, per clip);
- the input data versions its materialization records, and its compute accounting (`Stage.finish`:
  what the step computed, what reusing saved, how many clips timed out; see `core.costs`);
- the per-clip time limit of its steps (`Stage.run`: the executor's `time_limit` for the stage);
- the failure wrapper: a per-theme stage's partition name is validated (`core.themes.check_theme_name`)
  and its config range-checked before the body runs, and a `ConfigError` (bad config, unusable
  backend settings, invalid theme file or partition name) fails the step with one line naming
  the stage, the partition and the field, instead of a traceback.

Configs subclass `core.config.StageConfig`, which range-checks every numeric field.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from .clipstep import ClipInput, Companion, StepReport, data_version_of, run_clip_step
from .config import StageConfig, config_failures
from .costs import record_step_costs, step_clock
from .executor import ClipExecutor
from .lineage import UNPARTITIONED, Lineage, LineageBatch, now_iso
from .readers import ROLES, rows_by_clip
from .store import ArtifactStore
from .themes import check_theme_name, theme_partitions


@dataclass(frozen=True)
class Stage:
    """The declaration of one stage (see the module docstring). `reads` names the roles whose
    artifacts are the parents of this stage's artifacts; an entry `"name=role"` gives the parent a
    name other than its role (the name is part of the artifact id). `by_products` are roles read
    but not hashed (see `core.clipstep`)."""

    name: str
    code_version: str
    reads: tuple[str, ...] = ()
    by_products: tuple[str, ...] = ()
    per_theme: bool = False
    group: str | None = None  # default: `theme` for per-theme stages, else `theme_independent`

    @property
    def parents(self) -> dict[str, str]:
        """parent name -> role, for every entry of `reads`."""
        return dict(entry.split("=", 1) if "=" in entry else (entry, entry) for entry in self.reads)

    @property
    def input_roles(self) -> tuple[str, ...]:
        return tuple(self.parents.values()) + self.by_products

    @property
    def deps(self) -> list[dg.AssetKey]:
        return [dg.AssetKey(a) for a in dict.fromkeys(ROLES[r].asset for r in self.input_roles)]

    def asset(self, *, kinds: set[str], description: str, pool: str | None = None) -> Callable:
        """The `@dg.asset` decorator with this stage's key, deps, group, partitions, pool, kinds and
        code version, around a body wrapped by the config check and the failure wrapper."""
        def decorate(fn: Callable) -> dg.AssetsDefinition:
            @functools.wraps(fn)
            def body(context, *args, **kwargs):
                where = f"{self.name}[{context.partition_key}]" if self.per_theme else self.name
                with config_failures(where):
                    if self.per_theme:
                        check_theme_name(context.partition_key)
                    for value in [*args, *kwargs.values()]:
                        if isinstance(value, StageConfig):
                            value.check()
                    with step_clock().running():
                        return fn(context, *args, **kwargs)

            return dg.asset(name=self.name, deps=self.deps, code_version=self.code_version,
                            group_name=self.group or ("theme" if self.per_theme else "theme_independent"),
                            partitions_def=theme_partitions if self.per_theme else None,
                            kinds=set(kinds) | {"duckdb"}, pool=pool, description=description)(body)
        return decorate

    def partition(self, context: dg.AssetExecutionContext) -> str:
        return context.partition_key if self.per_theme else UNPARTITIONED

    def rows(self, db: Lineage, theme: str | None) -> dict[str, dict[str, dict]]:
        """clip_id -> {role: current row} for every clip that has all the roles this stage reads."""
        with db.session():
            return rows_by_clip(db, theme, self.input_roles)

    def inputs(self, db: Lineage, theme: str | None,
               params: Callable[[dict[str, dict]], Mapping[str, Any]] | None = None) -> list[ClipInput]:
        """One ClipInput per clip with every role (`params(rows)` gives per-clip parameters)."""
        return [ClipInput(cid, {name: rows[role] for name, role in self.parents.items()},
                          params(rows) if params else {}, {r: rows[r] for r in self.by_products})
                for cid, rows in self.rows(db, theme).items()]

    def run(self, context: dg.AssetExecutionContext, store: ArtifactStore, clips: Sequence[ClipInput], *,
            fn: Callable, kind: str, ext: str | None, params: Mapping[str, Any], executor: ClipExecutor,
            code_version: str | None = None, companions: Sequence[Companion] = ()) -> StepReport:
        """`run_clip_step` for this stage's asset key, partition and run, on the executor for the
        stage's concurrency pool (on Ray, a `gpu` stage's clips ask for GPUs and run on actors)."""
        part = self.partition(context)
        return run_clip_step(store=store, clips=clips, fn=fn, kind=kind, ext=ext,
                             code_version=code_version or self.code_version, params=params,
                             asset_key=self.name, run_id=context.run_id, partition=part,
                             theme=part or None, executor=executor.for_pool(context.op_def.pool),
                             companions=companions, timeout=executor.time_limit(self.name))

    def finish(self, context: dg.AssetExecutionContext, db: Lineage, batch: LineageBatch, *,
               output_ids: Sequence[str], summary: dict, metadata: dict,
               all_ids: Sequence[str] | None = None,
               report: Callable[[Lineage], dict] | None = None) -> dg.MaterializeResult:
        """Write the step's lineage (artifacts, edges, materialization) and build its result.

        The data version is the hash of `output_ids`, the artifacts downstream steps read, so an
        unchanged re-run marks nothing downstream stale. The recorded input data versions are those
        of the latest materializations of every asset this stage reads. `report(db)` gives more
        metadata, read from the lineage once this step's rows are in it.
        """
        part = self.partition(context)
        version = data_version_of(output_ids)
        inputs = {}
        with db.session():
            accounting = record_step_costs(db, batch)
            for role in self.input_roles:
                key, p = ROLES[role].asset, ROLES[role].partition(part or None)
                inputs[key] = (db.latest_materialization(key, p) or {}).get("data_version")
        summary, metadata = {**summary, **accounting}, {**metadata, **accounting}
        batch.materialization = {
            "run_id": context.run_id, "asset_key": self.name, "partition": part, "code_version": self.code_version,
            "data_version": version, "input_data_versions": inputs, "created_at": now_iso(),
            "artifact_ids": sorted(set(all_ids if all_ids is not None else [a.id for a in batch.artifacts])),
            "summary": summary,
        }
        db.write(batch)
        context.log.info(f"{self.name}[{part or '-'}]: {summary}")
        if report is not None:
            metadata = {**metadata, **report(db)}
        return dg.MaterializeResult(
            metadata={**metadata, "lineage_db": dg.MetadataValue.text(db.where)},
            data_version=dg.DataVersion(version))
