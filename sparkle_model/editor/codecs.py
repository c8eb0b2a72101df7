"""Video <-> latents for the editor. Videos are (B, 3, T, H, W) floats in [-1, 1].

- `PixelCodec` (the `tiny` backend): space-to-depth, no weights. Each f x f pixel block becomes
  3*f*f channels (48 at f=4, the channel count of Wan2.2's VAE latents); exactly invertible, so a
  smoke-scale model's outputs are viewable pictures rather than a random decoder's noise.
- `WanVaeCodec` (the `lora` backend): the base pipeline's `AutoencoderKLWan`, latents normalised by
  its `latents_mean` / `latents_std` as `WanPipeline` does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class PixelCodec:
    name = "pixel"

    def __init__(self, factor: int = 4, scale: float = 2.0):
        self.factor, self.scale = factor, scale
        self.channels = 3 * factor * factor
        self.spatial, self.temporal = factor, 1

    def frames_ok(self, n: int) -> bool:
        return n >= 1

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = video.shape
        x = video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        x = F.pixel_unshuffle(x, self.factor) * self.scale
        return x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = latents.shape
        x = latents.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w) / self.scale
        x = F.pixel_shuffle(x, self.factor)
        return x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4).clamp(-1, 1)

    def describe(self) -> dict:
        return {"name": self.name, "factor": self.factor, "scale": self.scale}


class WanVaeCodec:
    name = "wan_vae"

    def __init__(self, vae):
        self.vae = vae.eval().requires_grad_(False)
        cfg = vae.config
        self.channels = cfg.z_dim
        self.spatial, self.temporal = cfg.scale_factor_spatial, cfg.scale_factor_temporal
        self.mean = torch.tensor(cfg.latents_mean).view(1, cfg.z_dim, 1, 1, 1)
        self.std = torch.tensor(cfg.latents_std).view(1, cfg.z_dim, 1, 1, 1)

    def frames_ok(self, n: int) -> bool:
        return n % self.temporal == 1

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean.to(like.device, like.dtype), self.std.to(like.device, like.dtype)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        p = next(self.vae.parameters())
        z = self.vae.encode(video.to(p.device, p.dtype)).latent_dist.mode().float()
        mean, std = self._stats(z)
        return (z - mean) / std

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        p = next(self.vae.parameters())
        mean, std = self._stats(latents.float())
        return self.vae.decode((latents.float() * std + mean).to(p.device, p.dtype)).sample.float().clamp(-1, 1)

    def describe(self) -> dict:
        return {"name": self.name, "z_dim": self.channels, "spatial": self.spatial, "temporal": self.temporal}
