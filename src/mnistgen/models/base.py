"""The two model interfaces every mnistgen model implements.

A likelihood model (VAE) gives ``encode / decode / sample / loss -> dict``; an adversarial
model (GAN) gives ``generator / discriminator / sample``. The trainers in
``mnistgen.training`` only talk to these interfaces, so a new model is one module plus one
registry entry in ``mnistgen.models`` plus one preset YAML.

Images cross these interfaces as float tensors (N, 1, 28, 28) in the model's
``data_range``; :meth:`sample` always returns [0, 1] so callers need not care.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VAE(nn.Module):
    """Gaussian-latent VAE with a Bernoulli decoder (BCE reconstruction + closed-form KL).

    ``loss_reduction`` says how the seeds scale the two terms:
    ``"sum"``: sum over pixels and latent dims, mean over the batch (the usual ELBO);
    ``"mean"``: mean over pixels and over latent dims (seed 000's Keras code).
    """

    family = "vae"
    data_range = (0.0, 1.0)

    def __init__(self, latent_dim: int, loss_reduction: str = "sum"):
        super().__init__()
        if loss_reduction not in ("sum", "mean"):
            raise ValueError(f"loss_reduction must be 'sum' or 'mean', not {loss_reduction!r}")
        self.latent_dim = latent_dim
        self.loss_reduction = loss_reduction

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x)."""
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel logits (N, 1, 28, 28); sigmoid of them is the decoded image."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z))

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def loss(self, x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """Terms of the negative ELBO; ``loss`` is the one to minimise (KL weighted by beta)."""
        mu, logvar = self.encode(x)
        logits = self.decode_logits(self.reparameterize(mu, logvar))
        # BCE on logits is the numerically safe form of BCE on sigmoid outputs (and AMP-safe).
        bce = F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none").flatten(1)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).float()
        if self.loss_reduction == "sum":
            recon, kl = bce.sum(1).mean(), kl.sum(1).mean()
        else:
            recon, kl = bce.mean(), kl.mean()
        return {"loss": recon + beta * kl, "recon": recon, "kl": kl}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device="cpu").to(device)
        return self.decode(z).clamp(0, 1)

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] for given latents (the fixed-noise grids use this)."""
        return self.decode(z).clamp(0, 1)


class GAN(nn.Module):
    """A generator z -> image in ``data_range`` and a discriminator image -> logit (N,)."""

    family = "gan"
    data_range = (-1.0, 1.0)

    def __init__(self, latent_dim: int, generator: nn.Module, discriminator: nn.Module):
        super().__init__()
        self.latent_dim = latent_dim
        self.generator = generator
        self.discriminator = discriminator

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Generated images mapped to [0, 1]."""
        low, high = self.data_range
        return ((self.generator(z) - low) / (high - low)).clamp(0, 1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device="cpu").to(device)
        return self.decode_latents(z)


class Reshape(nn.Module):
    def __init__(self, *shape: int):
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], *self.shape)


class Crop(nn.Module):
    """Remove ``border`` pixels on every side (Keras Cropping2D)."""

    def __init__(self, border: int):
        super().__init__()
        self.border = border

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.border
        return x[..., b:-b, b:-b]


def keras_batchnorm(num_features: int, dims: int = 2) -> nn.Module:
    """BatchNorm with Keras' defaults (momentum 0.99 -> torch 0.01, eps 1e-3), for faithful presets."""
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(num_features, eps=1e-3, momentum=0.01)
