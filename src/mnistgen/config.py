"""Presets (YAML files in ``mnistgen/presets``) and command-line overrides.

A preset names a model from the registry, its constructor arguments, and the training
settings below. ``--set key=value`` overrides any of them: ``lr=1e-3`` (training setting),
``model_args.latent_dim=8`` (model argument); values are parsed as YAML scalars.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from .errors import ConfigError
from .models import MODELS

FAMILIES = ("vae", "gan")
GAN_LOSSES = ("bce", "hinge", "wasserstein", "wgan-gp")


@dataclass
class TrainSettings:
    """Every knob of both trainers; each family reads the ones it needs."""

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"  # adam | adamw | rmsprop
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    checkpoint_every: int = 0  # also checkpoint every N steps (0: only at epoch ends)
    # likelihood family
    lr: float = 1e-3
    kl_warmup_epochs: float = 0.0  # KL weight rises linearly from 0 to 1 over these epochs
    plateau_patience: int = 0  # >0: ReduceLROnPlateau on validation loss
    plateau_factor: float = 0.5
    plateau_min_lr: float = 1e-6
    # adversarial family
    loss: str = "bce"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    d_steps: int = 1  # discriminator updates per generator update
    rounds_per_batch: int = 1  # (D, G) rounds on each real batch, same noise (seed 000's loop)
    split_real_fake: bool = False  # D sees half a batch real + half fake (seed 004's loop)
    clip_value: float = 0.01  # critic weight clipping for loss=wasserstein
    gp_weight: float = 10.0  # gradient penalty weight for loss=wgan-gp
    ema_decay: float = 0.0  # >0: sample from an exponential moving average of G


@dataclass
class Config:
    preset: str
    family: str
    model: str
    model_args: dict[str, Any] = field(default_factory=dict)
    train: TrainSettings = field(default_factory=TrainSettings)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["train"]["betas"] = list(self.train.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        d = dict(d)
        train = dict(d.pop("train", {}) or {})
        unknown = sorted(set(train) - {f.name for f in dataclasses.fields(TrainSettings)})
        if unknown:
            raise ConfigError(f"unknown training setting(s) {', '.join(unknown)}; valid: {', '.join(train_keys())}")
        if "betas" in train:
            train["betas"] = tuple(float(b) for b in train["betas"])
        unknown_top = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown_top:
            raise ConfigError(f"unknown preset field(s) {', '.join(unknown_top)}")
        cfg = cls(**d, train=TrainSettings(**train))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"family must be one of {', '.join(FAMILIES)}, not {self.family!r}")
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; known: {', '.join(sorted(MODELS))}")
        if MODELS[self.model].family != self.family:
            raise ConfigError(f"model {self.model!r} is a {MODELS[self.model].family}, preset says {self.family}")
        t = self.train
        if t.loss not in GAN_LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(GAN_LOSSES)}, not {t.loss!r}")
        if t.optimizer not in ("adam", "adamw", "rmsprop"):
            raise ConfigError(f"optimizer must be adam, adamw or rmsprop, not {t.optimizer!r}")
        for name in ("epochs", "batch_size", "d_steps", "rounds_per_batch"):
            if not isinstance(getattr(t, name), int) or getattr(t, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, not {getattr(t, name)!r}")
        for name in ("lr", "lr_g", "lr_d"):
            if not isinstance(getattr(t, name), (int, float)) or getattr(t, name) <= 0:
                raise ConfigError(f"{name} must be a positive number, not {getattr(t, name)!r}")


def train_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainSettings)]


def preset_names() -> list[str]:
    files = resources.files("mnistgen") / "presets"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> Config:
    names = preset_names()
    if name not in names:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(names)}")
    text = (resources.files("mnistgen") / "presets" / f"{name}.yaml").read_text()
    data = yaml.safe_load(text)
    data["preset"] = name
    return Config.from_dict(data)


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Return a copy of ``cfg`` with ``key=value`` overrides applied and validated."""
    d = cfg.to_dict()
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. lr=1e-3)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: cannot parse value ({exc.problem})") from exc
        if key.startswith("model_args."):
            d["model_args"][key.split(".", 1)[1]] = value
            continue
        key = key.removeprefix("train.")
        if key not in d["train"]:
            raise ConfigError(
                f"unknown setting {key!r}; valid: {', '.join(train_keys())}, or model_args.NAME"
            )
        default = d["train"][key]
        if isinstance(default, float) and not isinstance(value, bool):
            # YAML 1.1 reads "1e-3" (no dot) as a string; users write it that way.
            try:
                value = float(value)
            except (TypeError, ValueError):
                pass
        if isinstance(default, bool) != isinstance(value, bool) or (
            not isinstance(default, (list, bool)) and not isinstance(value, type(default))
        ):
            raise ConfigError(f"override {item!r}: expected a {type(default).__name__}")
        d["train"][key] = value
    return Config.from_dict(d)
