"""mnistgen's default GAN (preset ``gan``): a small DCGAN tuned for quality per CPU-minute.

Generator: dense z(64) -> 128x7x7 (BN, ReLU), transposed convs 4x4/s2 to 64 then 1 channel
(tanh). Discriminator: spectrally normalised convs 4x4/s2 of 32 and 64 (LeakyReLU 0.2),
dense -> 1 logit. Spectral norm keeps the discriminator Lipschitz-bounded, which lets both
networks use a higher learning rate without mode collapse; the trainer keeps an EMA of the
generator weights, used for sampling.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .base import GAN, Reshape


class FastGAN(GAN):
    def __init__(self, latent_dim: int = 64, width: int = 64):
        w = width
        generator = nn.Sequential(
            nn.Linear(latent_dim, 2 * w * 7 * 7, bias=False), nn.BatchNorm1d(2 * w * 7 * 7), nn.ReLU(),
            Reshape(2 * w, 7, 7),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            nn.ConvTranspose2d(w, 1, 4, 2, 1), nn.Tanh(),
        )
        discriminator = nn.Sequential(
            spectral_norm(nn.Conv2d(1, w // 2, 4, 2, 1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(w // 2, w, 4, 2, 1)), nn.LeakyReLU(0.2),
            nn.Flatten(), spectral_norm(nn.Linear(w * 7 * 7, 1)), nn.Flatten(0),
        )
        super().__init__(latent_dim, generator, discriminator)
