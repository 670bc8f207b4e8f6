"""What a family trainer (``likelihood.py``, ``adversarial.py``, ``flow.py``) writes, and the tools it
writes it with. It implements the hooks (``setup``, ``train_step``, ``end_epoch``, ``family_state``,
``load_family_state``, ``sampling_model``, ``learning_rates``); its steps use the tools (``optimizer``,
``autocast``, ``maybe_compile``, ``backward_step``, ``parallel``, ``validation_terms``), so that fused
optimizers, mixed precision, compilation and data-parallel training work alike in every family.
The loop that calls the hooks is :class:`mnistgen.training.loop.Trainer`, which sets the attributes
below before it calls ``setup``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..config import Config, TrainSettings
from ..data import InMemoryBatches, cache_dir
from ..models.base import DigitModel
from .distributed import World, any_rank, average_gradients, parallel
from .precision import remembered_auto

VAL_BATCH = 1000  # largest validation chunk


class FamilyTrainer:
    """The hooks a family implements and the tools its steps use."""

    # Set by the loop (loop.Trainer.__init__) before it calls setup():
    cfg: Config
    t: TrainSettings
    model: DigitModel
    device: torch.device
    world: World
    x_val: torch.Tensor
    y_val: torch.Tensor
    batches: InMemoryBatches  # of training indices; len() is the steps per epoch
    epoch: int  # epochs completed
    step_in_epoch: int
    global_step: int
    # Distributed: gradients averaged in backward_step, not by DDP (a family whose steps DDP cannot wrap).
    average_gradients_by_hand = False

    # ------------------------------------------------------------------ the hooks
    def setup(self) -> None:
        """Optimizers, EMA, compiled views: whatever ``train_step`` needs."""
        raise NotImplementedError

    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One optimisation step on a batch of images and their digit labels; returns its loss terms."""
        raise NotImplementedError

    def end_epoch(self) -> dict[str, float]:
        """Validation, schedulers; returns extra metrics for the epoch's record."""
        return {}

    def family_state(self) -> dict[str, Any]:
        """What a checkpoint needs besides the model's weights (optimizers, schedulers, EMA)."""
        raise NotImplementedError

    def load_family_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def sampling_model(self) -> DigitModel:
        """The weights samples, grids and scores come from (an EMA where the family keeps one)."""
        return self.model

    def learning_rates(self) -> dict[str, float]:
        return {}

    # ------------------------------------------------------------------ the tools
    def init_tools(self) -> None:
        """Mixed precision and compilation as the preset asks (``amp: auto``: see ``precision.py``), and
        fp16's loss scaler (CUDA only)."""
        self.use_amp = self._auto_amp() if self.t.amp == "auto" else self._switch(self.t.amp)
        self.use_compile = self._switch(self.t.compile)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.device.type == "cuda")

    def _auto_amp(self) -> bool:
        """``amp: auto``'s decision for this model here, rank 0's on every rank (they must train alike)."""
        decision = remembered_auto(self.model, self.device, cache_dir()) if self.world.main else False
        return any_rank([decision], self.world)[0]

    def _switch(self, value: str) -> bool:
        """A preset's amp/compile setting: off, only on CUDA, or on."""
        return value == "on" or (value == "cuda" and self.device.type == "cuda")

    def optimizer(self, params: Iterator[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
        """The preset's optimizer (``optimizer``, ``betas``, ``weight_decay``) over ``params``."""
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

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.use_amp)

    def maybe_compile(self, fn: Callable) -> Callable:
        """A compiled view of a module or method; parameters are shared, state dicts stay plain."""
        return torch.compile(fn) if self.use_compile else fn

    def parallel(self, method: str) -> Callable:
        """``self.model.<method>`` for training steps: through DistributedDataParallel when distributed."""
        return parallel(self.model, method, self.world, self.device)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.average_gradients_by_hand:  # (DDP-wrapped methods average theirs during backward; alone: no-op)
            average_gradients(optimizer, self.world)
        if self.t.grad_clip > 0:
            self.scaler.unscale_(optimizer)  # clip the true gradients, not fp16's scaled ones
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.t.grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()

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
