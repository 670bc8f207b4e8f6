"""What the seed reports state about their systems, read from ``mnistgen/seeds/NNN.yaml``.

Reproducing a report means comparing our numbers with the report's, so each stated number is
kept with the report's own words (``quote``) that a reader can find in the report, and a number
the report does not state is ``None``, never a guess. The files are checked strictly on loading,
so that a typo in one is a :class:`~mnistgen.errors.ConfigError` naming the file and the key,
not a comparison that silently goes missing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeGuard

import yaml

from .config import TRAIN_RULES, preset_names
from .errors import ConfigError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

CLAIM_KEYS: tuple[str, ...] = ("training_seconds", "epochs", "batch_size", "parameters", "lines_of_code",
                               "acceptable", "inception_score", "fid", "final_losses")
WHOLE_NUMBER_CLAIMS = ("epochs", "batch_size", "parameters", "lines_of_code")  # counts, never fractional
FILE_KEYS = ("seed", "source", "title", "hardware", "acceptable_rule", "study", "systems")
SYSTEM_KEYS = ("id", "preset", "set", "label", "claims")
CLAIM_FIELDS = ("value", "quote")
CLAIM_EXTRAS = ("note", "hardware", "part")
PARTS = ("generator", "discriminator", "encoder", "decoder")  # a count of one half of the model, not of all of it
# A report's name of a final loss term -> the term our runs log in metrics.jsonl under that meaning.
FINAL_LOSS_TERMS = {"total": "loss", "reconstruction": "recon", "kl": "kl"}
SEED_FILE = re.compile(r"(\d{3})\.yaml")


@dataclass(frozen=True)
class Claim:
    """One thing a report states: the value in canonical units (seconds, fractions, plain
    integers) and the report's words for it; both ``None`` where the report states nothing."""

    value: float | int | dict[str, float] | str | None
    quote: str | None
    note: str | None = None
    hardware: str | None = None
    part: str | None = None  # parameters only: the half of the model the count covers (None: all of it)

    @property
    def stated(self) -> bool:
        return self.value is not None

    # The loader checks each value's type by the claim's name; these read it as that type.
    def number(self) -> float | None:
        """The value of a counted or measured claim (every system claim but final_losses)."""
        if self.value is None or isinstance(self.value, (int, float)):
            return self.value
        raise TypeError(f"claim {self.quote!r}: not a number: {self.value!r}")

    def losses(self) -> dict[str, float] | None:
        """final_losses' value: the report's name of each loss term -> its value."""
        if self.value is None or isinstance(self.value, dict):
            return self.value
        raise TypeError(f"claim {self.quote!r}: not a mapping of losses: {self.value!r}")

    def text(self) -> str | None:
        """The value of a claim in words (the hardware, the acceptable rule)."""
        if self.value is None or isinstance(self.value, str):
            return self.value
        raise TypeError(f"claim {self.quote!r}: not text: {self.value!r}")


@dataclass(frozen=True)
class SeedSystem:
    """One system a report describes: a preset, plus training-setting overrides where one preset
    stands for several of the report's runs (report 002's 5, 10 and 30 epochs)."""

    id: str
    preset: str
    overrides: dict[str, Any]  # training setting -> a value its rule accepts
    label: str
    claims: dict[str, Claim]

    def set_args(self) -> list[str]:
        """The overrides as ``key=value`` items for :func:`mnistgen.config.apply_overrides`
        (JSON values, which parse back as the same YAML scalars)."""
        return [f"{key}={json.dumps(value)}" for key, value in self.overrides.items()]


@dataclass(frozen=True)
class SeedClaims:
    """Everything one report claims: where it trained, how it decides a digit is acceptable
    (``threshold`` is that rule's number, if it states one), and its systems' numbers."""

    seed: str
    source: str
    title: str
    hardware: Claim
    acceptable_rule: Claim
    threshold: float | None
    study: str
    systems: tuple[SeedSystem, ...]


def _folder(folder: Path | None) -> Path | Traversable:
    return resources.files("mnistgen") / "seeds" if folder is None else folder


def seed_numbers(folder: Path | None = None) -> list[str]:
    """The seeds that have a claims file, sorted: ``["000", "001", ...]``."""
    return sorted(m.group(1) for p in _folder(folder).iterdir() if (m := SEED_FILE.fullmatch(p.name)))


def load_claims(seed: str, folder: Path | None = None) -> SeedClaims:
    """The checked claims of report ``seed``; ``folder`` replaces the packaged files (tests)."""
    known = seed_numbers(folder)
    if seed not in known:
        raise ConfigError(f"seed {seed!r} has no claims file; known: {', '.join(known)}")
    path = _folder(folder) / f"{seed}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return _Reader(str(path)).seed_claims(data, seed)


