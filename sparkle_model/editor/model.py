"""The in-context editor and the two backends that build it (`tiny`, `lora`).

The editor predicts the flow-matching velocity (noise - target) of the target video's latents from
the noisy target, the clean source latents and the instruction's token states. The source is given
in context: its latents are appended as extra frames whose tokens get timestep 0, the way
Wan2.2-TI2V conditions on its clean first frame. A stock Wan transformer therefore edits without a
new layer, and the `lora` backend trains nothing but LoRA weights.

- `tiny`: `WanTransformer3DModel` from a small config, random initialisation, every weight trained;
  `PixelCodec` latents; MiniLM (or hashed) text. A smoke-scale model that proves the loop.
- `lora`: a diffusers Wan pipeline from a local directory (`WanPipeline` class: Wan2.1-T2V,
  Wan2.2-TI2V-5B), its transformer frozen in `dtype` with peft LoRA adapters on the attention
  projections, gradient checkpointing on; its VAE (`WanVaeCodec`) and UMT5 text encoder.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .codecs import PixelCodec, WanVaeCodec
from .text import PipelineText, text_encoder

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' name: load_lora_weights(folder) finds it
TINY_WEIGHTS = "editor.safetensors"


class InContextEditor:
    def __init__(self, transformer, codec, text, shift: float = 3.0):
        self.transformer, self.codec, self.text, self.shift = transformer, codec, text, shift

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.patch_embedding.weight.dtype

    def velocity(self, x_t: torch.Tensor, source: torch.Tensor, sigma: torch.Tensor, text_states: torch.Tensor,
                 model=None) -> torch.Tensor:
        """Predicted velocity for the target frames. x_t, source: (B, C, t, h, w); sigma: (B,) in [0, 1]."""
        model = model or self.transformer
        b, _, t, h, w = x_t.shape
        _, p_h, p_w = self.transformer.config.patch_size
        tokens = t * (h // p_h) * (w // p_w)
        timestep = torch.cat([(sigma.float() * 1000)[:, None].expand(b, tokens), torch.zeros(b, tokens)
                              .to(sigma.device)], dim=1)
        hidden = torch.cat([x_t, source], dim=2).to(self.dtype)
        out = model(hidden_states=hidden, timestep=timestep, encoder_hidden_states=text_states.to(self.dtype),
                    return_dict=False)[0]
        return out[:, :, :t].float()

    def sigmas(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Training noise levels: uniform, then shifted toward noise as the sampler's schedule is."""
        u = torch.rand(n, generator=generator)
        return self.shift * u / (1 + (self.shift - 1) * u)

    def loss(self, source: torch.Tensor, target: torch.Tensor, text_states: torch.Tensor,
             generator: torch.Generator, model=None) -> torch.Tensor:
        """Flow-matching loss on one batch of latents (noise and noise levels from `generator`)."""
        sigma = self.sigmas(target.shape[0], generator).to(target.device)
        noise = torch.randn(target.shape, generator=generator).to(target.device)
        s = sigma.view(-1, 1, 1, 1, 1)
        x_t = (1 - s) * target + s * noise
        v = self.velocity(x_t, source, sigma, text_states, model)
        return F.mse_loss(v, (noise - target).float())

    @torch.no_grad()
    def sample(self, source: torch.Tensor, text_states: torch.Tensor, steps: int, generator: torch.Generator,
               guidance: float = 1.0, null_states: torch.Tensor | None = None) -> torch.Tensor:
        """Target latents for `source` by Euler steps of the flow (classifier-free guidance when
        `guidance` > 1, against `null_states`)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=self.shift)
        sched.set_timesteps(steps)
        x = torch.randn(source.shape, generator=generator).to(source.device)
        for t in sched.timesteps:
            sigma = (t / 1000).expand(x.shape[0]).to(x.device)
            v = self.velocity(x, source, sigma, text_states)
            if guidance > 1 and null_states is not None:
                v = v + (guidance - 1) * (v - self.velocity(x, source, sigma, null_states))
            x = sched.step(v, t, x, return_dict=False)[0]
        return x

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().contiguous() for n, p in self.transformer.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        params = {n: p for n, p in self.transformer.named_parameters() if p.requires_grad}
        if set(params) != set(state):
            raise ValueError(f"saved state does not match the model: {len(set(params) ^ set(state))} names differ")
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value.to(params[name].dtype))


# -- tiny ---------------------------------------------------------------------------------------

def tiny_transformer_config(cfg: dict, channels: int, text_dim: int) -> dict:
    return {"patch_size": [1, 2, 2], "num_attention_heads": cfg["heads"], "attention_head_dim": cfg["head_dim"],
            "in_channels": channels, "out_channels": channels, "text_dim": text_dim, "freq_dim": 64,
            "ffn_dim": cfg["ffn_dim"], "num_layers": cfg["layers"], "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads", "rope_max_seq_len": 1024}


def build_tiny(cfg: dict, device: str = "cpu") -> tuple[InContextEditor, dict]:
    """A randomly initialised tiny editor for `cfg`, and the config that rebuilds it."""
    from diffusers import WanTransformer3DModel

    text = text_encoder(cfg["text_encoder"], cfg["text_length"])
    codec = PixelCodec(cfg["pixel_factor"])
    config = {"backend": "tiny", "codec": codec.describe(), "shift": cfg["shift"],
              "text": {"name": text.name, "max_length": cfg["text_length"], "dim": text.dim},
              "transformer": tiny_transformer_config(cfg, codec.channels, text.dim)}
    torch.manual_seed(cfg["seed"])
    transformer = WanTransformer3DModel(**config["transformer"]).to(device)
    return InContextEditor(transformer, codec, text, cfg["shift"]), config


def load_tiny(config: dict, weights: Path, device: str = "cpu") -> InContextEditor:
    from diffusers import WanTransformer3DModel
    from safetensors.torch import load_file

    text = text_encoder(config["text"]["name"], config["text"]["max_length"])
    codec = PixelCodec(config["codec"]["factor"], config["codec"]["scale"])
    transformer = WanTransformer3DModel(**config["transformer"])
    transformer.load_state_dict(load_file(str(weights)))
    return InContextEditor(transformer.to(device).eval(), codec, text, config["shift"])


# -- lora ---------------------------------------------------------------------------------------

def load_base(base_dir: str, dtype: str, device: str):
    """The base Wan pipeline from a local directory (nothing downloaded); its VAE stays float32."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(base_dir, local_files_only=True, dtype=getattr(torch, dtype))
    for name in ("transformer", "vae", "text_encoder"):
        if getattr(pipe, name, None) is None:
            raise ValueError(f"{base_dir} has no {name}: the lora backend needs a Wan pipeline directory "
                             "(WanPipeline class: Wan2.1-T2V, Wan2.2-TI2V-5B)")
    pipe.vae.to(torch.float32)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_lora(base_dir: str, cfg: dict, device: str = "cpu") -> tuple[InContextEditor, dict, object]:
    """The base pipeline's transformer with fresh LoRA adapters (only they train, kept in float32)."""
    from peft import LoraConfig

    pipe = load_base(base_dir, cfg["dtype"], device)
    transformer = pipe.transformer
    transformer.requires_grad_(False)
    torch.manual_seed(cfg["seed"])
    transformer.add_adapter(LoraConfig(r=cfg["lora_rank"], lora_alpha=cfg["lora_alpha"], init_lora_weights=True,
                                       target_modules=list(LORA_TARGETS)))
    for p in transformer.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    if cfg["gradient_checkpointing"]:
        transformer.enable_gradient_checkpointing()
    codec = WanVaeCodec(pipe.vae)
    config = {"backend": "lora", "base_dir": base_dir, "dtype": cfg["dtype"], "shift": cfg["shift"],
              "codec": codec.describe(), "text": {"name": "pipeline", "max_length": cfg["text_length"]},
              "lora": {"rank": cfg["lora_rank"], "alpha": cfg["lora_alpha"], "targets": list(LORA_TARGETS)}}
    return InContextEditor(transformer, codec, PipelineText(pipe, cfg["text_length"]), cfg["shift"]), config, pipe


def save_lora(transformer, folder: Path) -> Path:
    """The adapter in diffusers' LoRA format (with its peft config as metadata, so lora_alpha survives)."""
    from diffusers import WanPipeline
    from peft.utils import get_peft_model_state_dict

    WanPipeline.save_lora_weights(str(folder), transformer_lora_layers=get_peft_model_state_dict(transformer),
                                  transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict(),
                                  safe_serialization=True)
    return folder / LORA_WEIGHTS


def load_lora(config: dict, folder: Path, device: str = "cpu") -> InContextEditor:
    """The base pipeline with the saved adapter loaded the way diffusers users load it."""
    pipe = load_base(config["base_dir"], config["dtype"], device)
    pipe.load_lora_weights(str(folder), weight_name=LORA_WEIGHTS, adapter_name="sparkle_edit")
    return InContextEditor(pipe.transformer.eval(), WanVaeCodec(pipe.vae),
                           PipelineText(pipe, config["text"]["max_length"]), config["shift"])
