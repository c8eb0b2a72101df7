"""`instructions` (per theme): what each clip's background should become, in words.

Per clip with a usable mask: a JSON artifact with the theme, subtheme and scene, the paper's
`chosen_keyword` ("subtheme: scene"), a long motion-rich instruction and an `original_scene`
description. Scene, opener and sentence structure are chosen deterministically from (seed,
theme, clip id) by `sparkle_model.instructions.plan_instructions`; the text comes from templates,
or from the configured VLM, which sees frame 0 and the chosen scene.
"""

import dagster as dg

from sparkle_model.instructions import plan_instructions

from ...core.clipstep import ClipInput
from ...core.config import Range, StageConfig
from ...core.reports import histogram_md
from ...core.resources import ArtifactStoreResource, ClipExecutorResource, LineageResource, ThemesResource, VlmResource
from ...core.stage import Stage
from ...core.steps import INSTRUCTIONS_VERSION, compute_instruction

STAGE = Stage("instructions", INSTRUCTIONS_VERSION, reads=("clip", "mask"), by_products=("frame0",), per_theme=True)


class InstructionsConfig(StageConfig):
    """`seed` picks each clip's scene and wording; change it to draw a new set."""

    RANGES = {"seed": Range(0, 2 ** 31 - 1)}
    seed: int = 0


@STAGE.asset(kinds={"json"},
             description="Per clip and theme: subtheme, scene keyword, long motion-rich instruction, original-scene "
                         "text.")
def instructions(context: dg.AssetExecutionContext, config: InstructionsConfig, themes: ThemesResource,
                 vlm: VlmResource, artifact_store: ArtifactStoreResource, lineage: LineageResource,
                 clip_executor: ClipExecutorResource) -> dg.MaterializeResult:
    name = context.partition_key
    theme = themes.theme(name)
    store, db = artifact_store.store(), lineage.lineage()
    rows = STAGE.rows(db, name)
    plans = plan_instructions(theme, list(rows), config.seed)
    params = {"theme": theme.name, "edit_type": theme.edit_type, "render": theme.render,
              "openers": list(theme.openers), "vlm": vlm.settings()}
    clips = [ClipInput(cid, {"clip": r["clip"], "mask": r["mask"]},
                       {"plan": p.to_json(), "labels": r["mask"]["info"].get("labels", [])}, {"frame0": r["frame0"]})
             for (cid, r), p in zip(rows.items(), plans)]
    report = STAGE.run(context, store, clips, fn=compute_instruction, kind="instruction", ext="json", params=params,
                       executor=clip_executor.executor())
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
    return STAGE.finish(context, db, report.batch, output_ids=[a.id for a in report.artifacts.values()],
                        summary=report.counts, metadata=metadata)
