"""Seed 004's VAE: LSTM encoder over rows, conv decoder with a dense output (preset ``lstm-vae-seed004``).

Built from the seed's layer summary (Figure 1):
encoder LSTM hidden 64 over the 28 rows, all 28 outputs flattened (1792) -> mu, sigma (64 each);
decoder fc 98 -> fc 196 -> reshape 14x14x1 -> tconv 32 (14x14) -> dropout -> tconv 64 (14x14)
-> dropout -> tconv 64 stride 2 (28x28) -> flatten (50176) -> fc 784 -> 28x28.
Kernel size 3 throughout (seed's text). Choices where the seed is silent: ReLU after the
hidden layers, dropout 0.2, sigmoid on the output fc (the seed's BCE clips the output to
[1e-7, 1-1e-7], so it is a probability). The seed's ``sigma`` is a log standard deviation
(its KL uses 2*sigma and exp(2*sigma)); we return the log-variance 2*sigma, the same model.
Loss: BCE summed over pixels + KL summed over dims, mean over the batch; 100 epochs, batch 256.
Optimizer unstated: Adam 1e-3. The output fc alone holds 39.3M of the ~39.5M parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import VAE, Reshape


class LSTMVAESeed004(VAE):
    def __init__(self, latent_dim: int = 64, hidden: int = 64, dropout: float = 0.2):
        super().__init__(latent_dim, loss_reduction="sum")
        self.lstm = nn.LSTM(28, hidden, batch_first=True)
        self.to_mu = nn.Linear(28 * hidden, latent_dim)
        self.to_log_sigma = nn.Linear(28 * hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 98), nn.ReLU(),
            nn.Linear(98, 196), nn.ReLU(), Reshape(1, 14, 14),
            nn.ConvTranspose2d(1, 32, 3, 1, 1), nn.ReLU(), nn.Dropout(dropout),
            nn.ConvTranspose2d(32, 64, 3, 1, 1), nn.ReLU(), nn.Dropout(dropout),
            nn.ConvTranspose2d(64, 64, 3, 2, 1, output_padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 28 * 28, 784), Reshape(1, 28, 28),
        )

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.lstm(x.squeeze(1))
        h = out.flatten(1)
        return self.to_mu(h), 2.0 * self.to_log_sigma(h)

    def decode_logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(z)
