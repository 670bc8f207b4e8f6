"""Seed 003's VAE: LSTM encoder, transposed-conv decoder (preset ``lstm-vae-seed003``).

Encoder, as the report gives it: "a single layer LSTM" (tanh) reading the image as "28 dimensional
28 timestamp inputs", hidden size 128; its last hidden state feeds "two dense layers for mean and
log variance"; "Latent space dimensionality is 50".
Decoder: the report's figure is not available, only its text: "first we reshape dense layer
output then apply transposed convolutions with 2 strides" and "relu activation function"; "The
last transposed convolution layer has sigmoid activation". Its sizes are not stated in the report;
chosen because the report made its GAN generator "very similar to decoder of the VAE", and that
generator's sizes are pinned down by its reported parameter count (``gan_seed003``, width 1): the
same layers, with the ReLUs the decoder text names and without batch norm, which the report
mentions for the generator only: dense 50 -> 7x7x32 (ReLU), transposed convs 3x3/s2 to 32 then
16 channels (ReLU) for 28x28, a 3x3 transposed conv to 1 channel with sigmoid.
Loss: BCE summed over pixels + KL summed over dims (the report: "The closed-form KL divergence
formula for normal distribution is used"); "The model is trained with 30 epochs".
Not stated in the report, and chosen because they are the settings of the Keras MNIST convnet
example, which the report lists among its references: Adam at its default learning rate 1e-3,
batch 128.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import VAE, Reshape


class LSTMVAESeed003(VAE):
    def __init__(self, latent_dim: int = 50, hidden: int = 128):
        super().__init__(latent_dim, loss_reduction="sum")
        self.lstm = nn.LSTM(28, hidden, batch_first=True)
        self.to_mu = nn.Linear(hidden, latent_dim)
        self.to_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 7 * 7 * 32), nn.ReLU(), Reshape(32, 7, 7),
            nn.ConvTranspose2d(32, 32, 3, 2, 1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 3, 2, 1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(16, 1, 3, 1, 1),  # logits; the sigmoid is in VAE.decode and the loss
        )

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        _, (h, _) = self.lstm(x.squeeze(1))  # rows are the time steps
        return self.to_mu(h[-1]), self.to_logvar(h[-1])

    def decode_logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(z)
