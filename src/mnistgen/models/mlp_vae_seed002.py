"""Seed 002's MLP VAE with a 2-D latent (preset ``mlp-vae-2d-seed002``).

784 -> 512 (ReLU) -> 2-D mean and log-variance; 2 -> 512 (ReLU) -> 784 (sigmoid).
Loss as in the seed: BCE averaged over pixels times 784 (= summed over pixels) plus KL
summed over the 2 latent dims, both averaged over the batch. Adam 1e-4, batch 128;
the seed compares 5, 10 and 30 epochs (the preset trains 5; pass --epochs for the others).
Parameters: 807,700, matching the Keras layer sizes exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import VAE, Reshape


class MLPVAESeed002(VAE):
    def __init__(self, latent_dim: int = 2, hidden: int = 512):
        super().__init__(latent_dim, loss_reduction="sum")
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU())
        self.to_mu = nn.Linear(hidden, latent_dim)
        self.to_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 784), Reshape(1, 28, 28)
        )

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def decode_logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(z)
