"""The process `editor_checkpoint` and `editor_outputs` launch through Dagster Pipes.

    python -m sparkle_assets.evaluation.training_process --request <work dir>/request.json
    accelerate launch -m sparkle_assets.evaluation.training_process --request ...    (GPU nodes)
    torchrun --nproc_per_node 8 -m sparkle_assets.evaluation.training_process --request ...

The request (JSON, written by the asset) says what to do: `train` (tiny / lora: the loop in
`sparkle_model.editor.train`; kiwi_edit: Kiwi-Edit's own train.py) or `infer` (edit each bench
source into `outputs/<task>.mp4`). When Dagster started it, rank 0 opens the Pipes connection: every
event goes back as a custom message (the asset shows them live) and progress is logged. Without
Dagster it runs the same, printing its events. Imports neither Dagster nor the asset code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path


class Reporter:
    """Sends events to Dagster (or stdout) and logs a progress line at most every `every` seconds."""

    def __init__(self, pipes, every: float = 10.0):
        self.pipes, self.every, self.last = pipes, every, 0.0

    def log(self, text: str) -> None:
        if self.pipes is not None:
            self.pipes.log.info(text)
        else:
            print(text, flush=True)

    def __call__(self, event: dict) -> None:
        if self.pipes is not None:
            self.pipes.report_custom_message(event)
        kind = event.get("event")
        if kind == "step":
            now = time.monotonic()
            if now - self.last >= self.every or event["step"] == event.get("steps"):
                self.last = now
                self.log(f"step {event['step']}/{event.get('steps') or '?'} loss {event['loss']:.4f}")
        elif kind in ("start", "saved", "output", "output_failed", "done"):
            self.log(json.dumps(event))


def run(request: dict, report: Reporter) -> dict:
    backend = request["backend"]
    if backend != "kiwi_edit":
        import torch

        torch.set_flush_denormal(True)  # random-weight models are 10-30x faster on CPU with it
    if request["task"] == "train":
        done = Path(request["work_dir"]) / "result.json"
        if done.is_file():  # finished before, but not yet stored (the asset's process died after training)
            result = json.loads(done.read_text())
            report({"event": "start", "resumed_from_step": result["steps"], "steps": result["steps"], "finished": True})
            return result
        if backend == "kiwi_edit":
            from sparkle_model.editor.kiwi import run_training

            return run_training(request, report, lambda line: print(line, file=sys.stderr, flush=True))
        from sparkle_model.editor.train import train

        return train(request, report)
    if request["task"] == "infer":
        return infer(request, report)
    raise ValueError(f"unknown task {request['task']!r}")


def infer(request: dict, report: Reporter) -> dict:
    """Edit every sample; one that fails is reported with its error, the others go on."""
    from sparkle_model.editor import kiwi
    from sparkle_model.video import probe, read_video, write_video

    cfg, settings, folder = request["config"], request["settings"], Path(request["checkpoint_dir"])
    editor = None
    if request["backend"] != "kiwi_edit":
        from sparkle_model.editor.infer import edit_video, load_editor, seed_of

        editor_config = json.loads((folder / "editor_config.json").read_text())
        editor = load_editor(folder, editor_config, settings.get("device", "cpu"))
    done, failed = [], {}
    for sample in request["samples"]:
        began, out = time.monotonic(), Path(sample["out"])
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            if editor is None:
                kiwi.run_inference(settings, cfg, folder / request["weights"], sample["source"], sample["prompt"], out)
            else:
                frames = read_video(sample["source"])
                edited = edit_video(editor, frames, sample["prompt"], editor_config, cfg["inference_steps"],
                                    cfg["guidance"], seed_of(sample["task"]))
                write_video(out, edited, fps=probe(sample["source"]).fps)
        except Exception as exc:  # one bad sample never fails the others
            failed[sample["task"]] = f"{type(exc).__name__}: {exc}"
            report({"event": "output_failed", "task": sample["task"], "error": failed[sample["task"]]})
            continue
        done.append(sample["task"])
        report({"event": "output", "task": sample["task"], "seconds": round(time.monotonic() - began, 2)})
    result = {"done": done, "failed": failed}
    Path(request["work_dir"], "infer_result.json").write_text(json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--request", required=True, help="the request JSON written by the asset")
    args = parser.parse_args(argv)
    request = json.loads(Path(args.request).read_text())
    rank = int(os.environ.get("RANK", "0"))
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

    started_by_dagster = DAGSTER_PIPES_CONTEXT_ENV_VAR in os.environ
    pipes_cm = open_dagster_pipes() if rank == 0 and started_by_dagster else contextlib.nullcontext()
    with pipes_cm as pipes:
        report = Reporter(pipes)
        result = run(request, report)
        if rank == 0:
            report({"event": "done", **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
