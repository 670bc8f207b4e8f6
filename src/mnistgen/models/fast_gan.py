"""mnistgen's default GAN (preset ``gan``): a small DCGAN tuned for quality per CPU-minute.

Generator: dense z -> (2g)x7x7 (BN, ReLU), transposed convs 4x4/s2 to g then 1 channel (tanh).
Discriminator: convs 4x4/s2 of d and 2d channels (LeakyReLU 0.2), dense -> 1 logit.

Why these choices (measured on 2 CPU cores: benchmarks/results/gan-tuning-2026-11-22-cpu.md):
after the same 1,404 steps, BatchNorm after the discriminator's second conv with a learning rate
of 1e-3 gave 0.49 acceptable digits (FID 17) where spectral norm at 2e-4 gave 0.13 (FID 44);
wider networks and other learning rates gained little per step and cost time; a generator of
width 32 samples 2-4x faster than one of width 64 (7,650 digits/s through ``sample_images``).
The trainer keeps an EMA of the generator weights, used for sampling.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as sn

from .base import GAN, Reshape


class FastGAN(GAN):
    def __init__(self, latent_dim: int = 64, g_width: int = 32, d_width: int = 32, d_norm: str = "batch"):
        if d_norm not in ("batch", "spectral", "none"):
            raise ValueError(f"d_norm must be batch, spectral or none, not {d_norm!r}")
        g, d = g_width, d_width
        generator = nn.Sequential(
            nn.Linear(latent_dim, 2 * g * 7 * 7, bias=False), nn.BatchNorm1d(2 * g * 7 * 7), nn.ReLU(),
            Reshape(2 * g, 7, 7),
            nn.ConvTranspose2d(2 * g, g, 4, 2, 1, bias=False), nn.BatchNorm2d(g), nn.ReLU(),
            nn.ConvTranspose2d(g, 1, 4, 2, 1), nn.Tanh(),
        )
        norm = sn if d_norm == "spectral" else (lambda layer: layer)
        bn = nn.BatchNorm2d(2 * d) if d_norm == "batch" else nn.Identity()
        discriminator = nn.Sequential(
            norm(nn.Conv2d(1, d, 4, 2, 1)), nn.LeakyReLU(0.2),
            norm(nn.Conv2d(d, 2 * d, 4, 2, 1)), bn, nn.LeakyReLU(0.2),
            nn.Flatten(), norm(nn.Linear(2 * d * 7 * 7, 1)), nn.Flatten(0),
        )
        super().__init__(latent_dim, generator, discriminator)
