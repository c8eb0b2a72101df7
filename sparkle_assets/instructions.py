"""`instructions` (per theme): what each clip's background should become, in words.

Per clip with a usable mask: a JSON artifact with the theme, subtheme and scene, the paper's
`chosen_keyword` ("subtheme: scene"), a long motion-rich instruction and an `original_scene`
description. Scene, opener and sentence structure are chosen deterministically from (seed,
theme, clip id) by `sparkle_model.instructions.plan_instructions`; the text comes from templates,
or from the configured VLM, which sees frame 0 and the chosen scene.
"""

import json
from pathlib import Path

import dagster as dg

from sparkle_model.instructions import (MAX_CHARS, MIN_CHARS, InstructionPlan, describe_original,
                                        plan_instructions, write_instruction)
from sparkle_model.masks import load_mask_npz
from sparkle_model.video import first_frame
from sparkle_model.vlm import VlmError, instruction_prompt, parse_json_reply

from .clean_backgrounds import clean_backgrounds
from .clipstep import ClipInput, run_clip_step
from .foreground_masks import usable_masks
from .resources import (ArtifactStoreResource, ClipExecutorResource, LineageResource, ThemesResource,
                        VlmResource)
from .static_clips import kept_clips
from .steps import finish_step, histogram_md
from .themes import theme_partitions

CODE_VERSION = "instructions-1"


class InstructionsConfig(dg.Config):
    """`seed` picks each clip's scene and wording; change it to draw a new set."""

    seed: int = 0


def compute_instruction(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """Per-clip function: the instruction record, written as JSON."""
    plan = InstructionPlan.from_json(params["plan"])
    frame = first_frame(inputs["clip"])
    mask0 = load_mask_npz(inputs["mask"])[0]
    record = {"clip_id": plan.clip_id, "theme": params["theme"], "edit_type": params["edit_type"],
              "render": params["render"], "subtheme": plan.scene.subtheme, "scene": plan.scene.to_json(),
              "chosen_keyword": plan.scene.keyword, "motion": list(plan.scene.motion), "seed": plan.seed}
    vlm = VlmResource.build(params["vlm"])
    if vlm is None:
        record["instruction"] = write_instruction(plan, tuple(params["openers"]))
        record["original_scene"] = describe_original(frame, mask0, params["labels"])
        record["writer"] = "template"
    else:
        reply = parse_json_reply(vlm.generate(instruction_prompt(params["theme"], plan.scene), [frame]),
                                 ("instruction", "original_scene"))
        text = str(reply["instruction"]).strip()
        if not MIN_CHARS // 2 <= len(text) <= MAX_CHARS * 1.5:
            raise VlmError(f"VLM instruction has {len(text)} characters (expected about {MIN_CHARS}-{MAX_CHARS}): {text[:80]!r}")
        record.update(instruction=text, original_scene=str(reply["original_scene"]).strip(), writer="vlm")
    out.write_text(json.dumps(record, indent=1))
    return {k: record[k] for k in ("chosen_keyword", "instruction", "original_scene", "writer")}


def theme_clips(db) -> list[tuple[dict, dict]]:
    """(clip row, mask row) for every static clip with a usable mask, in clip-id order."""
    clips = {c["clip_id"]: c for c in kept_clips(db)}
    masks = usable_masks(db)
    return [(clips[cid], masks[cid]) for cid in sorted(masks) if cid in clips]


def current_by_clip(db, asset_key: str, theme: str, kind: str) -> dict[str, dict]:
    """clip_id -> the ok artifact rows of a theme asset's latest materialization."""
    return {r["clip_id"]: r for r in db.current_artifacts(asset_key, theme, kind=kind)}


@dg.asset(
    deps=[clean_backgrounds],
    partitions_def=theme_partitions,
    code_version=CODE_VERSION,
    group_name="theme",
    kinds={"json", "duckdb"},
    description="Per clip and theme: subtheme, scene keyword, long motion-rich instruction, original-scene text.",
)
def instructions(context: dg.AssetExecutionContext, config: InstructionsConfig, themes: ThemesResource,
                 vlm: VlmResource, artifact_store: ArtifactStoreResource, lineage: LineageResource,
                 clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    name = context.partition_key
    try:
        theme = themes.theme(name)
        vlm_settings = vlm.settings()
    except ValueError as exc:
        raise dg.Failure(description=f"instructions[{name}]: {exc}") from exc
    store, db = artifact_store.store(), lineage.lineage()
    pairs = theme_clips(db)
    plans = plan_instructions(theme, [c["clip_id"] for c, _ in pairs], config.seed)
    params = {"theme": theme.name, "edit_type": theme.edit_type, "render": theme.render,
              "openers": list(theme.openers), "vlm": vlm_settings}
    clips = [ClipInput(c["clip_id"], {"clip": c, "mask": m}, {"plan": p.to_json(), "labels": m["info"].get("labels", [])})
             for (c, m), p in zip(pairs, plans)]
    report = run_clip_step(store=store, clips=clips, fn=compute_instruction, kind="instruction", ext="json",
                           code_version=CODE_VERSION, params=params, asset_key="instructions", run_id=context.run_id,
                           partition=name, theme=name, executor=clip_executor.executor())
    infos = [a.info for _, a in sorted(report.artifacts.items())]
    examples = "\n".join(f"| {i['chosen_keyword']} | {i['instruction']} |" for i in infos[:4])
    metadata = {
        **report.counts,
        "theme_file": dg.MetadataValue.path(theme.path),
        "scenes_used": len({i["chosen_keyword"] for i in infos}),
        "length_histogram": histogram_md([len(i["instruction"]) for i in infos], bins=[0, 150, 200, 250, 300, 350, 400, 470, 600]),
        "examples": dg.MetadataValue.md("| keyword | instruction |\n|---|---|\n" + examples),
        "failures": dg.MetadataValue.json(report.failures),
    }
    return finish_step(context, db, report.batch, asset_key="instructions",
                       output_ids=[a.id for a in report.artifacts.values()], all_ids=[a.id for a in report.batch.artifacts],
                       code_version=CODE_VERSION, summary=report.counts, metadata=metadata, partition=name,
                       input_assets=["foreground_masks", "clean_backgrounds"])
