"""DDPM with a DDIM sampler (preset ``diffusion``) on the flow family's UNet.

Training (Ho et al. 2020, continuous time): at a time tau drawn uniformly in [0, 1], a digit x in
[-1, 1] is noised to x_tau = sqrt(a) * x + sqrt(1 - a) * noise, where a = alpha_bar(tau) follows
the cosine schedule (Nichol & Dhariwal 2021) from 1 (tau = 0, the digit) to ~0 (tau = 1, noise);
the network predicts the noise, and the loss is its mean squared error. Label dropout as in
``flow_matching.py`` trains the "no digit" prediction for classifier-free guidance.

Sampling: DDIM without added noise (Song et al. 2021) in ``steps`` equal steps of tau from 1 to 0:
each step estimates the clean digit from the predicted noise (clipped to [-1, 1]) and moves to the
next time along that estimate. One network call per step (two with guidance).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import FlowModel
from .unet import DigitUNet

OFFSET = 0.008  # the cosine schedule's s: keeps the noise at tau = 0 small but not zero
LEAST_SIGNAL = 1e-4  # alpha_bar at tau = 1 is clipped here, so a clean-digit estimate exists at every tau


def alpha_bar(tau: torch.Tensor) -> torch.Tensor:
    """The share of the digit's variance left at time ``tau`` (cosine schedule)."""
    f = torch.cos((tau + OFFSET) / (1 + OFFSET) * math.pi / 2) ** 2
    return (f / math.cos(OFFSET / (1 + OFFSET) * math.pi / 2) ** 2).clamp(LEAST_SIGNAL, 1.0)


class DDPM(FlowModel):
    def __init__(self, width: int = 32, blocks: int = 1, attention: bool = False, patch: int = 1, num_classes: int = 10,
                 label_dropout: float = 0.1, steps: int = 20, guidance: float = 0.0, temperature: float = 1.0):
        net = DigitUNet(width=width, blocks=blocks, num_classes=num_classes, attention=attention, patch=patch)
        super().__init__(net, num_classes=num_classes, steps=steps, guidance=guidance, temperature=temperature,
                         label_dropout=label_dropout)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        noise = torch.randn_like(x)
        tau = torch.rand(len(x), device=x.device)
        a = alpha_bar(tau)[:, None, None, None].to(x.dtype)
        x_tau = a.sqrt() * x + (1 - a).sqrt() * noise
        return {"loss": F.mse_loss(self.net(x_tau, tau, self.drop_labels(labels)).float(), noise.float())}

    def generate(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = noise
        taus = torch.linspace(1, 0, self.steps + 1)
        for tau, tau_next in zip(taus[:-1], taus[1:]):
            a, a_next = float(alpha_bar(tau)), float(alpha_bar(tau_next))
            predicted = self.predict(x, float(tau), labels)
            clean = ((x - math.sqrt(1 - a) * predicted) / math.sqrt(a)).clamp(-1, 1)
            if tau_next == 0:  # alpha_bar(0) is 1 up to rounding: the estimate is the digit
                return clean
            predicted = (x - math.sqrt(a) * clean) / math.sqrt(1 - a)  # the noise that fits the clipped digit
            x = math.sqrt(a_next) * clean + math.sqrt(1 - a_next) * predicted
        return x
