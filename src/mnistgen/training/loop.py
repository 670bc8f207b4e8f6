"""The machinery both trainers share: run folder, epochs and steps, time budget, logs,
fixed-noise grids, full-state checkpoints, exact resume, and the NaN guard.

A family trainer (``likelihood.py``, ``adversarial.py``) supplies only what differs:
its optimizers, one training step, the end-of-epoch work, and which weights to sample from.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import yaml
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import Config
from ..data import InMemoryBatches, load_dataset, to_float_images
from ..errors import CheckpointError, MnistgenError, TrainingDiverged, TrainingStopped
from ..fileio import atomic_write_text
from ..images import save_grid
from ..modelinfo import lines_of_code, model_info, trainer_modules
from ..models import GAN, VAE, build_model
from .distributed import (any_rank, average_gradients, broadcast_parameters, join, mean_over_ranks, parallel, step_seed,
                          world_from_env)
from .quality import BEST_KEYS, QualityProbe, check_quality_settings

VAL_BATCH = 1000  # largest validation chunk
GRID_SIZE = 64  # fixed latents drawn once per run; every epoch's grid decodes the same ones
KILL_ENV = "MNISTGEN_KILL_AFTER_STEP"  # test hook: signal ourselves after this global step ...
KILL_SIGNAL_ENV = "MNISTGEN_KILL_SIGNAL"  # ... with this signal (default SIGKILL)


@dataclass
class RunOptions:
    """How to run a preset (not what to train: that is the Config)."""

    out: str
    seed: int = 0
    device: str = "auto"
    subset: int | None = None
    data: str | None = None
    max_minutes: float | None = None
    progress: bool = True
    write_cache: bool = True
    snapshot_minutes: tuple[float, ...] = ()  # also save checkpoints/minute_M.pt when training time reaches M
    world_size: int = 1  # processes training together (torchrun); the preset's batch_size is the global batch


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


def rank_zero_only(method: Callable) -> Callable:
    """A method that writes the run folder: on the other ranks of a distributed run it does nothing."""

    @functools.wraps(method)
    def on_rank_zero(self: "Trainer", *args: Any, **kwargs: Any) -> Any:
        return method(self, *args, **kwargs) if self.world.main else None

    return on_rank_zero


class Trainer:
    """Base trainer. Subclasses implement ``setup``, ``train_step``, ``end_epoch``,
    ``family_state``/``load_family_state`` and ``sampling_model``."""

    discard_untrained = False  # a new run stopped before its first step is removed (start_run)
    # Distributed: gradients averaged in backward_step, not by DDP (a family whose steps DDP cannot wrap).
    average_gradients_by_hand = False

    def __init__(self, cfg: Config, opts: RunOptions, model: VAE | GAN | None = None):
        self.cfg, self.t = cfg, cfg.train
        self.out = Path(opts.out)
        self.device = resolve_device(opts.device)
        self.world = world_from_env()
        if self.world.size > 1:
            if self.device.type == "cuda":  # one GPU per process (shared round-robin only where there are fewer)
                self.device = torch.device("cuda", self.world.local_rank % torch.cuda.device_count())
                torch.cuda.set_device(self.device)
        self.opts = opts = replace(opts, world_size=self.world.size)
        torch.manual_seed(opts.seed)
        self.model = (model or build_model(cfg.model, **cfg.model_args)).to(self.device)
        if getattr(self.model, "channels_last", False):
            # oneDNN's convolutions run NHWC natively: no layout reorders around every conv
            # (benchmarks/results/profile-faithful-presets-2026-11-25-cpu.md). Checkpoints stay plain (state()).
            self.model.to(memory_format=torch.channels_last)
        data = load_dataset(opts.data, write_cache=opts.write_cache)
        x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
        if opts.subset and opts.subset > len(x_train):
            raise MnistgenError(f"--subset {opts.subset} is more than the {len(x_train):,} training images of the data")
        if opts.subset:
            n_val = min(opts.subset, len(x_test))
            x_train, y_train, x_test, y_test = x_train[: opts.subset], y_train[: opts.subset], x_test[:n_val], y_test[:n_val]
        self.use_amp, self.use_compile = self._switch(self.t.amp), self._switch(self.t.compile)
        self._check_batch(len(x_train))
        check_quality_settings(self.t)
        self.quality = QualityProbe(self.t.eval_every, self.t.eval_n, opts.data, self.device)
        if self.world.size > 1:
            if min(self.t.batch_size, len(x_train)) % self.world.size:
                raise MnistgenError(f"batch_size {min(self.t.batch_size, len(x_train))} does not divide among "
                                    f"{self.world.size} processes; it is the global batch, each process takes an equal share")
            join(self.world, self.device)
            broadcast_parameters(self.model, self.world)
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
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.device.type == "cuda")
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.elapsed = 0.0
        self.sums: dict[str, float] = {}
        self.best = math.inf
        self._in_step = False  # True while a step (or epoch-end update) has changed state half-way
        # Called after each whole epoch with (trainer, record), outside the time budget (a sweep's pruning).
        self.on_epoch: Callable[["Trainer", dict[str, Any]], None] | None = None
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

    @torch.no_grad()
    def validation_terms(self, model: torch.nn.Module, loss: Callable[..., dict[str, torch.Tensor]]) -> dict[str, float]:
        """``loss(images, labels)`` averaged over the validation split as ``val_*`` terms, in chunks of
        at most the training batch (oneDNN reuses the step's kernels; conv-vae-seed000: 8 s
        instead of 13 s at 1,000 a chunk, same losses)."""
        was_training = model.training
        model.eval()
        totals: dict[str, float] = {}
        size = min(VAL_BATCH, self.t.batch_size)
        for chunk, labels in zip(self.x_val.split(size), self.y_val.split(size)):
            with self.autocast():
                terms = loss(chunk, labels)
            for k, v in terms.items():
                totals[k] = totals.get(k, 0.0) + float(v) * len(chunk)
        model.train(was_training)
        return {f"val_{k}": v / len(self.x_val) for k, v in totals.items()}

    # ---------------------------------------------------------------------- helpers
    def _switch(self, value: str) -> bool:
        """A preset's amp/compile setting: off, only on CUDA, or on."""
        return value == "on" or (value == "cuda" and self.device.type == "cuda")

    def parallel(self, method: str) -> Callable:
        """``self.model.<method>`` for training steps: through DistributedDataParallel when distributed."""
        return parallel(self.model, method, self.world, self.device)

    def _check_batch(self, n_train: int) -> None:
        """Refuse batches too small for batch statistics (BatchNorm) before anything is written;
        a training set smaller than a batch is one batch of all of it."""
        batch = min(self.t.batch_size, n_train)
        smallest = 2 * (2 if self.cfg.family == "gan" and self.t.split_real_fake else 1)
        if batch < smallest:
            where = f"--subset {self.opts.subset}" if self.opts.subset else f"{n_train} training image(s)"
            raise MnistgenError(
                f"{where} with batch_size {self.t.batch_size} gives batches of {batch}; {self.cfg.preset} needs at "
                f"least {smallest} images per batch (batch statistics{', split real/fake' if smallest > 2 else ''})")

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.use_amp)

    def maybe_compile(self, fn: Callable) -> Callable:
        """A compiled view of a module or method; parameters are shared, state dicts stay plain."""
        return torch.compile(fn) if self.use_compile else fn

    def optimizer(self, params: Iterator[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
        t = self.t
        if t.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, weight_decay=t.weight_decay)
        # The fused kernel is the same Adam update in one pass over each tensor; on CPU torch would
        # otherwise run ~10 elementwise ops per parameter (0.4 s a step for lstm-vae-seed004's 39M).
        cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=lr, betas=t.betas, weight_decay=t.weight_decay,
                   fused=self.device.type in ("cpu", "cuda"))

    @staticmethod
    def load_optimizer(opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """``opt.load_state_dict`` keeping this run's kernel choice: a checkpoint from before fused
        Adam stores fused=None, which would otherwise switch the resumed run back to the slow loop."""
        kernel = {k: opt.param_groups[0][k] for k in ("fused", "foreach") if k in opt.param_groups[0]}
        opt.load_state_dict({**state, "param_groups": [{**g, **kernel} for g in state["param_groups"]]})

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.average_gradients_by_hand:  # (DDP-wrapped methods average theirs during backward; alone: no-op)
            average_gradients(optimizer, self.world)
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
            "model": plain(self.model.state_dict()),
            "family": self.family_state(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "elapsed": self.elapsed,
            "sums": dict(self.sums),
            "best": self.best,
            "best_of": self.t.keep_best,
            "complete": self.complete,  # derived; stored so a checkpoint tells at a glance
        }

    def load_state(self, state: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.load_family_state(state["family"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"the checkpoint in {self.out} does not fit model {self.cfg.model!r} with "
                                  f"{self.cfg.model_args} ({str(exc).splitlines()[0]})") from None
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.global_step, self.elapsed = state["global_step"], state["elapsed"]
        self.sums = dict(state["sums"])
        # A best kept by another measure (keep_best changed on resume) is no bar: the next measured epoch replaces it.
        self.best = state["best"] if state.get("best_of", "val_loss") == self.t.keep_best else math.inf

    @property
    def epoch_limit(self) -> float:
        """The preset's epochs, or none (until the time is up) for a fill-the-budget run."""
        return math.inf if self.t.fill_budget and self.opts.max_minutes else self.t.epochs

    @property
    def complete(self) -> bool:
        return self.epoch >= self.epoch_limit

    @rank_zero_only
    def save(self, name: str = "last.pt") -> None:
        save_checkpoint(self.out / "checkpoints" / name, self.state())

    # ------------------------------------------------------------------------- logs
    @rank_zero_only
    def _append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                self.writer.add_scalar(key, value, record["epoch"])

    @rank_zero_only
    def _truncate_metrics(self) -> None:
        """On resume, drop records past the checkpoint (they will be written again)."""
        path = self.out / "metrics.jsonl"
        if not path.exists():
            return
        keep = [r for r in read_metrics(path, warn=True) if not r.get("partial") and r["epoch"] <= self.epoch]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))

    @rank_zero_only
    def save_samples(self, name: str) -> Path | None:
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
            if self.world.size > 1:  # the same validation draws on every rank, so schedulers agree
                torch.manual_seed(step_seed(self.opts.seed, 0, self.global_step))
            record.update(self.end_epoch())
        record.update(self.learning_rates())
        record["seconds"] = round(self.elapsed, 3)
        if partial:
            record["partial"] = True
        return record

    # ------------------------------------------------------------------------- run
    def prepare_new_run(self) -> None:
        # The step-0 checkpoint comes first: once it exists the folder is a run that --resume
        # completes (a NaN in the first epoch still leaves a good checkpoint, too).
        self.save()
        self.write_config()
        self.write_model_info()

    @rank_zero_only
    def write_model_info(self) -> None:
        info = model_info(self.model, trainer=type(self), preset=self.cfg.preset)
        info["trainer_lines_of_code"] = self.trainer_lines_of_code()
        atomic_write_text(self.out / "model_info.json", json.dumps(info, indent=2) + "\n")

    @rank_zero_only
    def write_config(self) -> None:
        """config.yaml: every resolved setting (rewritten on resume when settings change)."""
        run = {k: v for k, v in asdict(self.opts).items() if k not in LOCAL_OPTIONS}
        atomic_write_text(self.out / "config.yaml", yaml.safe_dump({**self.cfg.to_dict(), "run": run}, sort_keys=False))

    def trainer_lines_of_code(self) -> int:
        """Logical lines of the shared loop plus this family's trainer (the seeds count training code too)."""
        return sum(lines_of_code(inspect.getsource(m)) for m in trainer_modules(type(self)))

    def resume(self, state: dict[str, Any] | None = None) -> None:
        """Continue from ``state`` (already read by the caller) or from the run's last.pt."""
        if state is None:
            state = load_checkpoint(self.out / "checkpoints" / "last.pt", expect_preset=self.cfg.preset)
        self.load_state(state)
        self._truncate_metrics()
        if not (self.out / "model_info.json").is_file():  # killed right after its step-0 checkpoint
            self.write_model_info()
        if not (self.out / "config.yaml").is_file():
            self.write_config()

    def run(self) -> dict[str, Any]:
        """Train until the epochs or the time budget run out. Ctrl-C, SIGTERM or an error save
        the last completed step first (see :meth:`_stop`)."""
        from torch.utils.tensorboard import SummaryWriter  # slow import: only when training

        self.writer = SummaryWriter(str(self.out / "tensorboard")) if self.world.main else None
        # The budget counts from here: a resumed run gets max_minutes more, not less.
        budget = self.elapsed + self.opts.max_minutes * 60 if self.opts.max_minutes else math.inf
        self.model.train()
        try:
            with StopRequests() as stop:
                stop_reason = self._train(budget, stop)
        except BaseException as exc:
            self._stop(exc)
        finally:
            if self.writer is not None:
                self.writer.close()
        return self.finish(stop_reason)

    def finish(self, stop_reason: str) -> dict[str, Any]:
        """Last checkpoint (if mid-epoch), final grid and summary.json; returns the summary."""
        if self.step_in_epoch:  # stopped mid-epoch; epoch ends were saved by _finish_epoch
            self.save()
        self.save_samples("final.png")
        summary = {
            "preset": self.cfg.preset, "family": self.cfg.family, "device": str(self.device),
            "epochs_completed": self.epoch, "steps": self.global_step,
            "training_seconds": round(self.elapsed, 2), "stop_reason": stop_reason,
            "seconds_per_epoch": round(self.elapsed * len(self.batches) / max(1, self.global_step), 2),
        }
        self.write_summary(summary)
        return summary

    @rank_zero_only
    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=2) + "\n")

    def _train(self, budget: float, stop: "StopRequests") -> str:
        """The epochs and steps; returns why training stopped."""
        kill_after = int(os.environ.get(KILL_ENV, "0"))
        snapshots = sorted(m for m in self.opts.snapshot_minutes if m * 60 > self.elapsed)
        # A bar redraws in place on a terminal; in a log it would print a line per refresh, so
        # there we print one line per epoch instead.
        bars = self.opts.progress and sys.stderr.isatty()
        while self.epoch < self.epoch_limit:
            bar = tqdm(total=len(self.batches), initial=self.step_in_epoch, disable=not bars,
                       desc=f"{self.cfg.preset} epoch {self.epoch + 1}{self._of_epochs()}", leave=False,
                       dynamic_ncols=True, mininterval=0.5)
            out_of_time = False
            for idx in self.batches.epoch(self.epoch, start_step=self.step_in_epoch):
                started = time.perf_counter()
                self._in_step = True
                if self.world.size > 1:  # this rank's share of the global batch, and its own random numbers
                    idx = idx.chunk(self.world.size)[self.world.rank]
                    torch.manual_seed(step_seed(self.opts.seed, self.world.rank, self.global_step))
                terms = mean_over_ranks(self.train_step(self.x_train[idx], self.y_train[idx]), self.world)
                self._check_finite(terms)
                for k, v in terms.items():
                    self.sums[k] = self.sums.get(k, 0.0) + v
                self.step_in_epoch += 1
                self.global_step += 1
                self.elapsed += time.perf_counter() - started
                self._in_step = False
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items()}, refresh=False)
                if self.t.checkpoint_every and self.global_step % self.t.checkpoint_every == 0:
                    self.save()
                while snapshots and self.elapsed >= snapshots[0] * 60:
                    self.save(snapshot_name(snapshots.pop(0)))
                if kill_after and self.global_step == kill_after:
                    os.kill(os.getpid(), signal.Signals[os.environ.get(KILL_SIGNAL_ENV, "SIGKILL")])
                out_of_time = self._agree_to_stop(stop, self.elapsed >= budget)
                if out_of_time:
                    break
            bar.close()
            if out_of_time and self.step_in_epoch < len(self.batches):
                self._append_metrics(self._epoch_record(partial=True))
                return "time budget"
            record = self._finish_epoch()
            if self.opts.progress and not bars and self.world.main:
                print(self._epoch_line(record), flush=True)
            self._agree_to_stop(stop, False)
            if out_of_time:
                return "time budget"
        return "epochs"

    def _agree_to_stop(self, stop: "StopRequests", out_of_time: bool) -> bool:
        """Raise if a stop was requested, return whether the time is up; with several ranks, a request or
        the budget on any rank counts for all, so every rank stops after the same step."""
        stopping, out_of_time = any_rank([stop.signum is not None, out_of_time], self.world)
        if stopping and stop.signum is None:
            stop.signum = signal.SIGTERM
        stop.raise_if_requested()
        return out_of_time

    def _epoch_line(self, record: dict[str, Any]) -> str:
        skip = ("epoch", "step", "seconds", "kl_weight", "lr", "lr_g", "lr_d", "eval_seconds")
        terms = "  ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in skip and isinstance(v, float))
        return f"{self.cfg.preset} epoch {record['epoch']}{self._of_epochs()}: {terms}  ({record['seconds']:.0f} s)"

    def _of_epochs(self) -> str:
        """'/20' after an epoch number, or nothing when the run trains until its time is up."""
        return "" if math.isinf(self.epoch_limit) else f"/{self.t.epochs}"

    def _check_finite(self, terms: dict[str, float]) -> None:
        """The NaN guard: a loss that is NaN or infinite stops the run (training or validation)."""
        bad = [k for k, v in terms.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise TrainingDiverged(f"{', '.join(bad)} became {terms[bad[0]]} at epoch {self.epoch + 1}, step "
                                   f"{self.global_step + 1}; stopped (try a lower learning rate)")

    def last_checkpoint_note(self) -> str:
        path = self.out / "checkpoints" / "last.pt"
        return f"last good checkpoint: {path}" if path.is_file() else "no checkpoint yet"

    def _stop(self, exc: BaseException) -> None:
        """Save the last completed step unless a step was cut half-way (or the weights are bad),
        then raise an error that says what was kept and how to go on."""
        if isinstance(exc, TrainingDiverged):
            raise TrainingDiverged(f"{exc}. {self.last_checkpoint_note().capitalize()}") from None
        saved = ""
        discarded = self.global_step == 0 and self.discard_untrained  # start_run removes the folder
        if discarded:
            saved = f"nothing was trained yet, so {self.out} was removed"
        elif not self._in_step:
            try:
                self.save()
                saved = f"saved epoch {self.epoch}, step {self.global_step} to {self.out / 'checkpoints' / 'last.pt'}"
            except Exception as save_error:  # e.g. the disk is full: say so, keep the old checkpoint
                saved = f"could not save ({save_error.__class__.__name__}: {save_error}); {self.last_checkpoint_note()}"
        note = saved or f"stopped half-way through a step or an epoch's end, not saved; {self.last_checkpoint_note()}"
        if (self.out / "checkpoints" / "last.pt").is_file() and not discarded:
            note += f"; resume with: mnistgen train --resume {self.out}"
        signum = getattr(exc, "signum", None) or (signal.SIGINT if isinstance(exc, KeyboardInterrupt) else None)
        if signum:
            raise TrainingStopped(f"interrupted by {signal.Signals(signum).name}; {note}", signum) from None
        if isinstance(exc, MnistgenError):
            raise exc.__class__(f"{exc}; {note}") from exc
        raise TrainingStopped(f"training failed ({exc.__class__.__name__}: {exc}); {note}") from exc

    def _finish_epoch(self) -> dict[str, Any]:
        self._in_step = True  # until the record is written: a failure before that resumes from the last checkpoint
        started = time.perf_counter()
        record = self._epoch_record(partial=False)
        self._check_finite({k: v for k, v in record.items() if k.startswith("val_")})
        self.elapsed += time.perf_counter() - started
        if self.world.main and self.quality.due(self.epoch + 1):  # not timed: measuring is not training
            record.update(self.quality.measure(self.sampling_model()))
        started = time.perf_counter()
        self.epoch += 1
        self.step_in_epoch = 0
        self.sums = {}
        self._in_step = False
        self._append_metrics(record)
        self.save_samples(f"epoch_{self.epoch:04d}.png")
        self.elapsed += time.perf_counter() - started
        measure = record.get(BEST_KEYS[self.t.keep_best])
        improved = measure is not None and measure < self.best
        if improved:
            self.best = measure
        self.save()
        if improved:
            self.save("best.pt")
        if self.on_epoch is not None:
            self.on_epoch(self, record)
        return record


def warmup_ema(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """EMA update whose decay ramps up as min(decay, (1 + n) / (10 + n)) over the n updates so far.

    A fixed decay of 0.999 keeps 0.999^n of the random initial weights: still a third after
    1,000 steps, which ruins the samples of a short CPU run."""

    def update(ema: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        if not ema[0].is_floating_point():  # e.g. BatchNorm's step counter: just follow the model
            for e, c in zip(ema, current):
                e.copy_(c)
            return
        n = float(n_averaged)
        torch._foreach_lerp_(ema, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return update


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights (and buffers) with warm-up, or None when
    ``decay`` is 0; the trainer updates it after each optimizer step and samples from it."""
    return AveragedModel(model, multi_avg_fn=warmup_ema(decay), use_buffers=True) if decay > 0 else None


def plain(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict with contiguous (NCHW) tensors, as checkpoints had before channels_last."""
    return {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


class StopRequests:
    """Turns Ctrl-C and SIGTERM into a request that the loop honours between steps, so the
    checkpoint it saves is a whole step. A second Ctrl-C stops at once (nothing saved)."""

    def __init__(self, immediate: bool = False) -> None:
        self.signum: int | None = None
        self.immediate = immediate  # raise at once (setting up: nothing worth finishing yet)
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        if self.immediate:
            self.raise_if_requested()

    def raise_if_requested(self) -> None:
        if self.signum:
            raise TrainingStopped(f"interrupted by {signal.Signals(self.signum).name}", self.signum)

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():  # signals only reach the main thread
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


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
