"""The training loop of the flow family (flow matching): one optimizer on the model's regression
loss, a linear learning-rate warm-up and an optional decay to 0 over the run (``lr_decay``), an EMA
of the weights to sample from, and a validation loss on the test split with fixed noise (so epochs
compare on the same draws).

The decay follows the step count over a horizon of planned steps, so a resumed run continues on the
same schedule: the preset's epochs times the steps per epoch, or, for a run that fills a time budget,
an estimate made at each epoch's end from the steps per second so far (stored in checkpoints, and
averaged over the ranks so that every rank uses the same learning rate). Decaying to 0 at the end of
the budget is the schedule that did best under a fixed budget in Li, Yumer and Ramanan 2020
("Budgeted training: rethinking deep neural network training under resource constraints")."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import torch

from ..models import FlowModel
from .distributed import mean_over_ranks
from .loop import Trainer, make_ema, plain

VALIDATION_SEED = 0


class FlowTrainer(Trainer):
    model: FlowModel  # the family this loop trains (make_trainer picks it by the config's family)

    def setup(self) -> None:
        self.estimated_steps = math.inf  # a time budget's steps, once measured (decay_horizon)
        self.opt = self.optimizer(self.model.parameters(), self.t.lr)
        self.ema = make_ema(self.model, self.t.ema_decay)
        self.loss_fn = self.maybe_compile(self.training_loss())

    def training_loss(self) -> Callable[..., dict[str, torch.Tensor]]:
        """What a training step calls: (batch, labels) -> loss terms."""
        return self.parallel("loss")

    def loss_of(self, model: FlowModel) -> Callable[..., dict[str, torch.Tensor]]:
        """The same loss for ``model`` (the EMA's weights, in validation)."""
        return model.loss

    def set_learning_rate(self) -> None:
        """Warm-up and decay by step count, so a resumed run continues on the same schedule."""
        if not (self.t.warmup_steps or self.t.lr_decay != "none"):
            return
        scale = min(1.0, (self.global_step + 1) / self.t.warmup_steps) if self.t.warmup_steps else 1.0
        scale *= decay_factor(self.t.lr_decay, self.global_step / self.decay_horizon())
        for group in self.opt.param_groups:
            group["lr"] = self.t.lr * scale

    def decay_horizon(self) -> float:
        """The steps the decay spreads over: the planned epochs' steps, or the time budget's estimate
        (infinite, no decay yet, until the first epoch has measured the speed)."""
        if math.isfinite(self.epoch_limit):
            return self.epoch_limit * len(self.batches)
        return self.estimated_steps

    def estimate_steps(self) -> None:
        """The steps a run that fills its time budget will make: those done, and the rest at the speed so far."""
        if math.isfinite(self.time_budget) and self.global_step and self.elapsed > 0:
            left = max(0.0, self.time_budget - self.elapsed) * self.global_step / self.elapsed
            self.estimated_steps = mean_over_ranks({"steps": self.global_step + left}, self.world)["steps"]

    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        self.set_learning_rate()
        with self.autocast():
            terms = self.loss_fn(x, labels)
        self.backward_step(terms["loss"], self.opt)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return {k: float(v.detach()) for k, v in terms.items()}

    def end_epoch(self) -> dict[str, float]:
        if self.t.lr_decay != "none":
            self.estimate_steps()
        # Fixed noise and times for every validation; the training random stream is left as it was.
        model = self.sampling_model()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(VALIDATION_SEED)
            return self.validation_terms(model, self.loss_of(model))

    def sampling_model(self) -> FlowModel:
        return cast(FlowModel, self.ema.module) if self.ema is not None else self.model  # the EMA wraps self.model

    def learning_rates(self) -> dict[str, float]:
        return {"lr": self.opt.param_groups[0]["lr"]}

    def family_state(self) -> dict[str, Any]:
        return {"opt": self.opt.state_dict(), "ema": plain(self.ema.state_dict()) if self.ema is not None else None,
                "estimated_steps": self.estimated_steps}

    def load_family_state(self, state: dict[str, Any]) -> None:
        self.load_optimizer(self.opt, state["opt"])
        self.estimated_steps = state.get("estimated_steps", math.inf)  # runs from before lr_decay have none
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])


def decay_factor(shape: str, progress: float) -> float:
    """The learning rate's share left at ``progress`` (0 at the start, 1 at the planned end) of the run."""
    progress = min(max(progress, 0.0), 1.0)
    if shape == "linear":
        return 1.0 - progress
    if shape == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0
