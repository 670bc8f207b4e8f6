"""Seed 003's VAE: LSTM encoder, transposed-conv decoder (preset ``lstm-vae-seed003``).

Encoder: one LSTM layer (tanh, hidden 128) reading the image as 28 time steps of 28 pixels;
its last hidden state feeds two dense heads for a 50-D latent.
Decoder: the seed's figure is not available, only its text ("reshape the dense layer output,
then transposed convolutions with stride 2 and ReLU; the last transposed conv has a sigmoid").
We read it as TensorFlow's CVAE tutorial decoder, which the seed cites:
dense 50 -> 7x7x32 (ReLU), transposed convs 64/s2 and 32/s2 (3x3, ReLU) to 28x28,
and a final 3x3 transposed conv to 1 channel with sigmoid.
Loss: BCE summed over pixels + KL summed over dims (seed: "closed-form KL"), 30 epochs.
The seed gives neither optimizer nor batch size: Adam 1e-3, batch 128 (Keras defaults/tutorial).
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
            nn.ConvTranspose2d(32, 64, 3, 2, 1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 3, 2, 1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 3, 1, 1),
        )

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        _, (h, _) = self.lstm(x.squeeze(1))  # rows are the time steps
        return self.to_mu(h[-1]), self.to_logvar(h[-1])

    def decode_logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(z)
