"""Computed facts about a model that the seeds report: parameter counts and lines of code."""

from __future__ import annotations

import ast
import inspect
import sys

from torch import nn


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_keras_style(module: nn.Module) -> int:
    """Parameters plus batch-norm moving mean/variance, which Keras' summary() counts too."""
    stats = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    )
    return count_parameters(module) + stats


def lines_of_code(source: str) -> int:
    """Non-blank lines that are neither comments nor docstrings."""
    tree = ast.parse(source)
    doc_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                doc_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    count = 0
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and number not in doc_lines:
            count += 1
    return count


def model_info(model: nn.Module) -> dict[str, int | str]:
    module = sys.modules[type(model).__module__]
    info: dict[str, int | str] = {
        "model_class": type(model).__name__,
        "model_module": module.__name__,
        "parameters": count_parameters(model),
        "parameters_keras_style": count_keras_style(model),
        "model_lines_of_code": lines_of_code(inspect.getsource(module)),
    }
    for part in ("generator", "discriminator"):
        if hasattr(model, part):
            info[f"{part}_parameters"] = count_parameters(getattr(model, part))
            info[f"{part}_parameters_keras_style"] = count_keras_style(getattr(model, part))
    return info
