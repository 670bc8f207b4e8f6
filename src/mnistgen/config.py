"""Presets (YAML files in ``mnistgen/presets``), command-line overrides, and the one schema
that every configuration value is checked against.

A preset names a model from the registry, its constructor arguments, and the training
settings below. ``--set key=value`` overrides any of them: ``lr=1e-3`` (training setting),
``model_args.latent_dim=8`` (model argument); values are parsed as YAML scalars.

Each setting carries a :class:`Rule` (type and allowed range). Presets, overrides, stored run
configs and the CLI's numeric options are all checked by these rules, so a bad value is
refused in one place with one message: the option, the value, and what is allowed.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

# This module imports no torch: the CLI's help, its option checks and `mnistgen presets` use it
# and start in a fraction of a second. The model registry is imported where a model is needed.
FAMILIES = ("vae", "gan", "flow")
SAMPLERS = ("euler", "heun")  # how a flow model integrates its ODE (models/flow_matching.py)
TIME_DISTRIBUTIONS = ("uniform", "logit-normal")
TARGETS = ("velocity", "data")
DISTILL_LOSSES = ("mse", "pseudo-huber")
GAN_LOSSES = ("bce", "hinge", "wasserstein", "wgan-gp")
SWITCH = ("off", "cuda", "on")  # amp / compile: never, only on a CUDA device, everywhere
# amp also takes "auto": on only on a CPU with native bfloat16 that measures faster (training/precision.py)
AMP_CHOICES = (*SWITCH, "auto")
LR_DECAYS = ("none", "linear", "cosine")  # the flow family's learning rate over the run (training/flow.py)
KEEP_BEST = ("val_loss", "fid", "none")  # what checkpoints/best.pt is the best epoch by


@dataclass(frozen=True)
class Rule:
    """What one setting may hold: a type, and for numbers an interval (``low``/``high``
    inclusive unless marked open), for strings a set of choices."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    pair: bool = False  # two numbers, each following the rule (Adam's betas)

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            return "text"
        what = "a whole number" if self.kind is int else "a finite number"
        if self.low is not None and self.high is not None:
            what += (f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                     f"{')' if self.high_open else ']'}")
        elif self.low is not None:
            what += f" {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            what += f" {'<' if self.high_open else '<='} {self.high:g}"
        return f"two numbers [a, b], each {what}" if self.pair else what

    def coerce(self, value: Any) -> Any:
        """``value`` converted to the rule's type, or ValueError when it does not fit."""
        if self.pair:
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise ValueError
            item = dataclasses.replace(self, pair=False)
            return tuple(item.coerce(v) for v in value)
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError
            return value
        if self.kind is str:
            if isinstance(value, bool) and {"on", "off"} <= set(self.choices):
                value = "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise ValueError
            return value
        if isinstance(value, bool):
            raise ValueError
        if self.kind is int:
            if not isinstance(value, int) or (self.choices and value not in self.choices):
                raise ValueError
        else:
            if isinstance(value, str):
                value = float(value)  # YAML 1.1 reads "1e-3" (no dot) as a string
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError
            value = float(value)
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise ValueError
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise ValueError
        return value

    def check(self, name: str, value: Any) -> Any:
        """The coerced value, or a ConfigError that names the setting, the value and the rule."""
        try:
            return self.coerce(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be {self.describe()}, not {value!r}") from None


POSITIVE_INT = Rule(int, low=1)
SIZE = Rule(int, low=1, high=4096)  # a layer width or latent size; beyond this a laptop runs out of memory
COUNT = Rule(int, low=0)
POSITIVE = Rule(float, low=0, low_open=True)
NON_NEGATIVE = Rule(float, low=0)
FRACTION = Rule(float, low=0, high=1, high_open=True)  # [0, 1): dropout, EMA decay, betas


def setting(default: Any, rule: Rule, **kw: Any) -> Any:
    return field(default=default, metadata={"rule": rule}, **kw)


@dataclass
class TrainSettings:
    """Every knob of the trainers; each family reads the ones it needs."""

    epochs: int = setting(10, POSITIVE_INT)
    # With --max-minutes and no explicit epoch count, train until the time is up (our defaults).
    fill_budget: bool = setting(False, Rule(bool))
    batch_size: int = setting(128, Rule(int, low=1, high=65536))
    optimizer: str = setting("adam", Rule(str, choices=("adam", "adamw", "rmsprop")))
    betas: tuple[float, float] = setting((0.9, 0.999), dataclasses.replace(FRACTION, pair=True))
    weight_decay: float = setting(0.0, NON_NEGATIVE)
    checkpoint_every: int = setting(0, COUNT)  # also checkpoint every N steps (0: only at epoch ends)
    amp: str = setting("auto", Rule(str, choices=AMP_CHOICES))  # mixed precision; --amp forces it on
    compile: str = setting("off", Rule(str, choices=SWITCH))  # torch.compile; --compile forces it on
    # likelihood and flow families
    lr: float = setting(1e-3, POSITIVE)
    warmup_steps: int = setting(0, COUNT)  # lr rises linearly from 0 over the first N steps (flow family)
    # flow family: lr falls to 0 over the run (its epochs, or with --minutes and fill_budget its time budget)
    lr_decay: str = setting("none", Rule(str, choices=LR_DECAYS))
    grad_clip: float = setting(0.0, NON_NEGATIVE)  # >0: clip the gradients' global norm to this (0: never)
    kl_warmup_epochs: float = setting(0.0, NON_NEGATIVE)  # KL weight rises linearly from 0 to 1
    plateau_patience: int = setting(0, COUNT)  # >0: ReduceLROnPlateau on validation loss
    plateau_factor: float = setting(0.5, Rule(float, low=0, high=1, low_open=True, high_open=True))
    plateau_min_lr: float = setting(1e-6, NON_NEGATIVE)
    # adversarial family
    loss: str = setting("bce", Rule(str, choices=GAN_LOSSES))
    lr_g: float = setting(2e-4, POSITIVE)
    lr_d: float = setting(2e-4, POSITIVE)
    d_steps: int = setting(1, POSITIVE_INT)  # discriminator updates per generator update
    rounds_per_batch: int = setting(1, POSITIVE_INT)  # (D, G) rounds on each real batch (seed 000)
    split_real_fake: bool = setting(False, Rule(bool))  # D sees half real + half fake (seed 004)
    clip_value: float = setting(0.01, NON_NEGATIVE)  # critic weight clipping for loss=wasserstein (0: none)
    gp_weight: float = setting(10.0, NON_NEGATIVE)  # gradient penalty weight for loss=wgan-gp
    # adversarial and flow families
    ema_decay: float = setting(0.0, FRACTION)  # >0: sample from an exponential moving average of the weights
    # meanflow: a new run starts from a trained flow_matching network (a run folder, a checkpoint, or
    # pretrained:NAME); "" starts from scratch. A resumed run keeps its own weights.
    init_from: str = setting("", Rule(str))
    # flow_matching: a new run learns to draw in one step what this trained flow (a run folder, a checkpoint,
    # or pretrained:NAME) draws in its steps, from its weights and its digits (training/distill.py); "": off.
    distill_from: str = setting("", Rule(str))
    # with distill_from: the student's distance to the teacher's digit, and the share of its draws that
    # start on the straight noise-to-digit line at a uniform t > 0 instead of at the noise (reflow)
    distill_loss: str = setting("mse", Rule(str, choices=DISTILL_LOSSES))
    distill_path_share: float = setting(0.0, FRACTION)
    # quality during training (every family): score eval_n samples every eval_every epochs (0: never)
    eval_every: int = setting(0, COUNT)
    eval_n: int = setting(1000, Rule(int, low=2, high=100_000))  # 2: the fewest FID can be computed on
    # checkpoints/best.pt: the epoch with the lowest val_loss (VAE, flow) or FID (needs eval_every), or none
    keep_best: str = setting("val_loss", Rule(str, choices=KEEP_BEST))


TRAIN_RULES: dict[str, Rule] = {f.name: f.metadata["rule"] for f in dataclasses.fields(TrainSettings)}

# Constructor arguments of the registered models, by name (the same name means the same thing
# in every model). A model argument missing here is refused until it gets a rule.
MODEL_ARG_RULES: dict[str, Rule] = {
    "latent_dim": SIZE,
    "hidden": SIZE,
    "width": SIZE,
    "g_width": SIZE,
    "d_width": SIZE,
    "num_classes": Rule(int, choices=(0, 10)),  # unconditional, or one class per digit
    "dropout": FRACTION,
    "temperature": POSITIVE,
    "d_norm": Rule(str, choices=("batch", "spectral", "none")),
    "loss_reduction": Rule(str, choices=("sum", "mean")),
    "d_sigmoid": Rule(bool),
    # flow family
    "blocks": Rule(int, low=1, high=8),  # residual blocks per UNet level
    "attention": Rule(bool),  # self-attention at 7x7
    "patch": Rule(int, choices=(1, 2)),  # UNet on 28x28 pixels, or on 14x14 patches of 2x2
    "label_dropout": FRACTION,  # share of "no digit" labels in training (classifier-free guidance)
    "time_distribution": Rule(str, choices=TIME_DISTRIBUTIONS),
    "target": Rule(str, choices=TARGETS),  # what the flow network predicts: the velocity, or the clean digit
    "steps": Rule(int, low=1, high=1000),  # sampling steps
    "sampler": Rule(str, choices=SAMPLERS),
    "guidance": Rule(float, low=0, high=20),  # classifier-free guidance weight (0: none)
    "bf16_sampling": Rule(bool),  # sample under bf16 autocast on a CPU with native bf16
    # meanflow
    "train_guidance": Rule(float, low=0, high=20),  # guidance weight folded into the training target
    "interval_share": Rule(float, low=0, high=1),  # share of training draws with r != t
    "adaptive_power": Rule(float, low=0, high=2),  # p of the loss weight 1 / (error + c)^p (0: plain MSE)
}


def model_defaults(model: str) -> dict[str, Any]:
    """The constructor's arguments with their defaults (``inspect.Parameter.empty`` if none)."""
    from .models import model_class

    params = inspect.signature(model_class(model).__init__).parameters
    return {name: p.default for name, p in params.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def is_custom(model: str) -> bool:
    """A model named ``module:Class`` (the user's own) rather than a registry name."""
    return ":" in model


PLAIN = (bool, int, float, str)


def check_custom_arg(model: str, name: str, value: Any) -> Any:
    """A constructor argument of the user's own model: a plain value (or a list of them), since the
    run stores it in config.yaml and rebuilds the model from it on resume."""
    if isinstance(value, PLAIN) or value is None or (
            isinstance(value, (list, tuple)) and all(isinstance(v, PLAIN) for v in value)):
        return list(value) if isinstance(value, tuple) else value
    raise ConfigError(f"model_args.{name} of {model} must be a number, string, boolean or a list of them "
                      f"(mnistgen stores it to rebuild the model), not {type(value).__name__}")


@dataclass
class Config:
    preset: str
    family: str
    model: str
    model_args: dict[str, Any] = field(default_factory=dict)
    train: TrainSettings = field(default_factory=TrainSettings)
    description: str = ""  # where the preset comes from and why it is as it is
    summary: str = ""  # one short line for listings

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["train"]["betas"] = list(self.train.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Check every value against the schema. Model arguments are completed with the
        constructor's defaults, so a stored config still means the same model after a default
        changes in a later version."""
        d = dict(d)
        unknown_top = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown_top:
            raise ConfigError(f"unknown preset field(s) {', '.join(unknown_top)}")
        train = dict(d.pop("train", None) or {})
        unknown = sorted(set(train) - set(TRAIN_RULES))
        if unknown:
            raise ConfigError(f"unknown training setting(s) {', '.join(unknown)}; valid: {', '.join(TRAIN_RULES)}")
        train = {k: TRAIN_RULES[k].check(k, v) for k, v in train.items()}
        family, model = d.get("family"), d.get("model")
        if family not in FAMILIES:
            raise ConfigError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
        from .models import model_class

        if not isinstance(model, str):
            raise ConfigError(f"model must be a registry name or module:Class, not {model!r}")
        if model_class(model).family != family:
            raise ConfigError(f"model {model!r} is a {model_class(model).family}, preset says {family}")
        d["model_args"] = resolve_model_args(model, d.get("model_args") or {})
        if train.get("init_from") and model != "meanflow":  # a warm start only the one-step flow knows
            raise ConfigError(f"init_from applies to MeanFlow (model meanflow, e.g. preset meanflow); "
                              f"model {model!r} would ignore it")
        if train.get("distill_from") and model != "flow_matching":
            raise ConfigError(f"distill_from applies to model flow_matching (e.g. preset flow-1step); "
                              f"model {model!r} would ignore it")
        distilling = [k for k in ("distill_loss", "distill_path_share") if k in train
                      and train[k] != getattr(TrainSettings, k)]  # (the class attribute is the default)
        if distilling and not train.get("distill_from"):
            raise ConfigError(f"{distilling[0]} applies to a distilled flow (distill_from, e.g. preset flow-1step); "
                              f"this run distils nothing")
        return cls(**d, train=TrainSettings(**train))


def resolve_model_args(model: str, given: dict[str, Any]) -> dict[str, Any]:
    defaults = model_defaults(model)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"model {model!r} takes no argument {', '.join(unknown)}; "
                          f"its arguments: {', '.join(defaults)}")
    args = {**defaults, **given}
    missing = [name for name, value in args.items() if value is inspect.Parameter.empty]
    if missing:
        raise ConfigError(f"model {model!r} needs model_args {', '.join(missing)}")
    for name, value in args.items():
        if is_custom(model) and name not in MODEL_ARG_RULES:
            args[name] = check_custom_arg(model, name, value)
            continue
        if name not in MODEL_ARG_RULES:
            raise ConfigError(f"model argument {name!r} of {model!r} has no rule in mnistgen.config.MODEL_ARG_RULES")
        args[name] = MODEL_ARG_RULES[name].check(f"model_args.{name}", value)
    return args


def train_keys() -> list[str]:
    return list(TRAIN_RULES)


def preset_names() -> list[str]:
    files = resources.files("mnistgen") / "presets"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".yaml"))


def preset_records() -> dict[str, dict[str, Any]]:
    """Every packaged preset's YAML as written (not validated: that needs the models, hence torch),
    for listings that must start fast."""
    folder = resources.files("mnistgen") / "presets"
    return {name: yaml.safe_load((folder / f"{name}.yaml").read_text()) for name in preset_names()}


def load_preset(name: str) -> Config:
    """A packaged preset by name, or a preset YAML file by path (e.g. a sweep's best.yaml)."""
    names = preset_names()
    path = Path(name)
    if name.endswith((".yaml", ".yml")) and path.is_file():
        text, name = path.read_text(), path.stem
    elif name not in names:
        hint = suggest(name, names)
        raise ConfigError(f"unknown preset {name!r}{hint}; valid presets: {', '.join(names)} (or a preset .yaml file)")
    else:
        text = (resources.files("mnistgen") / "presets" / f"{name}.yaml").read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"preset {name}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"preset {name}: not a mapping of settings")
    data["preset"] = name
    try:
        return Config.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"preset {name}: {exc}") from None


def suggest(word: str, options: list[str] | tuple[str, ...]) -> str:
    """" (did you mean X?)" for the closest option, case-insensitively, or "" when none is close."""
    import difflib

    lowered = {option.lower(): option for option in options}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]}?)" if close else ""


