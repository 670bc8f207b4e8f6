"""Everything a run writes into its folder: config.yaml, model_info.json, checkpoints, metrics.jsonl
and TensorBoard, the sample grid of every epoch and summary.json (see docs/runs.md). Every file but
metrics.jsonl, which is appended to, is written whole (atomically). In a distributed run only rank 0
writes: on the other ranks every method does nothing."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from ..checkpoint import save_checkpoint
from ..config import Config
from ..errors import MnistgenError
from ..fileio import atomic_write_text
from ..images import save_grid
from ..models.base import DigitModel

GRID_SIZE = 64  # fixed latents drawn once per run; every epoch's grid decodes the same ones


def rank_zero_only(method: Callable) -> Callable:
    """A method that writes the run folder: on the other ranks of a distributed run it does nothing."""

    @functools.wraps(method)
    def on_rank_zero(self: RunWriter, *args: Any, **kwargs: Any) -> Any:
        return method(self, *args, **kwargs) if self.main else None

    return on_rank_zero


class RunWriter:
    """The files of the run in ``out``, written by the process that is ``main`` (rank 0)."""

    def __init__(self, out: Path, main: bool, model: DigitModel, seed: int, device: torch.device):
        self.out, self.main = out, main
        self.tensorboard: Any = None  # a SummaryWriter while the run trains (see logging)
        noise = torch.Generator().manual_seed(seed + 1)
        # Drawn the way the model samples (its temperature), so the grids show what `sample` gives.
        self.grid_latents = (torch.randn(GRID_SIZE, model.latent_dim, generator=noise) * model.temperature).to(device)
        # A conditional model's grid cycles through the digits, so every grid shows all ten.
        self.grid_labels = (torch.arange(GRID_SIZE, device=device) % model.num_classes if model.num_classes else None)

    @property
    def last_checkpoint(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    def last_checkpoint_note(self) -> str:
        path = self.last_checkpoint
        return f"last good checkpoint: {path}" if path.is_file() else "no checkpoint yet"

    @rank_zero_only
    def write_config(self, cfg: Config, run: dict[str, Any]) -> None:
        """config.yaml: every resolved setting and how the run was made (rewritten when a resume changes them)."""
        atomic_write_text(self.out / "config.yaml", yaml.safe_dump({**cfg.to_dict(), "run": run}, sort_keys=False))

    @rank_zero_only
    def write_model_info(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.out / "model_info.json", json.dumps(info, indent=2) + "\n")

    @rank_zero_only
    def save_checkpoint(self, state: Callable[[], dict[str, Any]], name: str = "last.pt") -> None:
        """checkpoints/NAME holding ``state()`` (called only where it is written)."""
        save_checkpoint(self.out / "checkpoints" / name, state())

    @rank_zero_only
    def save_samples(self, model: DigitModel, name: str) -> Path | None:
        """samples/NAME: the grid of the run's fixed latents as ``model`` decodes them now."""
        was_training = model.training
        model.eval()
        with torch.no_grad():
            images = model.decode_latents(self.grid_latents, self.grid_labels)
        model.train(was_training)
        return save_grid(images, self.out / "samples" / name, ncols=8)

    @contextlib.contextmanager
    def logging(self) -> Iterator[None]:
        """TensorBoard logs open while the run trains (on rank 0)."""
        from torch.utils.tensorboard import SummaryWriter  # slow import: only when training

        self.tensorboard = SummaryWriter(str(self.out / "tensorboard")) if self.main else None
        try:
            yield
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()

    @rank_zero_only
    def append_metrics(self, record: dict[str, Any]) -> None:
        """One epoch's record: a line of metrics.jsonl, and its numbers as TensorBoard scalars."""
        with open(self.out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                self.tensorboard.add_scalar(key, value, record["epoch"])

    @rank_zero_only
    def print_epoch(self, heading: str, record: dict[str, Any]) -> None:
        """The epoch's line in a log (where progress bars would print a line per refresh)."""
        skip = ("epoch", "step", "seconds", "kl_weight", "lr", "lr_g", "lr_d", "eval_seconds")
        terms = "  ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in skip and isinstance(v, float))
        print(f"{heading}: {terms}  ({record['seconds']:.0f} s)", flush=True)

    @rank_zero_only
    def truncate_metrics(self, epochs: int) -> None:
        """On resume, drop the records past the checkpoint's ``epochs`` (they will be written again)."""
        path = self.out / "metrics.jsonl"
        if not path.exists():
            return
        keep = [r for r in read_metrics(path, warn=True) if not r.get("partial") and r["epoch"] <= epochs]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))

    @rank_zero_only
    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=2) + "\n")


def read_metrics(path: str | os.PathLike, warn: bool = False) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl. A torn last line (a kill mid-write) is dropped, with a
    warning when ``warn``; a damaged line anywhere else is an error naming the file and line."""
    path = Path(path)
    lines = path.read_text(errors="replace").split("\n")
    complete, tail = lines[:-1], lines[-1]  # text after the last newline was cut off
    records = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "epoch" not in record:
                raise ValueError("not an epoch record")
        except ValueError:
            if number == len(complete) and not tail.strip():
                tail = line  # the last line, cut before its end: treated like a torn tail
                break
            raise MnistgenError(f"{path}, line {number}: damaged record (not an epoch record in JSON); "
                                f"fix or delete that line") from None
        records.append(record)
    if tail.strip():
        try:  # only the newline was lost: the record is whole
            record = json.loads(tail)
            if isinstance(record, dict) and "epoch" in record:
                return records + [record]
        except ValueError:
            pass
    if tail.strip() and warn:
        print(f"warning: {path}: dropped an incomplete last line (the run was killed while writing it)",
              file=sys.stderr)
    return records
