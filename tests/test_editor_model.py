"""The editor without Dagster: the tiny backend learns and resumes exactly, the lora backend's
adapter round-trips through diffusers' loader (on a tiny random Wan pipeline), and Kiwi-Edit's
command line through a stand-in script that speaks it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sparkle_assets.evaluation.run_configs import TrainingConfig
from sparkle_model.editor import kiwi
from sparkle_model.editor.infer import edit_video, load_editor
from sparkle_model.editor.model import LORA_WEIGHTS, build_lora, load_lora, save_lora
from sparkle_model.editor.train import train
from sparkle_model.video import probe, read_video, write_video

from conftest import make_clip
from tiny_models import build_tiny_wan_t2v

STANDIN = Path(__file__).parent / "kiwi_standin"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> list[dict]:
    """Three 17-frame pairs whose target is the source with its colours turned (a learnable edit)."""
    folder = tmp_path_factory.mktemp("pairs")
    out = []
    for i in range(3):
        src = make_clip(folder / f"src{i}.mp4", frames=17, size=(96, 48), seed=i)
        frames = read_video(src)
        write_video(folder / f"tgt{i}.mp4", frames[..., ::-1] // 2 + 60, fps=16)
        out.append({"task": f"pair{i}", "prompt": f"turn the scene blue, take {i}", "src_video": str(src),
                    "tgt_video": str(folder / f"tgt{i}.mp4"), "weight": 1.0})
    return out


def request(pairs, work, **overrides) -> dict:
    config = TrainingConfig(**{"backend": "tiny", "steps": 40, "save_every": 20, "learning_rate": 1e-2, "height": 32,
                               "width": 64, "frames": 5, "pixel_factor": 4, "layers": 1, "heads": 2, "head_dim": 16,
                               "ffn_dim": 64,
                               "text_encoder": "hashed", "text_length": 16, **overrides})
    config.check()
    return {"task": "train", "backend": config.backend, "config": config.model_dump(), "settings": {"device": "cpu"},
            "pairs": pairs, "work_dir": str(work)}


def test_tiny_editor_learns_resumes_exactly_and_edits(pairs, tmp_path):
    events = []
    result = train(request(pairs, tmp_path), events.append)
    losses = [e["loss"] for e in events if e["event"] == "step"]
    assert len(losses) == 40 and events[0]["resumed_from_step"] == 0
    assert np.mean(losses[-10:]) < 0.92 * np.mean(losses[:10]), losses
    assert [e["step"] for e in events if e["event"] == "saved"] == [20]
    final = tmp_path / "final"
    weights = load_file(str(final / "editor.safetensors"))
    assert json.loads((final / "loss.json").read_text())["loss"] == losses
    assert (final / "loss.png").read_bytes()[:4] == b"\x89PNG"

    # a run killed after its step-20 save: only that state is left; the rerun continues exactly
    shutil.rmtree(final)
    (tmp_path / "result.json").unlink()
    again = []
    resumed = train(request(pairs, tmp_path), again.append)
    assert again[0]["resumed_from_step"] == 20 and resumed["resumed_from_step"] == 20
    assert [e["loss"] for e in again if e["event"] == "step"] == losses[20:]
    for name, value in load_file(str(final / "editor.safetensors")).items():
        torch.testing.assert_close(value, weights[name], rtol=0, atol=0)
    assert json.loads((final / "loss.json").read_text())["loss"] == losses and result["final_loss"] == losses[-1]

    config = json.loads((final / "editor_config.json").read_text())
    editor = load_editor(final, config)
    source = read_video(pairs[0]["src_video"])
    edited = edit_video(editor, source, pairs[0]["prompt"], config, steps=2)
    assert edited.shape == source.shape and edited.dtype == np.uint8


def test_lora_adapter_round_trips_through_diffusers(pairs, tmp_path):
    base = build_tiny_wan_t2v(tmp_path / "base")
    req = request(pairs[:2], tmp_path / "work", backend="lora", steps=3, batch_size=1, learning_rate=1e-2,
                  height=32, width=32, frames=5, lora_rank=4, lora_alpha=8, dtype="float32", text_length=16)
    req["settings"]["base_dir"] = str(base)
    events = []
    result = train(req, events.append)
    assert all(np.isfinite(e["loss"]) for e in events if e["event"] == "step") and result["steps"] == 3
    assert (tmp_path / "work" / "final" / LORA_WEIGHTS).is_file()
    assert events[0]["trainable_parameters"] < events[0]["parameters"]  # only the adapter trains

    # alpha != rank: the saved metadata must carry it, or the reload would scale the adapter wrongly
    editor, config, _ = build_lora(str(base), req["config"])
    with torch.no_grad():
        for name, p in editor.transformer.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    x, src = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 16, 2, 4, 4)
    text, sigma = editor.text.encode(["turn the scene blue"]), torch.tensor([0.6])
    tuned = editor.velocity(x, src, sigma, text)
    save_lora(editor.transformer, tmp_path / "adapter")
    loaded = load_lora(config, tmp_path / "adapter")  # WanPipeline.load_lora_weights
    torch.testing.assert_close(loaded.velocity(x, src, sigma, text), tuned, atol=1e-5, rtol=1e-4)
    loaded.transformer.set_adapters(["sparkle_edit"], weights=[0.0])
    untouched = loaded.velocity(x, src, sigma, text)
    assert (untouched - tuned).abs().max() > 1e-3  # the adapter changes the output

    trained = load_editor(tmp_path / "work" / "final", json.loads((tmp_path / "work" / "final" /
                                                                    "editor_config.json").read_text()))
    assert (trained.velocity(x, src, sigma, text) - untouched).abs().max() > 0


def test_kiwi_edit_command_line_through_a_stand_in(pairs, tmp_path):
    settings = {"kiwi_edit_dir": str(STANDIN), "kiwi_python": sys.executable, "launcher": "python", "processes": 1,
                "device": "cpu"}
    req = request(pairs, tmp_path, backend="kiwi_edit", epochs=4, learning_rate=0.5, save_every=5, frames=9,
                  kiwi_args=["--lora_rank", "64", "--trainable_models", "dit"])
    req["settings"] = settings
    events = []
    result = kiwi.run_training(req, events.append, lambda line: None)
    losses = [e["loss"] for e in events if e["event"] == "step"]
    assert len(losses) == result["steps"] == 12 and losses[-1] < losses[0]
    command = json.loads((tmp_path / "kiwi_command.json").read_text())
    assert command[:2] == [sys.executable, "train.py"]
    flags = dict(zip(command[2::2], command[3::2]))
    assert flags["--vid_dataset_metadata_path"] == str(tmp_path / "kiwi_train.csv")
    assert flags["--data_file_keys"] == "src_video,tgt_video" and flags["--extra_inputs"] == "source_input"
    assert flags["--num_frames"] == "9" and flags["--max_pixels"] == str(32 * 64) and flags["--num_epochs"] == "4"
    assert flags["--lora_rank"] == "64" and flags["--output_path"] == str(tmp_path / "kiwi_output")
    rows = (tmp_path / "kiwi_train.csv").read_text().splitlines()
    assert rows[0] == "prompt,src_video,tgt_video,task" and len(rows) == 4
    assert (tmp_path / "final" / kiwi.WEIGHTS).read_bytes() == (tmp_path / "kiwi_output" / "step-12.safetensors"
                                                                ).read_bytes()
    out = tmp_path / "edited.mp4"
    kiwi.run_inference(settings, req["config"], tmp_path / "final" / kiwi.WEIGHTS, pairs[0]["src_video"],
                       pairs[0]["prompt"], out)
    assert probe(out).frames == 17