def parse_override(item: str) -> tuple[str, Any]:
    """``"lr=1e-3"`` -> ``("lr", 0.001)``: the value parsed as a YAML scalar."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r} must look like key=value (e.g. lr=1e-3)")
    try:
        return key, yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item}: cannot parse the value ({exc.problem})") from None


def _setting_rule(cfg: Config, key: str, said: str) -> tuple[str, str, Rule | None]:
    """Where ``key`` lives ("train" or "model_args"), its name there, and its rule (None: a plain
    argument of the user's own model)."""
    if key.startswith("model_args."):
        name = key.split(".", 1)[1]
        defaults = model_defaults(cfg.model)
        if name not in defaults or not (name in MODEL_ARG_RULES or is_custom(cfg.model)):
            raise ConfigError(f"{said}: model {cfg.model!r} takes no argument {name!r}"
                              f"{suggest(name, list(defaults))}; its arguments: {', '.join(defaults)}")
        return "model_args", name, MODEL_ARG_RULES.get(name)
    if key in TRAIN_RULES:
        return "train", key, TRAIN_RULES[key]
    model_keys = [f"model_args.{name}" for name in model_defaults(cfg.model)]
    hint = suggest(key, train_keys() + model_keys) or suggest(f"model_args.{key}", model_keys)
    raise ConfigError(f"{said}: unknown setting {key!r}{hint}; valid: {', '.join(train_keys())}, "
                      f"or model_args.NAME")


def apply_settings(cfg: Config, settings: dict[str, Any], option: str = "") -> Config:
    """A copy of ``cfg`` with ``settings`` (``{"lr": 1e-3, "model_args.latent_dim": 8}``; a
    ``model_args`` dict is spread the same way) applied, each checked by its rule. ``option``
    prefixes error messages (the CLI's "--set"). An explicit ``epochs`` turns ``fill_budget`` off:
    the user asked for that many epochs."""
    flat = dict(settings)
    flat.update({f"model_args.{k}": v for k, v in (flat.pop("model_args", None) or {}).items()})
    d = cfg.to_dict()
    for key, value in flat.items():
        key = key.removeprefix("train.")
        said = f"{option} {key}={value}".strip()
        where, name, rule = _setting_rule(cfg, key, said)
        if rule is None:
            d[where][name] = check_custom_arg(cfg.model, name, value)
            continue
        try:
            d[where][name] = rule.coerce(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{said}: {key} must be {rule.describe()}") from None
    keys = {key.removeprefix("train.") for key in flat}
    if "epochs" in keys and "fill_budget" not in keys:
        d["train"]["fill_budget"] = False
    return Config.from_dict(d)


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """``apply_settings`` for the CLI's ``--set key=value`` strings (values parsed as YAML scalars)."""
    return apply_settings(cfg, dict(parse_override(item) for item in overrides), option="--set")
