"""The training loop shared by the `tiny` and `lora` backends, resumable and reporting as it goes.

`train(request, report)` trains the editor the request describes on its pairs for `steps` optimizer
steps through `accelerate` (one CPU process here; `accelerate launch` / `torchrun` on GPU nodes: each
rank draws its own batches, rank 0 saves and reports). Every `save_every` steps the trainable weights,
the optimizer state and the losses so far go to `<work_dir>/state-<step>/` (written under a temporary
name, then renamed: a killed run never leaves a state that looks complete). A new run of the same
request resumes from the newest state; batches, noise and noise levels are drawn from (seed, step,
rank), so a resumed run continues exactly as an uninterrupted one would.

At the end `<work_dir>/final/` holds the weights (`editor.safetensors`, or the LoRA adapter in
diffusers' format), `editor_config.json` (what rebuilds the model), `loss.json` (per-step numbers)
and `loss.png`; `<work_dir>/result.json` summarises the run. `report(event)` receives `start`,
`step` and `saved` events as plain dicts.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .data import Pair, PairBank
from .run_files import write_run_files
from .model import TINY_WEIGHTS, build_lora, build_tiny, save_lora

Report = Callable[[dict], None]
STATE_PREFIX = "state-"


def generator(*key: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1)[0]))


def latest_state(work_dir: Path) -> Path | None:
    """The newest complete saved state (a renamed `state-<step>` folder with its progress file)."""
    states = [p for p in work_dir.glob(f"{STATE_PREFIX}*") if (p / "progress.json").is_file()]
    return max(states, key=lambda p: int(p.name[len(STATE_PREFIX):]), default=None)


def save_state(work_dir: Path, step: int, trainable: dict, optimizer_state: dict, progress: dict) -> Path:
    from safetensors.torch import save_file

    tmp = work_dir / f".{STATE_PREFIX}tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    save_file(trainable, str(tmp / "trainable.safetensors"))
    torch.save(optimizer_state, tmp / "optimizer.pt")
    (tmp / "progress.json").write_text(json.dumps(progress))
    final = work_dir / f"{STATE_PREFIX}{step:07d}"
    os.replace(tmp, final)
    for old in work_dir.glob(f"{STATE_PREFIX}*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(state: Path) -> tuple[dict, dict, dict]:
    from safetensors.torch import load_file

    return (load_file(str(state / "trainable.safetensors")),
            torch.load(state / "optimizer.pt", weights_only=True), json.loads((state / "progress.json").read_text()))


def _build(request: dict, device: str):
    cfg, backend = request["config"], request["backend"]
    if backend == "tiny":
        editor, config = build_tiny(cfg, device)
        return editor, config
    if backend == "lora":
        editor, config, _ = build_lora(request["settings"]["base_dir"], cfg, device)
        return editor, config
    raise ValueError(f"the training loop runs the tiny and lora backends, not {backend!r}")


def train(request: dict, report: Report) -> dict:
    """Train (or resume) the run described by `request`; returns result.json's dict."""
    from accelerate import Accelerator

    work = Path(request["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    cfg, settings = request["config"], request["settings"]
    device = settings.get("device", "cpu")
    mixed = cfg["mixed_precision"] if device.startswith("cuda") else "no"
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision=mixed)
    main = accelerator.is_main_process
    editor, editor_config = _build(request, str(accelerator.device))
    editor_config.update({k: cfg[k] for k in ("height", "width", "frames")})
    params = [p for p in editor.transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"])
    start, losses, seconds = 0, [], 0.0
    state = latest_state(work)
    if state is not None:
        trainable, optimizer_state, progress = load_state(state)
        editor.load_trainable_state(trainable)
        optimizer.load_state_dict(optimizer_state)
        start, losses, seconds = progress["step"], progress["losses"], progress["seconds"]
    shutil.rmtree(work / "final", ignore_errors=True)
    model, optimizer = accelerator.prepare(editor.transformer, optimizer)
    bank = PairBank([Pair(**p) for p in request["pairs"]], cfg["height"], cfg["width"], cfg["frames"], cfg["seed"])
    steps, rank = cfg["steps"], accelerator.process_index
    if main:
        report({"event": "start", "resumed_from_step": start, "steps": steps, "pairs": len(bank.pairs),
                "processes": accelerator.num_processes, "device": str(accelerator.device),
                "trainable_parameters": sum(p.numel() for p in params),
                "parameters": sum(p.numel() for p in editor.transformer.parameters())})
    text_cache: dict[str, torch.Tensor] = {}

    def states(prompts: list[str]) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(prompts) if p not in text_cache]
        if missing:
            if len(text_cache) > 4096:
                text_cache.clear()
            text_cache.update(zip(missing, editor.text.encode(missing)))
        return torch.stack([text_cache[p] for p in prompts]).to(accelerator.device)

    model.train()
    for step in range(start, steps):
        began = time.monotonic()
        source, target, prompts = bank.batch(step, rank, cfg["batch_size"])
        with torch.no_grad():
            src_lat = editor.codec.encode(source.to(accelerator.device))
            tgt_lat = editor.codec.encode(target.to(accelerator.device))
        with accelerator.autocast():
            loss = editor.loss(src_lat, tgt_lat, states(prompts), generator(cfg["seed"], step, rank), model=model)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(accelerator.gather(loss.detach()[None]).mean())
        if not np.isfinite(value):
            raise FloatingPointError(f"loss is {value} at step {step + 1}: lower learning_rate")
        losses.append(value)
        seconds += time.monotonic() - began
        if main:
            report({"event": "step", "step": step + 1, "steps": steps, "loss": value, "seconds": round(seconds, 2)})
        if (step + 1) % cfg["save_every"] == 0 and step + 1 < steps:
            accelerator.wait_for_everyone()
            if main:
                save_state(work, step + 1, editor.trainable_state(), optimizer.state_dict(),
                           {"step": step + 1, "losses": losses, "seconds": seconds})
                report({"event": "saved", "step": step + 1})
    accelerator.wait_for_everyone()
    result = {"steps": steps, "resumed_from_step": start, "first_loss": losses[0], "final_loss": losses[-1],
              "seconds": round(seconds, 1), "processes": accelerator.num_processes}
    if main:
        result.update(save_final(work, accelerator.unwrap_model(model), editor_config, losses, request["backend"]))
        (work / "result.json").write_text(json.dumps(result))
    return result


def save_final(work: Path, transformer, editor_config: dict, losses: list[float], backend: str) -> dict:
    """Weights, editor_config.json, loss.json and loss.png under <work>/final; returns their names."""
    from safetensors.torch import save_file

    final = work / "final"
    final.mkdir(parents=True, exist_ok=True)
    if backend == "lora":
        weights = save_lora(transformer, final)
    else:
        weights = final / TINY_WEIGHTS
        save_file({k: v.detach().cpu().contiguous() for k, v in transformer.state_dict().items()}, str(weights))
    write_run_files(final, editor_config, losses)
    return {"weights": weights.name, "final_dir": str(final)}
