"""Seed 003's GAN, default and complex generators (presets ``gan-seed003-*``).

The seed's architecture figures are not available; its text says: the generator takes a
50-D vector, is "very similar to the VAE decoder" (ours: dense to 7x7, transposed convs with
stride 2), with batch norm after the dense layer and LeakyReLU; the complex generator doubles
the dense layer and every feature map; the discriminator mirrors the generator with stride-2
convs and dropout after each activation. It reports 98,832 and 225,312 generator parameters.

Our reading (``width`` = 1 default, 2 complex), the TF DCGAN tutorial's generator shape
that the seed cites: dense 50 -> 7x7x(32w) without bias, BN, LeakyReLU 0.2; transposed convs
3x3/s2 to 32w then 16w channels (no bias, BN, LeakyReLU); a 3x3 transposed conv to one channel
(no bias) with tanh. Counted as Keras counts (BN's moving mean/variance included) this is
exactly 98,832 and 225,312, the seed's figures; torch's trainable count is 95,600 / 218,848.
Discriminator: convs 3x3/s2 of 16w and 32w, LeakyReLU 0.2, dropout 0.3, dense -> 1 logit.
Cross-entropy presets use Adam 2e-4 (beta1 0.5, the TF DCGAN tutorial the seed cites), batch
128, 50 epochs; Wasserstein presets use the WGAN recipe: critic weights clipped to 0.01,
RMSprop 5e-5, 5 critic steps per generator step, 30 epochs.
"""

from __future__ import annotations

from torch import nn

from .base import GAN, Reshape


class GANSeed003(GAN):
    def __init__(self, latent_dim: int = 50, width: int = 1, dropout: float = 0.3):
        c = 16 * width
        generator = nn.Sequential(
            nn.Linear(latent_dim, 7 * 7 * 2 * c, bias=False), nn.BatchNorm1d(7 * 7 * 2 * c), nn.LeakyReLU(0.2),
            Reshape(2 * c, 7, 7),
            nn.ConvTranspose2d(2 * c, 2 * c, 3, 2, 1, output_padding=1, bias=False), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(2 * c, c, 3, 2, 1, output_padding=1, bias=False), nn.BatchNorm2d(c), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(c, 1, 3, 1, 1, bias=False), nn.Tanh(),
        )
        discriminator = nn.Sequential(
            nn.Conv2d(1, c, 3, 2, 1), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Conv2d(c, 2 * c, 3, 2, 1), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Flatten(), nn.Linear(2 * c * 7 * 7, 1), nn.Flatten(0),
        )
        super().__init__(latent_dim, generator, discriminator)
