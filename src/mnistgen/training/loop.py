"""The training loop every family shares: epochs and steps, the time budget, full-state checkpoints
and exact resume. A family trainer (``likelihood.py``, ``adversarial.py``, ``flow.py``) supplies only
what differs: its optimizers, one training step, the end-of-epoch work, and which weights to sample from.

Beside it: ``family.py`` (the hooks a family implements, the tools its steps use), ``data.py``
(what a run trains on), ``runwriter.py`` (every file of the run folder),
``stopping.py`` (signals, the NaN guard, the time budget, the error that ends a stopped run) and
``quality.py`` (sample scores during training).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from ..checkpoint import load_checkpoint
from ..config import Config
from ..data import InMemoryBatches
from ..errors import CheckpointError, MnistgenError
from ..modelinfo import model_info
from ..models import build_model
from ..models.base import DigitModel
from .data import check_batches, load_split, on_device
from .distributed import World, broadcast_parameters, join, mean_over_ranks, step_seed, world_from_env
from .family import FamilyTrainer
from .quality import BEST_KEYS, QualityProbe, check_quality_settings
from .runwriter import RunWriter
from .stopping import StopRequests, agree_to_stop, check_finite, end_stopped_run


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


def process_device(name: str, world: World) -> torch.device:
    """This process's device: with several processes on CUDA, one GPU each (shared round-robin only
    where there are fewer GPUs than processes)."""
    device = resolve_device(name)
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def place_model(model: DigitModel, device: torch.device) -> DigitModel:
    model = model.to(device)
    if getattr(model, "channels_last", False):
        # oneDNN's convolutions run NHWC natively: no layout reorders around every conv
        # (benchmarks/results/profile-faithful-presets-2026-11-25-cpu.md). Checkpoints stay plain (state()).
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # Module.to takes it; the stubs omit it
    return model


class Trainer(FamilyTrainer):
    """The loop. A family's trainer subclasses it and implements the hooks of :class:`FamilyTrainer`."""

    discard_untrained = False  # a new run stopped before its first step is removed (start_run)

    def __init__(self, cfg: Config, opts: RunOptions, model: DigitModel | None = None):
        self.cfg, self.t = cfg, cfg.train
        self.out = Path(opts.out)
        self.world = world_from_env()
        self.device = process_device(opts.device, self.world)
        self.opts = opts = replace(opts, world_size=self.world.size)
        torch.manual_seed(opts.seed)
        self.model = place_model(model or build_model(cfg.model, **cfg.model_args), self.device)
        mnist = load_split(opts.data, opts.subset, opts.write_cache)
        check_batches(cfg, len(mnist.x_train), opts.subset, self.world.size)
        check_quality_settings(self.t)
        if self.world.size > 1:
            join(self.world, self.device)
            broadcast_parameters(self.model, self.world)
        self.x_train, self.y_train, self.x_val, self.y_val = on_device(mnist, self.model.data_range, self.device)
        # Batches of indices, so that images and their labels are sliced alike.
        self.batches = InMemoryBatches(torch.arange(len(self.x_train), device=self.device), self.t.batch_size,
                                       seed=opts.seed)
        self.writer = RunWriter(self.out, self.world.main, self.model, opts.seed, self.device)
        self.quality = QualityProbe(self.t.eval_every, self.t.eval_n, opts.data, self.device)
        self.init_tools()
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.elapsed = 0.0
        self.time_budget = math.inf  # the elapsed seconds at which this session's budget ends (set by run)
        self.sums: dict[str, float] = {}
        self.best = math.inf
        self.mid_step = False  # True while a step (or an epoch's end) has changed state half-way
        # Called after each whole epoch with (trainer, record), outside the time budget (a sweep's pruning).
        self.on_epoch: Callable[[Trainer, dict[str, Any]], None] | None = None
        # Called after each whole step with the trainer (the tests' kill switch: stopping.kill_switch_from_env).
        self.step_hooks: list[Callable[[Trainer], None]] = []
        self.setup()

    # ------------------------------------------------------------------- checkpoints
    def state(self) -> dict[str, Any]:
        return {
            "config": self.cfg.to_dict(),
            "run": {k: v for k, v in asdict(self.opts).items() if k not in (*LOCAL_OPTIONS, "out")},
            "model": plain(self.model.state_dict()),
            "family": self.family_state(),
            "scaler": self.scaler.state_dict(),
            "rng": random_state(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "elapsed": self.elapsed,
            "sums": dict(self.sums),
            "best": self.best,
            "best_of": self.t.keep_best,
            "mixed_precision": self.use_amp,  # what amp: auto chose at the start; a resume keeps it
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
        if self.t.amp == "auto" and "mixed_precision" in state:  # auto's bf16 is a CPU choice (CUDA: off)
            self.use_amp = state["mixed_precision"] and self.device.type == "cpu"
        restore_random_state(state["rng"])
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

    def save(self, name: str = "last.pt") -> None:
        self.writer.save_checkpoint(self.state, name)

    # --------------------------------------------------------------------- the run
    def prepare_new_run(self) -> None:
        # The step-0 checkpoint comes first: once it exists the folder is a run that --resume
        # completes (a NaN in the first epoch still leaves a good checkpoint, too).
        self.save()
        self.write_config()
        self.write_model_info()

    def write_config(self) -> None:
        self.writer.write_config(self.cfg, {k: v for k, v in asdict(self.opts).items() if k not in LOCAL_OPTIONS})

    def write_model_info(self) -> None:
        if self.world.main:
            self.writer.write_model_info(model_info(self.model, trainer=type(self), preset=self.cfg.preset))

    def resume(self, state: dict[str, Any] | None = None) -> None:
        """Continue from ``state`` (already read by the caller) or from the run's last.pt."""
        if state is None:
            state = load_checkpoint(self.writer.last_checkpoint, expect_preset=self.cfg.preset)
        self.load_state(state)
        self.writer.truncate_metrics(self.epoch)
        if not (self.out / "model_info.json").is_file():  # killed right after its step-0 checkpoint
            self.write_model_info()
        if not (self.out / "config.yaml").is_file():
            self.write_config()

    def run(self) -> dict[str, Any]:
        """Train until the epochs or the time budget run out. Ctrl-C, SIGTERM or an error save
        the last completed step first (see :meth:`_stop`)."""
        # The budget counts from here: a resumed run gets max_minutes more, not less.
        budget = self.elapsed + self.opts.max_minutes * 60 if self.opts.max_minutes else math.inf
        self.time_budget = budget  # the families' schedules may plan by it (flow's lr_decay)
        self.model.train()
        try:
            with self.writer.logging(), StopRequests() as stop:
                stop_reason = self._train(budget, stop)
        except BaseException as exc:
            self._stop(exc)
        return self.finish(stop_reason)

    def finish(self, stop_reason: str) -> dict[str, Any]:
        """Last checkpoint (if mid-epoch), final grid and summary.json; returns the summary."""
        if self.step_in_epoch:  # stopped mid-epoch; epoch ends were saved by _finish_epoch
            self.save()
        self.writer.save_samples(self.sampling_model(), "final.png")
        summary = {
            "preset": self.cfg.preset, "family": self.cfg.family, "device": str(self.device),
            "mixed_precision": self.use_amp, "epochs_completed": self.epoch, "steps": self.global_step,
            "training_seconds": round(self.elapsed, 2), "stop_reason": stop_reason,
            "seconds_per_epoch": round(self.elapsed * len(self.batches) / max(1, self.global_step), 2),
        }
        self.writer.write_summary(summary)
        return summary

    def _train(self, budget: float, stop: StopRequests) -> str:
        """The epochs; returns why training stopped."""
        snapshots = sorted(m for m in self.opts.snapshot_minutes if m * 60 > self.elapsed)
        # A bar redraws in place on a terminal; in a log it would print a line per refresh, so
        # there we print one line per epoch instead.
        bars = self.opts.progress and sys.stderr.isatty()
        while self.epoch < self.epoch_limit:
            out_of_time = self._train_epoch(budget, stop, snapshots, bars)
            if out_of_time and self.step_in_epoch < len(self.batches):
                self.writer.append_metrics(self._epoch_record(partial=True))
                return "time budget"
            record = self._finish_epoch()
            if self.opts.progress and not bars:
                self.writer.print_epoch(f"{self.cfg.preset} epoch {record['epoch']}{self._of_epochs()}", record)
            agree_to_stop(stop, False, self.world)
            if out_of_time:
                return "time budget"
        return "epochs"

    def _train_epoch(self, budget: float, stop: StopRequests, snapshots: list[float], bars: bool) -> bool:
        """The steps left in this epoch; returns whether the time is up."""
        with tqdm(total=len(self.batches), initial=self.step_in_epoch, disable=not bars, leave=False,
                  desc=f"{self.cfg.preset} epoch {self.epoch + 1}{self._of_epochs()}", dynamic_ncols=True,
                  mininterval=0.5) as bar:
            for idx in self.batches.epoch(self.epoch, start_step=self.step_in_epoch):
                terms = self._step(idx)
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items()}, refresh=False)
                self._after_step(snapshots)
                if agree_to_stop(stop, self.elapsed >= budget, self.world):
                    return True
        return False

    def _step(self, idx: torch.Tensor) -> dict[str, float]:
        """One training step on the batch of indices ``idx``, its losses checked by the NaN guard."""
        started = time.perf_counter()
        self.mid_step = True
        if self.world.size > 1:  # this rank's share of the global batch, and its own random numbers
            idx = idx.chunk(self.world.size)[self.world.rank]
            torch.manual_seed(step_seed(self.opts.seed, self.world.rank, self.global_step))
        terms = mean_over_ranks(self.train_step(self.x_train[idx], self.y_train[idx]), self.world)
        check_finite(terms, self.epoch + 1, self.global_step + 1)
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.step_in_epoch += 1
        self.global_step += 1
        self.elapsed += time.perf_counter() - started
        self.mid_step = False
        return terms

    def _after_step(self, snapshots: list[float]) -> None:
        """The checkpoints due (every checkpoint_every steps, the time snapshots), then the step hooks."""
        if self.t.checkpoint_every and self.global_step % self.t.checkpoint_every == 0:
            self.save()
        while snapshots and self.elapsed >= snapshots[0] * 60:
            self.save(snapshot_name(snapshots.pop(0)))
        for hook in self.step_hooks:
            hook(self)

    def _finish_epoch(self) -> dict[str, Any]:
        """The epoch's record (validation, scores when due) and grid, its checkpoint, best.pt if better."""
        self.mid_step = True  # until the record is written: a failure before that resumes from the last checkpoint
        started = time.perf_counter()
        record = self._epoch_record(partial=False)
        check_finite({k: v for k, v in record.items() if k.startswith("val_")}, self.epoch + 1, self.global_step + 1)
        self.elapsed += time.perf_counter() - started
        if self.world.main and self.quality.due(self.epoch + 1):  # not timed: measuring is not training
            record.update(self.quality.measure(self.sampling_model()))
        started = time.perf_counter()
        self.epoch, self.step_in_epoch, self.sums = self.epoch + 1, 0, {}
        self.mid_step = False
        self.writer.append_metrics(record)
        self.writer.save_samples(self.sampling_model(), f"epoch_{self.epoch:04d}.png")
        self.elapsed += time.perf_counter() - started
        key = BEST_KEYS[self.t.keep_best]
        measure = record.get(key, math.inf) if key else math.inf  # an epoch without the measure is no better
        improved = measure < self.best
        if improved:
            self.best = measure
        self.save()
        if improved:
            self.save("best.pt")
        if self.on_epoch is not None:
            self.on_epoch(self, record)
        return record

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

    def _of_epochs(self) -> str:
        """'/20' after an epoch number, or nothing when the run trains until its time is up."""
        return "" if math.isinf(self.epoch_limit) else f"/{self.t.epochs}"

    def _stop(self, exc: BaseException) -> NoReturn:
        end_stopped_run(self, exc)

def random_state() -> dict[str, Any]:
    """The generators' states, so a resumed run draws the numbers the uninterrupted one would."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_random_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


Tensors = tuple[torch.Tensor, ...] | list[torch.Tensor]


def warmup_ema(decay: float) -> Callable[[Tensors, Tensors, torch.Tensor | int], None]:
    """EMA update whose decay ramps up as min(decay, (1 + n) / (10 + n)) over the n updates so far.

    A fixed decay of 0.999 keeps 0.999^n of the random initial weights: still a third after
    1,000 steps, which ruins the samples of a short CPU run."""

    def update(ema: Tensors, current: Tensors, n_averaged: torch.Tensor | int) -> None:
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
