"""Seed 000's convolutional VAE (preset ``conv-vae-seed000``).

Encoder: three blocks (32, 64, 128) of [3x3 conv stride 1, BN, 3x3 conv stride 2, BN],
dropout 0.25 after the first two blocks, ReLU throughout, dense heads to a 64-D latent.
Decoder: dense to 4x4x128, transposed convs 128/s2, 128/s1, 64/s2, 64/s1, 32/s2 each with BN,
a final 1-channel transposed conv with sigmoid (32x32) cropped by 2 pixels to 28x28.

Choices where the seed is Keras-specific:
- Keras ``padding="same"`` with stride 2 maps 28 -> 14 -> 7 -> 4; torch padding=1 gives the
  same sizes (Keras pads asymmetrically, torch symmetrically: same shapes, same parameter count).
  Transposed convs use padding=1, output_padding=1 to double the size exactly like Keras.
- BatchNorm uses Keras' momentum (0.99) and epsilon (1e-3).
- The loss is the seed's: per-pixel *mean* BCE plus per-dimension *mean* KL (``loss_reduction="mean"``),
  which weights KL about 12x more than the textbook ELBO.
- Parameter count: the seed's prose says "2.3 million", but its code, layer by layer, gives
  1,108,193 trainable parameters (1,110,113 as Keras counts, with BN's moving statistics).
  We follow the code; the report shows the computed figure.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import VAE, Crop, Reshape, keras_batchnorm


def _conv_block(cin: int, cout: int, dropout: float) -> list[nn.Module]:
    layers = [
        nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU(), keras_batchnorm(cout),
        nn.Conv2d(cout, cout, 3, 2, 1), nn.ReLU(), keras_batchnorm(cout),
    ]
    return layers + ([nn.Dropout(dropout)] if dropout else [])


def _tconv(cin: int, cout: int, stride: int) -> list[nn.Module]:
    extra = 1 if stride == 2 else 0
    return [nn.ConvTranspose2d(cin, cout, 3, stride, 1, output_padding=extra), nn.ReLU(), keras_batchnorm(cout)]


class ConvVAESeed000(VAE):
    channels_last = True  # the trainer trains it in NHWC: faster steps and validation on CPU (oneDNN), same results

    def __init__(self, latent_dim: int = 64, dropout: float = 0.25):
        super().__init__(latent_dim, loss_reduction="mean")
        self.encoder = nn.Sequential(
            *_conv_block(1, 32, dropout), *_conv_block(32, 64, dropout), *_conv_block(64, 128, 0.0),
            nn.Flatten(),
        )
        self.to_mu = nn.Linear(128 * 4 * 4, latent_dim)
        self.to_logvar = nn.Linear(128 * 4 * 4, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 128 * 4 * 4), nn.ReLU(), Reshape(128, 4, 4),
            *_tconv(128, 128, 2), *_tconv(128, 128, 1),
            *_tconv(128, 64, 2), *_tconv(64, 64, 1),
            *_tconv(64, 32, 2),
            nn.ConvTranspose2d(32, 1, 3, 1, 1),
            Crop(2),
        )

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def decode_logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(z)
