"""In-memory batch slicing vs torch DataLoader, one epoch of shuffled batches of 128.

Run: .venv/bin/python benchmarks/batching.py  (prints a table; results/batching.txt holds a run)
"""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from mnistgen.data import InMemoryBatches, load_dataset, to_float_images


def epoch_seconds(batches) -> float:
    started = time.perf_counter()
    total = 0.0
    for batch in batches:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        total += float(x[0, 0, 0, 0])  # touch every batch
    return time.perf_counter() - started


def main() -> None:
    images = to_float_images(load_dataset().x_train)
    rows = [("InMemoryBatches", epoch_seconds(InMemoryBatches(images, 128, seed=0).epoch(0)))]
    dataset = TensorDataset(images)
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=128, shuffle=True, num_workers=workers, drop_last=True)
        rows.append((f"DataLoader(num_workers={workers})", epoch_seconds(loader)))
    print(f"one epoch, 60,000 images, batch 128, {torch.get_num_threads()} threads")
    for name, seconds in rows:
        print(f"{name:28s} {seconds:7.3f} s")


if __name__ == "__main__":
    main()
