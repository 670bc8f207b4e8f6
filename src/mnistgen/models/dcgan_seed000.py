"""Seed 000's DCGAN (preset ``dcgan-seed000``).

Generator: dense 100 -> 7x7x512 (no bias), BN, LeakyReLU 0.2; transposed convs 5x5 with
256/s1, 128/s2, 64/s2 (no bias, BN, LeakyReLU 0.2) and 1/s1 with tanh, for 28x28 in [-1, 1].
Discriminator: convs 3x3/s2 of 64 and 128, each LeakyReLU 0.2 and dropout 0.3, dense -> 1.

Choices:
- The seed's discriminator ends in a sigmoid and uses BCE; we output the logit and use
  BCE-with-logits: the same loss, numerically stable, and safe under mixed precision.
- BatchNorm with Keras' momentum/epsilon; the seed's ``Dropout(0.0)`` is omitted (a no-op).
- The seed's ``set_global_policy('mixed_float16')`` and ``tf.config.optimizer.set_jit(True)`` are
  the preset's ``amp: cuda`` and ``compile: cuda`` (its description says why not on CPU).
- Parameters by this definition: G 6,862,272 + D 80,769 = 6,943,041. The seed reports
  "6.6 million"; its own layer list gives 6.94M (6.99M if Keras' non-trainable BN statistics
  are counted), so we keep the layers as written and note the difference.
"""

from __future__ import annotations

from torch import nn

from .base import GAN, Reshape, keras_batchnorm


def _up(cin: int, cout: int, stride: int) -> list[nn.Module]:
    extra = 1 if stride == 2 else 0
    return [nn.ConvTranspose2d(cin, cout, 5, stride, 2, output_padding=extra, bias=False),
            keras_batchnorm(cout), nn.LeakyReLU(0.2)]


class DCGANSeed000(GAN):
    def __init__(self, latent_dim: int = 100, dropout: float = 0.3):
        generator = nn.Sequential(
            nn.Linear(latent_dim, 7 * 7 * 512, bias=False), keras_batchnorm(7 * 7 * 512, dims=1),
            nn.LeakyReLU(0.2), Reshape(512, 7, 7),
            *_up(512, 256, 1), *_up(256, 128, 2), *_up(128, 64, 2),
            nn.ConvTranspose2d(64, 1, 5, 1, 2, bias=False), nn.Tanh(),
        )
        discriminator = nn.Sequential(
            nn.Conv2d(1, 64, 3, 2, 1), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Conv2d(64, 128, 3, 2, 1), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Flatten(), nn.Linear(128 * 7 * 7, 1), nn.Flatten(0),
        )
        super().__init__(latent_dim, generator, discriminator)
