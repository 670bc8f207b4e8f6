"""A Wasserstein GAN with gradient penalty (preset ``wgan-gp``), the one seed 004 could not train.

What makes it train (Gulrajani et al. 2017): the critic has no batch norm (the penalty is per
sample, and batch norm couples samples) and no sigmoid; the penalty is taken at points
interpolated with one weight per sample, not per pixel; 5 critic steps per generator step;
Adam 1e-4 with betas (0.0, 0.9); lambda 10. The networks are seed 004's shapes made lighter
for CPU: generator dense -> 64x7x7, transposed convs 4x4/s2 of 64 and 32 (BN, ReLU), conv to 1
with tanh; critic convs 4x4/s2 of 64 and 128 (LeakyReLU 0.2), dense -> 1.
"""

from __future__ import annotations

from torch import nn

from .base import GAN, Reshape


class WGANGP(GAN):
    def __init__(self, latent_dim: int = 64, width: int = 64):
        w = width
        generator = nn.Sequential(
            nn.Linear(latent_dim, w * 7 * 7), nn.BatchNorm1d(w * 7 * 7), nn.ReLU(), Reshape(w, 7, 7),
            nn.ConvTranspose2d(w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.ConvTranspose2d(w, w // 2, 4, 2, 1), nn.BatchNorm2d(w // 2), nn.ReLU(),
            nn.Conv2d(w // 2, 1, 3, 1, 1), nn.Tanh(),
        )
        critic = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * w * 7 * 7, 1), nn.Flatten(0),
        )
        super().__init__(latent_dim, generator, critic)
