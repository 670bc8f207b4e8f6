"""The machinery both trainers share: run folder, epochs and steps, time budget, logs,
fixed-noise grids, full-state checkpoints, exact resume, and the NaN guard.

A family trainer (``likelihood.py``, ``adversarial.py``) supplies only what differs:
its optimizers, one training step, the end-of-epoch work, and which weights to sample from.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import yaml
from tqdm import tqdm

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import Config
from ..data import InMemoryBatches, load_dataset, to_float_images
from ..errors import MnistgenError, TrainingDiverged
from ..images import save_grid
from ..modelinfo import lines_of_code, model_info
from ..models import GAN, VAE, build_model

GRID_SIZE = 64  # fixed latents drawn once per run; every epoch's grid decodes the same ones
KILL_ENV = "MNISTGEN_KILL_AFTER_STEP"  # test hook: SIGKILL ourselves after this global step


@dataclass
class RunOptions:
    """How to run a preset (not what to train: that is the Config)."""

    out: str
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    compile: bool = False
    subset: int | None = None
    data: str | None = None
    max_minutes: float | None = None
    progress: bool = True
    write_cache: bool = True
    snapshot_minutes: tuple[float, ...] = ()  # also save checkpoints/minute_M.pt when training time reaches M


LOCAL_OPTIONS = ("progress", "write_cache", "snapshot_minutes")  # how this process runs, not part of the run


def snapshot_name(minutes: float) -> str:
    """File name, under checkpoints/, of the snapshot taken at ``minutes`` of training."""
    return f"minute_{minutes:g}.pt"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MnistgenError("--device cuda asked for, but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise MnistgenError(f"--device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


class Trainer:
    """Base trainer. Subclasses implement ``setup``, ``train_step``, ``end_epoch``,
    ``family_state``/``load_family_state`` and ``sampling_model``."""

    has_validation = False

    def __init__(self, cfg: Config, opts: RunOptions, model: VAE | GAN | None = None):
        self.cfg, self.opts, self.t = cfg, opts, cfg.train
        self.out = Path(opts.out)
        self.device = resolve_device(opts.device)
        torch.manual_seed(opts.seed)
        self.model = (model or build_model(cfg.model, **cfg.model_args)).to(self.device)
        data = load_dataset(opts.data, write_cache=opts.write_cache)
        x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
        if opts.subset:
            n_val = min(opts.subset, len(x_test))
            x_train, y_train, x_test, y_test = x_train[: opts.subset], y_train[: opts.subset], x_test[:n_val], y_test[:n_val]
        self.x_train = to_float_images(x_train, self.model.data_range).to(self.device)
        self.y_train = torch.as_tensor(y_train, dtype=torch.long, device=self.device)
        self.x_val = to_float_images(x_test, self.model.data_range).to(self.device)
        self.y_val = torch.as_tensor(y_test, dtype=torch.long, device=self.device)
        # Batches of indices, so that images and their labels are sliced alike.
        self.batches = InMemoryBatches(torch.arange(len(self.x_train), device=self.device), self.t.batch_size,
                                       seed=opts.seed)
        noise = torch.Generator().manual_seed(opts.seed + 1)
        # Drawn the way the model samples (its temperature), so the grids show what `sample` gives.
        self.fixed_latents = (torch.randn(GRID_SIZE, self.model.latent_dim, generator=noise)
                              * self.model.temperature).to(self.device)
        # A conditional model's grid cycles through the digits, so every grid shows all ten.
        self.fixed_labels = (torch.arange(GRID_SIZE, device=self.device) % self.model.num_classes
                             if self.model.num_classes else None)
        self.scaler = torch.amp.GradScaler("cuda", enabled=opts.amp and self.device.type == "cuda")
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.elapsed = 0.0
        self.sums: dict[str, float] = {}
        self.best = math.inf
        self.setup()

    # ------------------------------------------------------------------ family hooks
    def setup(self) -> None:
        raise NotImplementedError

    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One optimisation step on a batch of images and their digit labels."""
        raise NotImplementedError

    def end_epoch(self) -> dict[str, float]:
        """Validation, schedulers; returns extra metrics for the epoch's record."""
        return {}

    def family_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_family_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def sampling_model(self) -> VAE | GAN:
        return self.model

    def learning_rates(self) -> dict[str, float]:
        return {}

    # ---------------------------------------------------------------------- helpers
    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.opts.amp)

    def maybe_compile(self, fn: Callable) -> Callable:
        """A compiled view of a module or method; parameters are shared, state dicts stay plain."""
        return torch.compile(fn) if self.opts.compile else fn

    def optimizer(self, params: Iterator[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
        t = self.t
        if t.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=lr, betas=t.betas, weight_decay=t.weight_decay)
        if t.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, weight_decay=t.weight_decay)
        return torch.optim.Adam(params, lr=lr, betas=t.betas, weight_decay=t.weight_decay)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    # ------------------------------------------------------------------- checkpoints
    def state(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "config": self.cfg.to_dict(),
            "run": {k: v for k, v in asdict(self.opts).items() if k not in (*LOCAL_OPTIONS, "out")},
            "model": self.model.state_dict(),
            "family": self.family_state(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "elapsed": self.elapsed,
            "sums": dict(self.sums),
            "best": self.best,
            "complete": self.complete,  # derived; stored so a checkpoint tells at a glance
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.load_family_state(state["family"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.global_step, self.elapsed = state["global_step"], state["elapsed"]
        self.sums, self.best = dict(state["sums"]), state["best"]

    @property
    def complete(self) -> bool:
        return self.epoch >= self.t.epochs

    def save(self, name: str = "last.pt") -> None:
        save_checkpoint(self.out / "checkpoints" / name, self.state())

    # ------------------------------------------------------------------------- logs
    def _append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                self.writer.add_scalar(key, value, record["epoch"])

    def _truncate_metrics(self) -> None:
        """On resume, drop records past the checkpoint (they will be written again)."""
        path = self.out / "metrics.jsonl"
        if not path.exists():
            return
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        keep = [r for r in records if not r.get("partial") and r["epoch"] <= self.epoch]
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def save_samples(self, name: str) -> Path:
        model = self.sampling_model()
        was_training = model.training
        model.eval()
        with torch.no_grad():
            images = model.decode_latents(self.fixed_latents, self.fixed_labels)
        model.train(was_training)
        return save_grid(images, self.out / "samples" / name, ncols=8)

    def _epoch_record(self, partial: bool) -> dict[str, Any]:
        steps = max(1, self.step_in_epoch)
        # A partial epoch (time budget) is logged at its fractional position, e.g. 3.4.
        epoch = round(self.epoch + self.step_in_epoch / len(self.batches), 3) if partial else self.epoch + 1
        record: dict[str, Any] = {"epoch": epoch, "step": self.global_step}
        record.update({k: v / steps for k, v in self.sums.items()})
        if not partial:
            record.update(self.end_epoch())
        record.update(self.learning_rates())
        record["seconds"] = round(self.elapsed, 3)
        if partial:
            record["partial"] = True
        return record

    # ------------------------------------------------------------------------- run
    def prepare_new_run(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.yaml").write_text(yaml.safe_dump(
            {**self.cfg.to_dict(), "run": {k: v for k, v in asdict(self.opts).items() if k not in LOCAL_OPTIONS}},
            sort_keys=False))
        info = model_info(self.model)
        info["trainer_lines_of_code"] = self.trainer_lines_of_code()
        (self.out / "model_info.json").write_text(json.dumps(info, indent=2) + "\n")
        self.save()  # step 0: a NaN in the first epoch still leaves a good checkpoint

    def trainer_lines_of_code(self) -> int:
        """Lines of the shared loop plus this family's trainer (the seeds count training code too)."""
        files = {sys.modules[Trainer.__module__], sys.modules[type(self).__module__]}
        return sum(lines_of_code(inspect.getsource(m)) for m in files)

    def resume(self, state: dict[str, Any] | None = None) -> None:
        """Continue from ``state`` (already read by the caller) or from the run's last.pt."""
        if state is None:
            state = load_checkpoint(self.out / "checkpoints" / "last.pt", expect_preset=self.cfg.preset)
        self.load_state(state)
        self._truncate_metrics()

    def run(self) -> dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter  # slow import: only when training

        self.writer = SummaryWriter(str(self.out / "tensorboard"))
        # The budget counts from here: a resumed run gets max_minutes more, not less.
        budget = self.elapsed + self.opts.max_minutes * 60 if self.opts.max_minutes else math.inf
        kill_after = int(os.environ.get(KILL_ENV, "0"))
        snapshots = sorted(m for m in self.opts.snapshot_minutes if m * 60 > self.elapsed)
        stop_reason = "epochs"
        self.model.train()
        try:
            while self.epoch < self.t.epochs:
                bar = tqdm(total=len(self.batches), initial=self.step_in_epoch, disable=not self.opts.progress,
                           desc=f"{self.cfg.preset} epoch {self.epoch + 1}/{self.t.epochs}", leave=False,
                           dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30)
                out_of_time = False
                for idx in self.batches.epoch(self.epoch, start_step=self.step_in_epoch):
                    started = time.perf_counter()
                    terms = self.train_step(self.x_train[idx], self.y_train[idx])
                    bad = [k for k, v in terms.items() if not math.isfinite(v)]
                    if bad:
                        raise TrainingDiverged(
                            f"{', '.join(bad)} became {terms[bad[0]]} at epoch {self.epoch + 1}, step "
                            f"{self.global_step + 1}; stopped. Last good checkpoint: "
                            f"{self.out / 'checkpoints' / 'last.pt'} (try a lower learning rate)")
                    for k, v in terms.items():
                        self.sums[k] = self.sums.get(k, 0.0) + v
                    self.step_in_epoch += 1
                    self.global_step += 1
                    self.elapsed += time.perf_counter() - started
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items()}, refresh=False)
                    if self.t.checkpoint_every and self.global_step % self.t.checkpoint_every == 0:
                        self.save()
                    while snapshots and self.elapsed >= snapshots[0] * 60:
                        self.save(snapshot_name(snapshots.pop(0)))
                    if kill_after and self.global_step == kill_after:
                        os.kill(os.getpid(), signal.SIGKILL)
                    if self.elapsed >= budget:
                        out_of_time = True
                        break
                bar.close()
                if out_of_time and self.step_in_epoch < len(self.batches):
                    self._append_metrics(self._epoch_record(partial=True))
                    stop_reason = "time budget"
                    break
                self._finish_epoch()
                if out_of_time:
                    stop_reason = "time budget"
                    break
        finally:
            self.writer.close()
        if self.step_in_epoch:  # stopped mid-epoch; epoch ends were saved by _finish_epoch
            self.save()
        self.save_samples("final.png")
        summary = {
            "preset": self.cfg.preset, "family": self.cfg.family, "device": str(self.device),
            "epochs_completed": self.epoch, "steps": self.global_step,
            "training_seconds": round(self.elapsed, 2), "stop_reason": stop_reason,
            "seconds_per_epoch": round(self.elapsed * len(self.batches) / max(1, self.global_step), 2),
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def _finish_epoch(self) -> None:
        started = time.perf_counter()
        record = self._epoch_record(partial=False)
        self.epoch += 1
        self.step_in_epoch = 0
        self.sums = {}
        self._append_metrics(record)
        self.save_samples(f"epoch_{self.epoch:04d}.png")
        self.elapsed += time.perf_counter() - started
        improved = self.has_validation and record.get("val_loss", math.inf) < self.best
        if improved:
            self.best = record["val_loss"]
        self.save()
        if improved:
            self.save("best.pt")
