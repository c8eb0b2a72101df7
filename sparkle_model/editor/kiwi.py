"""Kiwi-Edit's own recipe, run unmodified from a local checkout (`SPARKLE_KIWI_EDIT_DIR`).

Training runs the checkout's `train.py` (DiffSynth's `wan_parser` command line) on our export as a
Kiwi-Edit video CSV (`prompt,src_video,tgt_video,task`; Kiwi reads `src_video,tgt_video` relative
to `--dataset_base_path`). Kiwi prints `loss:  <value> lr:  <value>` once per iteration and saves
`step-<n>.safetensors` every `--save_steps` iterations (and a last one at the end), which is how
progress and the final checkpoint are read here. Its script cannot resume an optimizer; a rerun
after a kill starts from the newest `step-<n>.safetensors` (`--checkpoint`, weights only) and says
so. Inference runs the checkout's `demo.py` once per bench source.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from .run_files import write_run_files

TRAIN_SCRIPT, INFER_SCRIPT = "train.py", "demo.py"
WEIGHTS = "model.safetensors"  # the name Kiwi-Edit's released checkpoints use
LOSS_LINE = re.compile(r"^loss:\s+(\S+)\s+lr:\s+(\S+)")
SAVED = re.compile(r"^(step|epoch)-(\d+)\.safetensors$")


def training_csv(pairs: list[dict], base: Path) -> str:
    """Kiwi-Edit's video CSV, paths relative to `base`; a theme mixture repeats each row
    round(weight / smallest weight) times (Kiwi samples rows uniformly)."""
    low = min(p["weight"] for p in pairs)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["prompt", "src_video", "tgt_video", "task"])
    for p in pairs:
        row = [p["prompt"], os.path.relpath(p["src_video"], base), os.path.relpath(p["tgt_video"], base), p["task"]]
        writer.writerows([row] * max(1, round(p["weight"] / low)))
    return buf.getvalue()


def launcher_prefix(python: str, launcher: str, processes: int, extra: list[str]) -> list[str]:
    if launcher == "accelerate":
        return [python, "-m", "accelerate.commands.launch", "--num_processes", str(processes), *extra]
    if launcher == "torchrun":
        return [python, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), *extra]
    return [python]


def train_command(settings: dict, cfg: dict, csv_path: Path, base: Path, out_dir: Path,
                  init: Path | None) -> list[str]:
    """The exact command line: `[launcher] train.py <our data and schedule> <kiwi_args>`."""
    cmd = launcher_prefix(settings["kiwi_python"], settings["launcher"], settings["processes"],
                          cfg["kiwi_launch_args"])
    cmd += [TRAIN_SCRIPT, "--dataset_base_path", str(base), "--vid_dataset_metadata_path", str(csv_path),
            "--data_file_keys", "src_video,tgt_video", "--extra_inputs", "source_input",
            "--num_frames", str(cfg["frames"]), "--max_pixels", str(cfg["height"] * cfg["width"]),
            "--learning_rate", str(cfg["learning_rate"]), "--weight_decay", str(cfg["weight_decay"]),
            "--num_epochs", str(cfg["epochs"]), "--save_steps", str(cfg["save_every"]),
            "--output_path", str(out_dir), "--remove_prefix_in_ckpt", "pipe.", *cfg["kiwi_args"]]
    if init is not None:
        cmd += ["--checkpoint", str(init)]
    return cmd


def saved_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """(iteration, path) of every checkpoint Kiwi-Edit wrote, oldest first."""
    found = [(int(m.group(2)), p) for p in out_dir.glob("*.safetensors") if (m := SAVED.match(p.name))]
    return sorted(found)


def run_training(request: dict, report: Callable[[dict], None], log: Callable[[str], None]) -> dict:
    """Run train.py to the end, streaming its loss lines as `step` events; returns result.json's dict."""
    work = Path(request["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    settings, cfg = request["settings"], request["config"]
    kiwi_dir, out_dir = Path(settings["kiwi_edit_dir"]), work / "kiwi_output"
    out_dir.mkdir(exist_ok=True)
    base = Path(os.path.commonpath([p for pair in request["pairs"] for p in (pair["src_video"], pair["tgt_video"])]))
    csv_path = work / "kiwi_train.csv"
    csv_path.write_text(training_csv(request["pairs"], base))
    previous = saved_checkpoints(out_dir)
    init = previous[-1][1] if previous else None
    resumed = previous[-1][0] if previous else 0
    if init is not None:  # Kiwi's next run restarts its schedule and numbering: keep the warm start aside
        kept = work / f"warm_start-{resumed}.safetensors"
        shutil.move(init, kept)
        for _, p in previous[:-1]:
            p.unlink()
        init = kept
    command = train_command(settings, cfg, csv_path, base, out_dir, init)
    (work / "kiwi_command.json").write_text(json.dumps(command))
    report({"event": "start", "resumed_from_step": resumed, "resume": "weights only" if init else None,
            "steps": None, "pairs": len(request["pairs"]), "command": command})
    losses: list[float] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, cwd=kiwi_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, bufsize=1) as proc:
        for line in proc.stdout:
            match = LOSS_LINE.match(line.strip())
            if match:
                losses.append(float(match.group(1)))
                report({"event": "step", "step": len(losses), "steps": None, "loss": losses[-1]})
            else:
                log(line.rstrip())
    if proc.returncode != 0:
        raise RuntimeError(f"Kiwi-Edit's {TRAIN_SCRIPT} exited with {proc.returncode} ({' '.join(command)})")
    saved = saved_checkpoints(out_dir)
    if not saved or not losses:
        raise RuntimeError(f"Kiwi-Edit's {TRAIN_SCRIPT} finished without a checkpoint or a loss line in {out_dir}")
    if not all(math.isfinite(v) for v in losses):
        raise FloatingPointError("Kiwi-Edit reported a non-finite loss")
    final = work / "final"
    shutil.rmtree(final, ignore_errors=True)
    final.mkdir()
    shutil.copyfile(saved[-1][1], final / WEIGHTS)
    write_run_files(final, {"backend": "kiwi_edit", "command": command,
                            **{k: cfg[k] for k in ("height", "width", "frames")}}, losses)
    result = {"steps": len(losses), "resumed_from_step": resumed, "first_loss": losses[0], "final_loss": losses[-1],
              "weights": WEIGHTS, "final_dir": str(final), "kiwi_checkpoint": saved[-1][1].name,
              "processes": settings["processes"]}
    (work / "result.json").write_text(json.dumps(result))
    return result


def infer_command(settings: dict, cfg: dict, checkpoint: Path, video: str, prompt: str, out: Path) -> list[str]:
    """`python demo.py` for one bench source, as Kiwi-Edit's README runs it."""
    return [settings["kiwi_python"], INFER_SCRIPT, "--ckpt_path", str(checkpoint), "--video_path", video,
            "--prompt", prompt, "--save_path", str(out), "--max_frame", str(cfg["inference_frames"]),
            "--max_pixels", str(cfg["height"] * cfg["width"]), "--seed", "0", "--device", settings["device"]]


def run_inference(settings: dict, cfg: dict, checkpoint: Path, video: str, prompt: str, out: Path) -> None:
    command = infer_command(settings, cfg, checkpoint, video, prompt, out)
    done = subprocess.run(command, cwd=settings["kiwi_edit_dir"], capture_output=True, text=True)
    if done.returncode != 0 or not out.is_file():
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise RuntimeError(f"Kiwi-Edit's {INFER_SCRIPT} exited with {done.returncode}: {' | '.join(tail)}")
