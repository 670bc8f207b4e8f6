"""Computed facts about a model that the seeds report: parameter counts and lines of code."""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from .config import Config
    from .models.base import DigitModel


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_keras_style(module: nn.Module) -> int:
    """Parameters plus batch-norm moving mean/variance, which Keras' summary() counts too."""
    stats = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None and m.running_var is not None
    )
    return count_parameters(module) + stats


def source_file(module: object) -> str:
    """The file a module was loaded from (mnistgen's modules always have one)."""
    path = inspect.getsourcefile(module)  # type: ignore[arg-type]
    if path is None:
        raise ValueError(f"{module} has no source file")
    return path


def lines_of_code(source: str) -> int:
    """Non-blank lines that are neither comments nor docstrings."""
    tree = ast.parse(source)
    doc_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                doc_lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    count = 0
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and number not in doc_lines:
            count += 1
    return count


def part_parameter_counts(model: DigitModel) -> dict[str, dict[str, int]]:
    """Per half of the model (generator/discriminator or encoder/decoder): ``{"torch": n, "keras": n}``.
    The two differ by batch norm's moving statistics, which Keras' summary() counts and the reports quote."""
    return {name: {"torch": sum(count_parameters(m) for m in modules),
                   "keras": sum(count_keras_style(m) for m in modules)}
            for name, modules in model.parts().items()}


def preset_summary(cfg: Config) -> str:
    """One line of parameter counts for ``mnistgen presets``, e.g.
    "generator 98,832 + discriminator 6,369 parameters (Keras count; torch 95,600 + 6,369)"."""
    from .models import build_model

    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        model = build_model(cfg.model, **cfg.model_args)
    counts = part_parameter_counts(model)
    line = " + ".join(f"{name} {n['keras']:,}" for name, n in counts.items()) + " parameters"
    if any(n["keras"] != n["torch"] for n in counts.values()):
        line += " (Keras count; torch " + " + ".join(f"{n['torch']:,}" for n in counts.values()) + ")"
    return line


def physical_lines(text: str) -> int:
    """Lines as an editor numbers them, blank and comment lines included (trailing blank lines not)."""
    return len(text.rstrip().splitlines())


# The shared training loop that every trainer runs, in the modules it is spread over. Listed, not found
# from where the Trainer class is defined, so that moving code between them leaves the count as it is.
# tests/test_lines_of_code.py checks that every module of mnistgen.training is listed here, is a family's
# trainer, or is one of TRAINING_HELPERS.
TRAINING_LOOP_MODULES = ("mnistgen.training.loop", "mnistgen.training.family", "mnistgen.training.data",
                         "mnistgen.training.runwriter", "mnistgen.training.stopping")
# Not counted, like the other helpers: the CLI's entry points (start_run, resume_run), data-parallel
# plumbing, scoring during training (the evaluation code is not counted either), and the choice of
# mixed precision for amp: auto (a device probe, like the device choice, which is not counted either).
TRAINING_HELPERS = ("mnistgen.training", "mnistgen.training.distributed", "mnistgen.training.quality",
                    "mnistgen.training.precision")


def _mnistgen_modules(cls: type) -> set[str]:
    """The mnistgen modules that define ``cls`` or one of its base classes."""
    return {c.__module__ for c in cls.__mro__ if c.__module__.split(".")[0] == "mnistgen"}


def trainer_modules(trainer: type) -> list[ModuleType]:
    """The code that trains: the trainer class's module and its bases' (the family's trainer), and the
    shared loop (:data:`TRAINING_LOOP_MODULES`)."""
    names = _mnistgen_modules(trainer) | set(TRAINING_LOOP_MODULES)
    return [importlib.import_module(name) for name in sorted(names)]


def code_a_user_needs(model: nn.Module, trainer: type, preset: str | None = None) -> dict[str, Any]:
    """Physical lines of the code that implements and trains ``model``, counted as report 000 counts
    its notebook cells: every line, blanks and comments included (:func:`physical_lines` gives
    exactly its "GAN is made of 163 lines of code while the VAE is made out of 182" for its cells).

    Counted: each mnistgen module that defines the model's class or one of its base classes (the
    model file and ``models/base.py``, where the VAE loss lives), the same for the trainer class (the
    family's trainer), the shared training loop (:data:`TRAINING_LOOP_MODULES`), and the preset YAML
    (the cell's constants). Not counted, as the notebook does not count Keras, tf.data or matplotlib:
    torch, and the helpers the classes call (data loading, checkpoints, image grids, scoring, the CLI).
    Returns ``lines_of_code_physical`` (the total) and ``lines_of_code_files`` ({file: lines})."""
    modules = {sys.modules[name] for name in _mnistgen_modules(type(model))} | set(trainer_modules(trainer))
    root = Path(source_file(sys.modules["mnistgen"])).parent
    files = {Path(source_file(m)).relative_to(root).as_posix(): physical_lines(inspect.getsource(m)) for m in modules}
    yaml_file = resources.files("mnistgen") / "presets" / f"{preset}.yaml"
    if preset and yaml_file.is_file():  # a preset that is not a packaged file has no YAML to count
        files[f"presets/{preset}.yaml"] = physical_lines(yaml_file.read_text())
    files = dict(sorted(files.items()))
    return {"lines_of_code_physical": sum(files.values()), "lines_of_code_files": files}


def module_lines_of_code(module: ModuleType) -> int | None:
    """Logical lines of ``module``'s source; None when it has no source file (a class defined in a
    notebook lives in the kernel's ``__main__``)."""
    try:
        return lines_of_code(inspect.getsource(module))
    except (OSError, TypeError):
        return None


def model_info(model: DigitModel, trainer: type | None = None, preset: str | None = None) -> dict[str, Any]:
    """Parameter counts (whole model and per half) and the model module's logical lines of code;
    given the trainer class, also the physical lines of everything it takes (:func:`code_a_user_needs`)
    and the logical lines of the training code alone."""
    module = sys.modules[type(model).__module__]
    info: dict[str, Any] = {
        "model_class": type(model).__name__,
        "model_module": module.__name__,
        "parameters": count_parameters(model),
        "parameters_keras_style": count_keras_style(model),
        "model_lines_of_code": module_lines_of_code(module),
    }
    for part, n in part_parameter_counts(model).items():
        info[f"{part}_parameters"] = n["torch"]
        info[f"{part}_parameters_keras_style"] = n["keras"]
    if trainer is not None:
        info.update(code_a_user_needs(model, trainer, preset))
        # Logical lines of the shared loop and the family's trainer (the seeds count training code too).
        info["trainer_lines_of_code"] = sum(lines_of_code(inspect.getsource(m)) for m in trainer_modules(trainer))
    return info
