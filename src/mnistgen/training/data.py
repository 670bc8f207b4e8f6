"""What a run trains and validates on: the data it names, cut to ``--subset``, as tensors on the run's
device. Batch sizes that cannot work are refused here, before anything is written."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..config import Config
from ..data import MnistData, load_dataset, to_float_images
from ..errors import MnistgenError


def load_split(data: str | None, subset: int | None, write_cache: bool = True) -> MnistData:
    """The data named (see :func:`mnistgen.data.load_dataset`); with ``subset``, its first ``subset``
    training images and as many test images at most (the validation split)."""
    mnist = load_dataset(data, write_cache=write_cache)
    if subset and subset > len(mnist.x_train):
        raise MnistgenError(f"--subset {subset} is more than the {len(mnist.x_train):,} training images of the data")
    if not subset:
        return mnist
    return dataclasses.replace(mnist, x_train=mnist.x_train[:subset], y_train=mnist.y_train[:subset],
                               x_test=mnist.x_test[:subset], y_test=mnist.y_test[:subset])


def check_batches(cfg: Config, n_train: int, subset: int | None, processes: int) -> None:
    """Refuse batches too small for batch statistics (BatchNorm), or a global batch that does not divide
    among the processes; a training set smaller than a batch is one batch of all of it."""
    batch = min(cfg.train.batch_size, n_train)
    smallest = 2 * (2 if cfg.family == "gan" and cfg.train.split_real_fake else 1)
    if batch < smallest:
        where = f"--subset {subset}" if subset else f"{n_train} training image(s)"
        raise MnistgenError(
            f"{where} with batch_size {cfg.train.batch_size} gives batches of {batch}; {cfg.preset} needs at "
            f"least {smallest} images per batch (batch statistics{', split real/fake' if smallest > 2 else ''})")
    if batch % processes:
        raise MnistgenError(f"batch_size {batch} does not divide among {processes} processes; it is the global "
                            f"batch, each process takes an equal share")


def on_device(mnist: MnistData, data_range: tuple[float, float],
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training images, their labels, validation (test) images and theirs: images as floats in the
    model's ``data_range``, labels as int64, all on ``device``."""
    def images(x: np.ndarray) -> torch.Tensor:
        return to_float_images(x, data_range).to(device)

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(y, dtype=torch.long, device=device)

    return images(mnist.x_train), labels(mnist.y_train), images(mnist.x_test), labels(mnist.y_test)
