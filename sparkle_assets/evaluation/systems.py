"""The systems the benchmark scores: each a named producer of one edited video per bench sample.

- `identity`: the source returned unchanged (what "no edit" scores);
- `static_composite`: the source foreground, with the pipeline's own compositor, over the pipeline's
  background plate repeated for the clip's length: a background that does not move, the failure the
  paper blames on OpenVE-3M;
- `pipeline`: the data generator as a row of the table. For a sample from our own `bench_split`, the
  pair's existing edited video; for any other sample, the generating stages run on it
  (`pipeline_chain`, the same per-clip functions and code versions as the stages, `core.steps`),
  with the sample's own prompt as the instruction and the nearest taxonomy scene
  (`sparkle_bench.prompts.nearest_scene`, or the sample's `chosen_keyword` when it has one) as the
  look the built-in backends render; the prompt's motion words pick the animation cues;
- a folder (`bench.systems`, `sparkle bench --system NAME=DIR`): an editing model's outputs in
  Kiwi-Edit's inference layout or flat; a sample without an output is recorded `missing`;
- an asset (`SYSTEM_ASSETS`): the current `bench_output` artifacts of another asset, one system per
  `info["system"]`, e.g. a trained checkpoint's edits of the bench samples. A new producer registers
  here by name and records, per sample (`clip_id` = the sample id), an mp4 artifact of kind
  `bench_output` with its system's name; its lineage (e.g. to the checkpoint) comes along.

Every output is stored as a `bench_output` artifact whose parents are the sample's clip and the
system (a record-only `bench_system` artifact), so a score traces to its video, its system and
its sample's source. Outputs are content-addressed: re-running reuses every output whose inputs
did not change, so adding a system produces (and judges) only that system's outputs.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

from sparkle_model.edited_video import composite_video
from sparkle_model.masks import load_mask_npz
from sparkle_model.video import VideoError, iter_frames, probe, read_png, write_video

from ..core.clipstep import ClipInput, run_clip_step
from ..core.lineage import ArtifactRow, Lineage, LineageBatch
from ..core.steps import (BACKGROUNDS_VERSION, CLEAN_VERSION, EDITS_VERSION, FINALS_VERSION, FRAME0, GUIDANCE_VERSION,
                          LAYER, PLATES_VERSION, EditedFirstFramesConfig, EditedVideosConfig, GuidanceVideosConfig,
                          compute_background_plate, compute_background_video, compute_clean_background,
                          compute_edited_first_frame, compute_edited_video, compute_guidance_video)
from ..core.store import artifact_id

SYSTEM_VERSION = "bench_system-1"
OUTPUT_VERSION = "bench_outputs-1"
INSTRUCTION_VERSION = "bench_instruction-1"
SYSTEM_ASSETS = ("editor_outputs",)  # assets whose `bench_output` artifacts are systems (one per info["system"])


@dataclass(frozen=True)
class System:
    """One row of the bench table: its name, how it produces outputs, and that producer's settings."""

    name: str
    kind: str  # identity | static_composite | pipeline | folder | asset
    params: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return artifact_id("bench_system", {}, SYSTEM_VERSION, {"name": self.name, "kind": self.kind, **self.params})

    def row(self, run_id: str, partition: str, theme: str) -> ArtifactRow:
        return ArtifactRow(id=self.id, kind="bench_system", asset_key="bench_outputs", partition=partition,
                           clip_id=None, theme=theme, code_version=SYSTEM_VERSION, params=dict(self.params),
                           run_id=run_id, info={"name": self.name, "kind": self.kind})


def systems_for(settings: dict, db: Lineage, theme: str) -> list[System]:
    """The built-in systems, every folder of `settings["systems"]`, and every asset system."""
    out = [System("identity", "identity"), System("static_composite", "static_composite"),
           System("pipeline", "pipeline")]
    out += [System(name, "folder", {"dir": folder}) for name, folder in sorted(settings["systems"].items())]
    for asset in SYSTEM_ASSETS:
        names = {r["info"].get("system") for r in db.current_artifacts(asset, theme, kind="bench_output")}
        out += [System(str(n), "asset", {"asset": asset}) for n in sorted(n for n in names if n)]
    return out


