"""Turning image tensors into files: uint8 arrays, PNG grids."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import torch

from .fileio import atomic_write


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[0, 1] floats (N, 1, 28, 28) or (N, 28, 28) -> uint8 (N, 28, 28)."""
    x = images.detach().float().cpu().clamp(0, 1)
    if x.ndim == 4:
        x = x[:, 0]
    return (x * 255).round().to(torch.uint8).numpy()


def grid(images: np.ndarray, ncols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile uint8 images (N, H, W) into one uint8 picture with ``pad`` dark pixels between."""
    n, h, w = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    canvas = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), 40, dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
    return canvas


def save_grid(images: np.ndarray | torch.Tensor, path: str | os.PathLike, ncols: int | None = None,
              scale: int = 3) -> Path:
    """Save a PNG grid, each pixel enlarged ``scale`` times so digits are readable."""
    return atomic_write(path, lambda fh: fh.write(grid_png(images, ncols, scale)))


def grid_png(images: np.ndarray | torch.Tensor, ncols: int | None = None, scale: int = 3) -> bytes:
    """The bytes of a PNG grid (see :func:`save_grid`); one image with ``ncols`` 1 and no padding around it is
    just that digit."""
    if isinstance(images, torch.Tensor):
        images = to_uint8(images)
    picture = grid(images, ncols, pad=0 if len(images) == 1 else 2).repeat(scale, 0).repeat(scale, 1)
    buffer = io.BytesIO()
    mpimg.imsave(buffer, picture, cmap="gray", vmin=0, vmax=255, format="png")  # no pyplot: no backend is set
    return buffer.getvalue()
