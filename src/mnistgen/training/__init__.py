"""One training loop per family; ``make_trainer`` picks it from the preset's family."""

from __future__ import annotations

from ..config import Config
from .adversarial import AdversarialTrainer
from .likelihood import LikelihoodTrainer
from .loop import RunOptions, Trainer, resolve_device

TRAINERS: dict[str, type[Trainer]] = {"vae": LikelihoodTrainer, "gan": AdversarialTrainer}


def make_trainer(cfg: Config, opts: RunOptions) -> Trainer:
    return TRAINERS[cfg.family](cfg, opts)


__all__ = ["RunOptions", "Trainer", "make_trainer", "resolve_device", "TRAINERS"]
