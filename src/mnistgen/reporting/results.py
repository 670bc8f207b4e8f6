"""A run's scored result, as the report and the reproduction show it: its config, model info, scores
and figures, and the comparison table of several of them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from ..config import Config
from ..modelinfo import code_a_user_needs
from ..models import build_model
from ..training import trainer_class

METRIC_COLUMNS = (("acceptable", "acceptable", "{:.3f}"), ("coverage", "coverage", "{:.3f}"),
                  ("IS", "inception_score", "{:.2f}"), ("FID", "fid", "{:.2f}"), ("KID", "kid", "{:.4f}"),
                  ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"))


@dataclass
class ModelResult:
    """One run in a report: what it is, how it trained, its scores, and the figures drawn of it."""

    label: str
    run_dir: Path
    cfg: Config
    summary: dict
    info: dict
    scores: dict
    origin: str = "reused a finished run"  # or "trained now", "resumed an interrupted run"
    figures: dict[str, Path] = field(default_factory=dict)


def load_result(label: str, run_dir: Path, summary: dict, scores: dict, origin: str) -> ModelResult:
    """A finished run's config and model info, with its scores, ready for tables and figures.
    Lines of code are counted again now: they describe the code, not the run, so every row of a
    report counts the same code even when runs were trained before it changed."""
    run_config = yaml.safe_load((run_dir / "config.yaml").read_text())
    run_config.pop("run", None)
    cfg = Config.from_dict(run_config)
    info = json.loads((run_dir / "model_info.json").read_text())
    with torch.device("meta"):  # shapes only
        model = build_model(cfg.model, **cfg.model_args)
    info.update(code_a_user_needs(model, trainer_class(cfg), cfg.preset))  # the trainer that trained it
    return ModelResult(label, run_dir, cfg, summary, info, scores, origin)


def format_number(value: float | None, fmt: str = "{:.3f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def results_table(results: list[ModelResult]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per run and a last row of the real images' scores, the ceiling."""
    header = ["model", "family", "parameters", "lines of code", "training time", "device", "epochs",
              *[c[0] for c in METRIC_COLUMNS]]
    rows = []
    for r in results:
        s = r.scores["samples"]
        rows.append([r.label, r.cfg.family, f"{r.info['parameters']:,}",
                     f"{r.info['lines_of_code_physical']:,}" if "lines_of_code_physical" in r.info
                     else f"{r.info['model_lines_of_code']} + {r.info['trainer_lines_of_code']}",
                     f"{r.summary['training_seconds']:.0f} s", r.summary["device"], str(r.summary["epochs_completed"]),
                     *[format_number(s[key], fmt) for _, key, fmt in METRIC_COLUMNS]])
    if results:
        real = results[0].scores["real"]
        rows.append(["real training images (ceiling)", "-", "-", "-", "-", "-", "-",
                     *[format_number(real[key], fmt) for _, key, fmt in METRIC_COLUMNS]])
    return header, rows


def relative_path(path: Path, out: Path) -> str:
    """``path`` as seen from the report folder: a report names no folder of the machine it ran on."""
    return Path(os.path.relpath(path, out)).as_posix()