def systems_of(seeds: list[str]) -> list[tuple[str, SeedSystem]]:
    """Every system of the given reports as (seed, system), in the order given, then file order."""
    return [(seed, system) for seed in seeds for system in load_claims(seed).systems]


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Reader:
    """Checks one claims file; every error names the file and the key that is wrong."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ConfigError(f"{self.file}: {key}: {problem}")

    def mapping(self, data: Any, key: str, required: tuple[str, ...],
                optional: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail(key, f"must be a mapping with keys {', '.join(required)}")
        missing = [k for k in required if k not in data]
        if missing:
            self.fail(key, f"missing key(s) {', '.join(missing)}")
        unknown = sorted(map(str, set(data) - set(required) - set(optional)))
        if unknown:
            self.fail(key, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(required + optional)}")
        return data

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"must be non-empty text, not {value!r}")
        return value

    def optional_text(self, value: Any, key: str) -> str | None:
        return None if value is None else self.text(value, key)

    def claim(self, data: Any, key: str, extras: tuple[str, ...] = CLAIM_EXTRAS) -> Claim:
        d = self.mapping(data, key, CLAIM_FIELDS, extras)
        if (d["value"] is None) != (d["quote"] is None):
            self.fail(key, "value and quote must both be null or both be set")
        self.optional_text(d["quote"], f"{key}.quote")
        for extra in CLAIM_EXTRAS:
            self.optional_text(d.get(extra), f"{key}.{extra}")
        if d.get("part") is not None and d["part"] not in PARTS:
            self.fail(f"{key}.part", f"must be one of {', '.join(PARTS)}, not {d['part']!r}")
        return Claim(d["value"], d["quote"], d.get("note"), d.get("hardware"), d.get("part"))

    def fraction(self, value: Any, key: str) -> None:
        if not (_is_number(value) and 0 <= value <= 1):
            self.fail(key, f"must be a fraction in [0, 1], not {value!r}")

    def system_claim(self, data: Any, key: str, name: str) -> Claim:
        claim = self.claim(data, key)
        value, where = claim.value, f"{key}.value"
        if value is None:
            return claim
        if name == "final_losses":
            if not (isinstance(value, dict) and value
                    and all(isinstance(k, str) and _is_number(v) for k, v in value.items())):
                self.fail(where, f"must be a mapping of loss name to number, not {value!r}")
            unknown = sorted(set(value) - set(FINAL_LOSS_TERMS))
            if unknown:  # a name we do not log would never be compared
                self.fail(where, f"unknown loss name(s) {', '.join(unknown)}; known: {', '.join(FINAL_LOSS_TERMS)}")
        elif name == "acceptable":
            self.fraction(value, where)
        elif name in WHOLE_NUMBER_CLAIMS and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            self.fail(where, f"must be a positive whole number, not {value!r}")
        elif not (_is_number(value) and value >= 0):
            self.fail(where, f"must be a number >= 0, not {value!r}")
        return claim

    def overrides(self, data: Any, key: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail(key, f"must be a mapping of training settings, not {data!r}")
        for name, value in data.items():
            if name not in TRAIN_RULES:
                self.fail(key, f"unknown training setting {name!r}; valid: {', '.join(TRAIN_RULES)}")
            try:
                TRAIN_RULES[name].check(name, value)
            except ConfigError as exc:
                self.fail(f"{key}.{name}", str(exc))
        return dict(data)

    def system(self, data: Any, key: str, presets: list[str]) -> SeedSystem:
        d = self.mapping(data, key, SYSTEM_KEYS)
        system_id, preset = self.text(d["id"], f"{key}.id"), self.text(d["preset"], f"{key}.preset")
        if preset not in presets:
            self.fail(f"{key}.preset", f"unknown preset {preset!r}")
        overrides = self.overrides(d["set"], f"{key}.set")
        if not overrides and system_id != preset:
            self.fail(f"{key}.id", f"must be the preset's name {preset!r} when set is empty, not {system_id!r}")
        if overrides and system_id == preset:
            self.fail(f"{key}.id", "must differ from the preset's name when set overrides it")
        claims = self.mapping(d["claims"], f"{key}.claims", CLAIM_KEYS)
        return SeedSystem(system_id, preset, overrides, self.text(d["label"], f"{key}.label"),
                          {name: self.system_claim(claims[name], f"{key}.claims.{name}", name) for name in CLAIM_KEYS})

    def seed_claims(self, data: Any, seed: str) -> SeedClaims:
        d = self.mapping(data, "(top level)", FILE_KEYS)
        if d["seed"] != seed:
            self.fail("seed", f"must be {seed!r} (the file's name), not {d['seed']!r}")
        source = self.text(d["source"], "source")
        if not (source.startswith(f"{seed}_") and source.endswith(".txt")):
            self.fail("source", f"must name report {seed}'s file ({seed}_....txt), not {source!r}")
        hardware = self.claim(d["hardware"], "hardware")
        self.optional_text(hardware.value, "hardware.value")
        rule = self.mapping(d["acceptable_rule"], "acceptable_rule", CLAIM_FIELDS + ("threshold",), CLAIM_EXTRAS)
        acceptable_rule = self.claim(rule, "acceptable_rule", CLAIM_EXTRAS + ("threshold",))
        self.optional_text(acceptable_rule.value, "acceptable_rule.value")
        threshold = rule["threshold"]
        if threshold is not None:
            self.fraction(threshold, "acceptable_rule.threshold")
            if not acceptable_rule.stated:
                self.fail("acceptable_rule.threshold", "is set but the rule (value, quote) is not")
        if not isinstance(d["systems"], list) or not d["systems"]:
            self.fail("systems", "must be a non-empty list")
        presets = preset_names()
        systems = tuple(self.system(s, f"systems[{i}]", presets) for i, s in enumerate(d["systems"]))
        ids = [s.id for s in systems]
        if len(set(ids)) != len(ids):
            self.fail("systems", f"ids must be unique, got {', '.join(ids)}")
        return SeedClaims(seed=seed, source=source, title=self.text(d["title"], "title"), hardware=hardware,
                          acceptable_rule=acceptable_rule, threshold=threshold, study=self.text(d["study"], "study"),
                          systems=systems)
