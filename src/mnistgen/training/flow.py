"""The training loop of the flow family (flow matching): one optimizer on the model's regression
loss, a linear learning-rate warm-up, an EMA of the weights to sample from, and a validation loss
on the test split with fixed noise (so epochs compare on the same draws)."""

from __future__ import annotations

from typing import Any, cast

import torch

from ..models import FlowModel
from .loop import Trainer, make_ema, plain

VALIDATION_SEED = 0


class FlowTrainer(Trainer):
    model: FlowModel  # the family this loop trains (make_trainer picks it by the config's family)

    def setup(self) -> None:
        self.opt = self.optimizer(self.model.parameters(), self.t.lr)
        self.ema = make_ema(self.model, self.t.ema_decay)
        self.loss_fn = self.maybe_compile(self.parallel("loss"))

    def set_learning_rate(self) -> None:
        """Warm-up by step count, so a resumed run continues on the same schedule."""
        if self.t.warmup_steps:
            scale = min(1.0, (self.global_step + 1) / self.t.warmup_steps)
            for group in self.opt.param_groups:
                group["lr"] = self.t.lr * scale

    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        self.set_learning_rate()
        with self.autocast():
            terms = self.loss_fn(x, labels)
        self.backward_step(terms["loss"], self.opt)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return {k: float(v.detach()) for k, v in terms.items()}

    def end_epoch(self) -> dict[str, float]:
        # Fixed noise and times for every validation; the training random stream is left as it was.
        model = self.sampling_model()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(VALIDATION_SEED)
            return self.validation_terms(model, lambda x, labels: model.loss(x, labels))

    def sampling_model(self) -> FlowModel:
        return cast(FlowModel, self.ema.module) if self.ema is not None else self.model  # the EMA wraps self.model

    def learning_rates(self) -> dict[str, float]:
        return {"lr": self.opt.param_groups[0]["lr"]}

    def family_state(self) -> dict[str, Any]:
        return {"opt": self.opt.state_dict(), "ema": plain(self.ema.state_dict()) if self.ema is not None else None}

    def load_family_state(self, state: dict[str, Any]) -> None:
        self.load_optimizer(self.opt, state["opt"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
