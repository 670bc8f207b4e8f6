"""mnistgen's default GAN (preset ``gan``): a small class-conditional DCGAN tuned for quality
per CPU-minute.

Generator: [z, one-hot digit] -> dense (2g)x7x7 (BN, ReLU), transposed convs 4x4/s2 to g then 1
channel (tanh). Discriminator: convs 4x4/s2 of d and 2d channels (LeakyReLU 0.2), then a dense
logit plus, when conditional, a projection term <embed(digit), features> (Miyato & Koyama 2018).

Why these choices (measured on 2 CPU cores: benchmarks/results/gan-tuning-2026-11-22-cpu.md):
after the same 1,404 steps, BatchNorm after the discriminator's second conv with a learning rate
of 1e-3 gave 0.49 acceptable digits (FID 17) where spectral norm at 2e-4 gave 0.13 (FID 44);
wider networks and other learning rates gained little per step and cost time; a generator of
width 32 samples 2-4x faster than one of width 64. Conditioning on the digit lifted the same net
after 2,800 steps from 0.55 acceptable / coverage 0.26 / FID 16 to 0.82 / 0.85 / 5.9: the
unconditional one drew some digits (4s) 2-3% of the time. ``num_classes=0`` gives the
unconditional net. The trainer keeps an EMA of the generator weights, used for sampling.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as sn

from .base import GAN, Reshape, class_vectors, with_class


class Generator(nn.Module):
    def __init__(self, latent_dim: int, width: int, num_classes: int):
        super().__init__()
        g, self.num_classes = width, num_classes
        self.net = nn.Sequential(
            nn.Linear(latent_dim + num_classes, 2 * g * 7 * 7, bias=False), nn.BatchNorm1d(2 * g * 7 * 7), nn.ReLU(),
            Reshape(2 * g, 7, 7),
            nn.ConvTranspose2d(2 * g, g, 4, 2, 1, bias=False), nn.BatchNorm2d(g), nn.ReLU(),
            nn.ConvTranspose2d(g, 1, 4, 2, 1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(with_class(z, labels, self.num_classes))


class Discriminator(nn.Module):
    def __init__(self, width: int, num_classes: int, norm: str):
        super().__init__()
        d, self.num_classes = width, num_classes
        wrap = sn if norm == "spectral" else (lambda layer: layer)
        self.features = nn.Sequential(
            wrap(nn.Conv2d(1, d, 4, 2, 1)), nn.LeakyReLU(0.2),
            wrap(nn.Conv2d(d, 2 * d, 4, 2, 1)), nn.BatchNorm2d(2 * d) if norm == "batch" else nn.Identity(),
            nn.LeakyReLU(0.2), nn.Flatten(),
        )
        self.logit = wrap(nn.Linear(2 * d * 7 * 7, 1))
        # The projection: one learned feature direction per digit.
        self.embed = wrap(nn.Linear(num_classes, 2 * d * 7 * 7, bias=False)) if num_classes else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        out = self.logit(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(class_vectors(labels, self.num_classes)) * h).sum(1)
        return out


class FastGAN(GAN):
    def __init__(self, latent_dim: int = 64, g_width: int = 32, d_width: int = 32, d_norm: str = "batch",
                 num_classes: int = 10):
        if d_norm not in ("batch", "spectral", "none"):
            raise ValueError(f"d_norm must be batch, spectral or none, not {d_norm!r}")
        super().__init__(latent_dim, Generator(latent_dim, g_width, num_classes),
                         Discriminator(d_width, num_classes, d_norm), num_classes)
