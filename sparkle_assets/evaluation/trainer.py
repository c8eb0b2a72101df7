"""How editor training and inference run on this machine: its settings (`EditorTrainerResource`)
and the Pipes client that launches the training process and hands over its messages while it runs.

Settings come from the environment so that `sparkle`, `dagster dev` and tests agree:
`SPARKLE_TRAINING_DIR` (the run_config files, default `training/`), `SPARKLE_TRAIN_BASE_DIR` (the
diffusers Wan pipeline the `lora` backend fine-tunes), `SPARKLE_KIWI_EDIT_DIR` (a Kiwi-Edit checkout)
and `SPARKLE_KIWI_PYTHON` (the interpreter of its environment), `SPARKLE_TRAIN_LAUNCHER` (`python`,
`accelerate` or `torchrun`), `SPARKLE_TRAIN_PROCESSES`, `SPARKLE_DEVICE`.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError, DagsterPipesExecutionError

from ..core.config import ConfigError

LAUNCHERS = ("python", "accelerate", "torchrun")
ENTRY_MODULE = "sparkle_assets.evaluation.training_process"


def default_training_dir() -> str:
    return os.environ.get("SPARKLE_TRAINING_DIR") or str(Path(__file__).resolve().parents[2] / "training")


class EditorTrainerResource(dg.ConfigurableResource):
    """Where training configurations live and what this machine brings to them."""

    configs_dir: str
    base_dir: str = ""
    kiwi_edit_dir: str = ""
    kiwi_python: str = ""
    launcher: str = "python"
    processes: int = 1
    device: str = "cpu"

    def settings(self, backend: str) -> dict:
        """The settings a backend needs; ConfigError naming the setting that is missing or wrong."""
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"editor_trainer.launcher (SPARKLE_TRAIN_LAUNCHER) must be one of "
                              f"{', '.join(LAUNCHERS)}, got {self.launcher!r}")
        if not 1 <= self.processes <= 1024:
            raise ConfigError(f"editor_trainer.processes (SPARKLE_TRAIN_PROCESSES) must be in [1, 1024], "
                              f"got {self.processes}")
        out = {"device": self.device, "launcher": self.launcher, "processes": self.processes}
        if backend == "lora":
            if not (Path(self.base_dir or "") / "model_index.json").is_file():
                raise ConfigError(f"backend 'lora' needs SPARKLE_TRAIN_BASE_DIR (editor_trainer.base_dir, now "
                                  f"{self.base_dir or 'unset'}) to be a local diffusers Wan pipeline directory "
                                  "(with model_index.json), e.g. Wan2.2-TI2V-5B-Diffusers")
            out["base_dir"] = str(Path(self.base_dir).resolve())
        if backend == "kiwi_edit":
            if not (Path(self.kiwi_edit_dir or "") / "train.py").is_file():
                raise ConfigError(f"backend 'kiwi_edit' needs SPARKLE_KIWI_EDIT_DIR (editor_trainer.kiwi_edit_dir, "
                                  f"now {self.kiwi_edit_dir or 'unset'}) to be a Kiwi-Edit checkout (with train.py)")
            out["kiwi_edit_dir"] = str(Path(self.kiwi_edit_dir).resolve())
            out["kiwi_python"] = self.kiwi_python or sys.executable
        return out

    def identity(self, backend: str, settings: dict) -> dict:
        """What besides the config and data decides the weights (part of the checkpoint id): the base
        model's configs and weight sizes, or the hashes of Kiwi-Edit's scripts; the process count."""
        def digest(paths: list[Path]) -> str:
            h = hashlib.sha256()
            for p in sorted(paths):
                h.update(f"{p.relative_to(root)}:{p.stat().st_size}\n".encode())
                if p.suffix in (".json", ".py", ".txt"):
                    h.update(p.read_bytes())
            return h.hexdigest()[:16]

        out = {"processes": settings["processes"]}
        if backend == "lora":
            root = Path(settings["base_dir"])
            out["base"] = digest([p for p in root.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors")])
        if backend == "kiwi_edit":
            root = Path(settings["kiwi_edit_dir"])
            out["kiwi"] = digest([root / "train.py", root / "demo.py"])
        return out

    def command(self, request: Path, distributed: bool) -> list[str]:
        """The training process's command line: the same module, under the launcher when the work is
        `distributed` (our training loop), plainly otherwise (inference; Kiwi-Edit, whose train.py
        gets the launcher itself)."""
        tail = ["-m", ENTRY_MODULE, "--request", str(request)]
        if not distributed or self.launcher == "python":
            return [sys.executable, *tail]
        if self.launcher == "accelerate":
            return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(self.processes), *tail]
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(self.processes), *tail]


class LivePipesSubprocessClient(dg.PipesSubprocessClient):
    """`PipesSubprocessClient` that also hands every custom message to `on_message` while the process
    runs (the stock `run` returns them only after it exits), so training progress reaches the UI live."""

    def run(self, *, context, command, extras=None, env=None, cwd=None,
            on_message: Callable[[object], None] | None = None, poll_seconds: float = 0.5):
        with dg.open_pipes_session(context=context, context_injector=self.context_injector,
                                   message_reader=self.message_reader, extras=extras) as session:
            process = subprocess.Popen(command, cwd=cwd or self.cwd,
                                       env={**os.environ, **self.env, **(env or {}),
                                            **session.get_bootstrap_env_vars()})
            seen = 0

            def deliver() -> None:
                nonlocal seen
                messages = session.get_custom_messages()
                for message in messages[seen:]:
                    if on_message is not None:
                        on_message(message)
                seen = len(messages)

            try:
                while process.poll() is None:
                    deliver()
                    time.sleep(poll_seconds)
            except DagsterExecutionInterruptedError:
                if self.forward_termination:
                    context.log.info("[pipes] execution interrupted, sending SIGINT to the training process")
                    process.send_signal(signal.SIGINT)
                    process.wait(timeout=self.termination_timeout_seconds)
                raise
            if process.returncode != 0:
                deliver()
                raise DagsterPipesExecutionError(f"the training process exited with code {process.returncode}")
        deliver()
        return dg.PipesClientCompletedInvocation(session)


def evaluation_resources() -> dict:
    """The resources the evaluation assets add to the code location's, from the environment."""
    return {"editor_trainer": EditorTrainerResource(
                configs_dir=default_training_dir(), base_dir=os.environ.get("SPARKLE_TRAIN_BASE_DIR", ""),
                kiwi_edit_dir=os.environ.get("SPARKLE_KIWI_EDIT_DIR", ""),
                kiwi_python=os.environ.get("SPARKLE_KIWI_PYTHON", ""),
                launcher=os.environ.get("SPARKLE_TRAIN_LAUNCHER", "python"),
                processes=int(os.environ.get("SPARKLE_TRAIN_PROCESSES", "1")),
                device=os.environ.get("SPARKLE_DEVICE", "cpu")),
            "pipes_subprocess_client": LivePipesSubprocessClient()}
