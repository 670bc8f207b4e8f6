"""The training loop of the likelihood family (VAEs): one optimizer on the negative ELBO,
optional KL warm-up, validation on the test split, optional ReduceLROnPlateau."""

from __future__ import annotations

from typing import Any

import torch

from ..models import VAE
from .loop import Trainer


class LikelihoodTrainer(Trainer):
    model: VAE  # the family this loop trains (make_trainer picks it by the config's family)

    def setup(self) -> None:
        self.opt = self.optimizer(self.model.parameters(), self.t.lr)
        self.scheduler = None
        if self.t.plateau_patience > 0:
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.opt, mode="min", factor=self.t.plateau_factor,
                patience=self.t.plateau_patience, min_lr=self.t.plateau_min_lr)
        self.loss_fn = self.maybe_compile(self.parallel("loss"))

    def kl_weight(self) -> float:
        """Seed 000's annealing: beta rises linearly with (fractional) epochs, capped at 1."""
        if self.t.kl_warmup_epochs <= 0:
            return 1.0
        progress = self.epoch + self.step_in_epoch / len(self.batches)
        return min(1.0, progress / self.t.kl_warmup_epochs)

    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        beta = self.kl_weight()
        with self.autocast():
            terms = self.loss_fn(x, beta=beta, labels=labels)
        self.backward_step(terms["loss"], self.opt)
        out = {k: float(v.detach()) for k, v in terms.items()}
        out["kl_weight"] = beta
        return out

    def validation_loss(self) -> dict[str, float]:
        return self.validation_terms(self.model, lambda x, labels: self.model.loss(x, beta=1.0, labels=labels))

    def end_epoch(self) -> dict[str, float]:
        val = self.validation_loss()
        if self.scheduler is not None:
            self.scheduler.step(val["val_loss"])
        return val

    def learning_rates(self) -> dict[str, float]:
        return {"lr": self.opt.param_groups[0]["lr"]}

    def family_state(self) -> dict[str, Any]:
        return {"opt": self.opt.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None}

    def load_family_state(self, state: dict[str, Any]) -> None:
        self.load_optimizer(self.opt, state["opt"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