# -- per-sample output functions (run by core.clipstep in executor workers) -----------------------------------
def copy_source(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """`identity`: the source clip, byte for byte."""
    shutil.copyfile(inputs["clip"], out)
    return {"system": params["system"], "sample": params["sample"]}


def static_composite(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """`static_composite`: the pipeline's compositor over the plate, repeated (a background that never moves)."""
    masks = load_mask_npz(inputs["mask"])
    plate = read_png(inputs["plate"])
    frames = composite_video(iter_frames(inputs["clip"]), repeat(plate, params["frames"]), masks, params["harmony"],
                             params["memory"])
    write_video(out, frames, fps=params["fps"])
    return {"system": params["system"], "sample": params["sample"]}


def link_output(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """An output that already is a stored file (the pipeline's edited video, an asset system's
    output): hard-linked into place, copied across file systems."""
    try:
        os.link(inputs["video"], out)
    except OSError:
        shutil.copyfile(inputs["video"], out)
    return {"system": params["system"], "sample": params["sample"]}


def copy_output(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """A folder system's output: checked to be a readable video (else the step records why), then copied."""
    info = probe(params["file"])
    if info.frames < 2:
        raise VideoError(f"{params['file']}: {info.frames} frame(s), not a video edit")
    shutil.copyfile(params["file"], out)
    return {"system": params["system"], "sample": params["sample"], "file": params["file"],
            "size": [info.width, info.height], "fps": info.fps, "frames": info.frames}


def bench_instruction(out: Path, inputs: dict[str, Path], params: dict) -> dict:
    """The instruction record of a bench sample: its own prompt, the matched scene for the look, the
    prompt's motion cues (else the scene's) for the animation; the same fields as `instructions`."""
    scene = params["scene"]
    record = {"clip_id": params["sample"], "theme": params["theme"], "edit_type": params["edit_type"],
              "render": params["render"], "subtheme": scene["subtheme"], "scene": scene,
              "chosen_keyword": f"{scene['subtheme']}: {scene['name']}", "motion": params["motion"],
              "seed": params["seed"], "instruction": params["prompt"], "original_scene": "", "writer": "bench prompt"}
    out.write_text(json.dumps(record, indent=1))
    return {"chosen_keyword": record["chosen_keyword"], "instruction": params["prompt"]}


# -- the pipeline's generating stages on bench samples ---------------------------------------------------------
@dataclass
class ChainStep:
    name: str  # the role its artifact plays for the next steps
    kind: str
    ext: str
    version: str
    fn: object
    parents: tuple[str, ...]
    by_products: tuple[str, ...] = ()
    companions: tuple = ()
    fps_params: bool = False


CHAIN = (
    ChainStep("clean", "clean_background", "png", CLEAN_VERSION, compute_clean_background, ("clip", "mask"),
              companions=(FRAME0,)),
    ChainStep("instruction", "instruction", "json", INSTRUCTION_VERSION, bench_instruction, ("clip", "mask")),
    ChainStep("edited", "edited_first_frame", "png", EDITS_VERSION, compute_edited_first_frame,
              ("clip", "mask", "instruction", "clean"), by_products=("frame0",), companions=(LAYER,)),
    ChainStep("plate", "background_plate", "png", PLATES_VERSION, compute_background_plate,
              ("clip", "mask", "instruction", "edited", "clean"), by_products=("layer",)),
    ChainStep("background", "background_video", "mp4", BACKGROUNDS_VERSION, compute_background_video,
              ("clip", "instruction", "plate"), by_products=("layer",), fps_params=True),
    ChainStep("guidance", "guidance_video", "mp4", GUIDANCE_VERSION, compute_guidance_video,
              ("clip", "mask", "background"), fps_params=True),
    ChainStep("video", "edited_video", "mp4", FINALS_VERSION, compute_edited_video,
              ("clip", "mask", "instruction", "edited", "background", "guidance"), fps_params=True),
)
COMPANION_ROLES = {FRAME0.kind: "frame0", LAYER.kind: "layer"}


def chain_params(backends: dict) -> dict[str, dict]:
    """Each chain step's parameters: the stages' default configs and the configured backends."""
    return {"clean": {}, "instruction": {}, "edited": {"backend": backends["edit"],
                                                       "harmony": EditedFirstFramesConfig().harmony},
            "plate": {"backend": backends["edit"]}, "background": {"backend": backends["video"]},
            "guidance": GuidanceVideosConfig().model_dump(),
            "video": {"backend": backends["final"], **EditedVideosConfig().model_dump()}}


def pipeline_chain(samples: list[dict], *, store, backends: dict, executor, run_id: str, theme: str,
                   batch: LineageBatch) -> tuple[dict[str, dict[str, dict]], dict[str, str]]:
    """Run the generating stages on `samples` (each {"sample", "clip": row, "mask": row,
    "instruction": per-sample params}). Returns each sample's rows by role (`video`, `plate`, ...)
    and the samples that failed a step, with the reason; every artifact is added to `batch`."""
    rows = {s["sample"]: {"clip": s["clip"], "mask": s["mask"]} for s in samples}
    per_sample = {s["sample"]: s for s in samples}
    params = chain_params(backends)
    failed: dict[str, str] = {}
    for step in CHAIN:
        clips = []
        for sid, have in rows.items():
            if sid in failed:
                continue
            clip_params = dict(per_sample[sid]["instruction"]) if step.name == "instruction" else {}
            if step.fps_params:
                info = have["clip"]["info"]
                clip_params.update(fps=info["fps"], **({"frames": info["frames"]} if step.name == "background" else {}))
            clips.append(ClipInput(sid, {p: have[p] for p in step.parents}, clip_params,
                                   {b: have[b] for b in step.by_products}))
        report = run_clip_step(store=store, clips=clips, fn=step.fn, kind=step.kind, ext=step.ext,
                               code_version=step.version, params=params[step.name], asset_key="bench_outputs",
                               run_id=run_id, partition=theme, theme=theme, executor=executor,
                               companions=step.companions)
        batch.artifacts += report.batch.artifacts
        batch.edges += report.batch.edges
        failed.update({sid: f"{step.kind}: {why}" for sid, why in report.failures.items()})
        for sid, art in report.artifacts.items():
            rows[sid][step.name] = {"id": art.id, "uri": art.uri, "info": art.info}
        for kind, arts in report.companions.items():
            for sid, art in arts.items():
                rows[sid][COMPANION_ROLES[kind]] = {"id": art.id, "uri": art.uri, "info": art.info}
    return rows, failed
