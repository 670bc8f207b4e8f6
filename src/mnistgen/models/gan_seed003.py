"""Seed 003's GAN, default and complex generators (presets ``gan-seed003-*``).

The report's architecture figures are not available. Its text: the generator takes "a vector of
size 50", is "very similar to decoder of the VAE" (transposed convs with stride 2) and has "batch
normalization after linear output and leaky relu activation function"; the complex one differs
only in "the dense layer dimension and the number of feature maps in transposed convolution
layers" ("Feature maps doubles"), and "The number of parameters increase from 98832 to 225312".
The report shows one discriminator for both generators: "convolution layers with stride 2", with
"dropout layers after applying activations".

Our reading (``width`` = 1 default, 2 complex; it widens the generator only, as the report does):
dense 50 -> 7x7x(32w) without bias, BN, LeakyReLU; transposed convs 3x3/s2 to 32w then 16w
channels (no bias, BN, LeakyReLU); a 3x3 transposed conv to one channel (no bias) with tanh.
Counted as Keras counts (BN's moving mean/variance included) this is exactly 98,832 and 225,312,
the report's figures; torch's trainable count is 95,600 / 218,848. Discriminator: convs 3x3/s2 of
16 and 32 channels, LeakyReLU, dropout, dense -> 1 logit (6,369 parameters).
Not stated in the report, and chosen because:
- kernel 3x3, no biases before BN: with them the reported counts come out exactly;
- LeakyReLU slope 0.2 and dropout 0.3: the DCGAN paper's slope; the rate of the TF DCGAN tutorial,
  which the report lists among its references;
- the discriminator's channels (16, 32): the generator's, in the opposite direction.
The training settings (optimizer, learning rate, batch size, Wasserstein recipe) are in the
presets' descriptions; the report states only the epochs (50 cross-entropy, 30 Wasserstein).
"""

from __future__ import annotations

from torch import nn

from .base import GAN, Reshape


class GANSeed003(GAN):
    def __init__(self, latent_dim: int = 50, width: int = 1, dropout: float = 0.3):
        g, d = 16 * width, 16  # the complex variant widens only the generator
        generator = nn.Sequential(
            nn.Linear(latent_dim, 7 * 7 * 2 * g, bias=False), nn.BatchNorm1d(7 * 7 * 2 * g), nn.LeakyReLU(0.2),
            Reshape(2 * g, 7, 7),
            nn.ConvTranspose2d(2 * g, 2 * g, 3, 2, 1, output_padding=1, bias=False), nn.BatchNorm2d(2 * g), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(2 * g, g, 3, 2, 1, output_padding=1, bias=False), nn.BatchNorm2d(g), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(g, 1, 3, 1, 1, bias=False), nn.Tanh(),
        )
        discriminator = nn.Sequential(
            nn.Conv2d(1, d, 3, 2, 1), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Conv2d(d, 2 * d, 3, 2, 1), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Flatten(), nn.Linear(2 * d * 7 * 7, 1), nn.Flatten(0),
        )
        super().__init__(latent_dim, generator, discriminator)
