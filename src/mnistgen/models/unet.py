"""The network of the flow family: a small UNet for 28x28 digits that maps (image, time, digit) to
an image-shaped output (a velocity for flow matching, a noise estimate for DDPM).

Levels at 28, 14 and 7 pixels with ``width``, 2 ``width`` and 2 ``width`` channels; residual
blocks (GroupNorm, SiLU, 3x3 convs) take the time and digit embedding as a per-channel shift.
With ``patch`` 2 the image is first folded into 2x2 patches (4 channels at 14x14, undone at the
output), so the levels are 14 and 7 only: about a quarter of the work at 28x28, where convs with
few channels run slowest on a CPU. The digit embedding
has one extra row, the "no digit" label that classifier-free guidance trains with label dropout.
Float class vectors (N, 10) are embedded as their blend of the digit rows, as in the other models.
With ``interval`` the network takes a second time input, the length r - t of a time interval (MeanFlow's
average velocity over [t, r]), embedded like the time and added to it; off by default.
The process that uses this network lives in ``flow_matching.py``: networks and processes stay apart.
"""

from __future__ import annotations

import math
from typing import TypeVar, cast

import torch
import torch.nn.functional as F
from torch import nn


def time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features (N, dim) of times in [0, 1] (scaled by 1000, as in DDPM's step index), in
    float32, or in float64 for float64 times (finite-difference tests of derivatives need the precision)."""
    half = dim // 2
    dtype = torch.promote_types(t.dtype, torch.float32)
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=dtype) / half)
    angles = 1000 * t.to(dtype)[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels // 4) or 1, channels)


Layer = TypeVar("Layer", nn.Linear, nn.Conv2d)


def zeroed(layer: Layer) -> Layer:
    """The layer with its weights and bias at 0 (it draws no random numbers, so others' weights stay the same)."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1, self.conv1 = norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class Attention(nn.Module):
    """Self-attention over the 7x7 positions (one head per 32 channels)."""

    def __init__(self, channels: int):
        super().__init__()
        self.heads = max(1, channels // 32)
        self.norm, self.qkv, self.out = norm(channels), nn.Conv2d(channels, 3 * channels, 1), nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, hgt, wid = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, hgt * wid).unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(h.transpose(-1, -2).reshape(n, c, hgt, wid))


class DigitUNet(nn.Module):
    """UNet over 28 (or 14) -> 14 -> 7 and back with ``blocks`` residual blocks per level and skip joins."""

    def __init__(self, width: int = 32, blocks: int = 1, num_classes: int = 10, attention: bool = False,
                 patch: int = 1, interval: bool = False):
        super().__init__()
        if patch not in (1, 2):
            raise ValueError(f"patch must be 1 or 2, not {patch!r}")
        self.num_classes = num_classes
        channels = [width, 2 * width, 2 * width] if patch == 1 else [width, 2 * width]
        emb_dim = 4 * width
        self.time_dim = width
        self.time_mlp = nn.Sequential(nn.Linear(width, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # Row num_classes is "no digit" (classifier-free guidance's unconditional branch).
        self.digit_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.fold: nn.Module
        self.unfold: nn.Module
        self.fold, self.unfold = (nn.PixelUnshuffle(2), nn.PixelShuffle(2)) if patch == 2 else (nn.Identity(), nn.Identity())
        self.stem = nn.Conv2d(patch * patch, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = []
        c = channels[0]
        for level, c_level in enumerate(channels):
            self.down.append(nn.ModuleList([ResBlock(c if i == 0 else c_level, c_level, emb_dim) for i in range(blocks)]))
            c = c_level
            skips.append(c)
            if level < len(channels) - 1:
                self.downsample.append(nn.Conv2d(c, channels[level + 1], 3, stride=2, padding=1))
                c = channels[level + 1]
        self.middle = ResBlock(c, c, emb_dim)
        self.attention = Attention(c) if attention else nn.Identity()
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(channels))):
            c_level = channels[level]
            self.up.append(nn.ModuleList([ResBlock((c + skips[level]) if i == 0 else c_level, c_level, emb_dim)
                                          for i in range(blocks)]))
            c = c_level
            if level > 0:
                self.upsample.append(nn.ConvTranspose2d(c, channels[level - 1], 4, stride=2, padding=1))
                c = channels[level - 1]
        # Start from output 0: the first steps learn the mean velocity instead of undoing noise.
        self.head = nn.Sequential(norm(c), nn.SiLU(), zeroed(nn.Conv2d(c, patch * patch, 3, padding=1)))
        # Made last, so that the layers above draw the same initial weights with or without it.
        self.interval_mlp = self.interval_embedding(width, emb_dim) if interval else None

    @staticmethod
    def interval_embedding(width: int, emb_dim: int) -> nn.Sequential:
        """Like ``time_mlp``, with its last layer at zero: a network given a flow's weights starts as that
        flow, the same prediction for every interval, and learns how the interval changes it."""
        return nn.Sequential(nn.Linear(width, emb_dim), nn.SiLU(), zeroed(nn.Linear(emb_dim, emb_dim)))

    def embed(self, t: torch.Tensor, labels: torch.Tensor | None, interval: torch.Tensor | None = None) -> torch.Tensor:
        """(N, emb_dim), or (1, emb_dim) for one time (1,) shared by the batch and no digit."""
        emb = self.time_mlp(time_features(t, self.time_dim))
        if interval is not None:
            if self.interval_mlp is None:
                raise ValueError("this network takes no interval (build it with interval=True)")
            emb = emb + self.interval_mlp(time_features(interval, self.time_dim))
        if self.digit_emb is None:
            return emb
        if labels is None:  # no digit given: the unconditional row
            return emb + self.digit_emb.weight[self.num_classes]
        if labels.is_floating_point():  # class vectors, possibly blends of digits
            return emb + labels.to(emb.dtype) @ self.digit_emb.weight[: self.num_classes]
        return emb + self.digit_emb(labels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None,
                interval: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (N, 1, 28, 28), ``t`` (N,) in [0, 1] (or (1,): one time for all), ``labels``: int digits
        (N,) where ``num_classes`` is the unconditional row, float class vectors (N, num_classes), or None
        (no digit); ``interval`` like ``t``, only for a network built with ``interval``."""
        emb = self.embed(t, labels, interval)
        h = self.stem(self.fold(x))
        skips = []
        # Each level of down and up is a ModuleList of ResBlocks (see __init__); nn.ModuleList is not generic.
        for level, blocks in enumerate(self.down):
            for block in cast(nn.ModuleList, blocks):
                h = block(h, emb)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        h = self.attention(self.middle(h, emb))
        for i, blocks in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in cast(nn.ModuleList, blocks):
                h = block(h, emb)
            if i < len(self.upsample):
                h = self.upsample[i](h)
        return self.unfold(self.head(h))
