"""What a stored editor checkpoint is made of: its artifact kind, code version, and the companion
files stored beside the weights, with their artifact ids. `editor_checkpoint` writes them,
`editor_outputs` reads them; neither imports the other."""

from __future__ import annotations

from ..core.store import artifact_id

KIND = "editor_checkpoint"
CODE_VERSION = "editor_checkpoint-1"
# companion kind -> (file name in the checkpoint folder, extension)
COMPANIONS = {"editor_config": ("editor_config.json", "json"), "editor_data_manifest": ("data_manifest.json", "json"),
              "editor_loss": ("loss.json", "json"), "editor_loss_curve": ("loss.png", "png")}


def companion_id(kind: str, ckpt_id: str) -> str:
    """The artifact id of a checkpoint's companion file of `kind`."""
    return artifact_id(kind, {"checkpoint": ckpt_id}, CODE_VERSION, {})
