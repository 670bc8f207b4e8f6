"""Full-state checkpoints: written atomically, read without running code from the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .errors import CheckpointError
from .fileio import atomic_write

FORMAT = 1


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to a temp file beside ``path`` and rename it into place."""
    payload = {"format": FORMAT, "mnistgen_version": __version__, **state}
    atomic_write(path, lambda fh: torch.save(payload, fh))


def load_checkpoint(path: str | os.PathLike, expect_preset: str | None = None) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no pickled code is ever executed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise CheckpointError(f"{path} is truncated, damaged or not a mnistgen checkpoint ({exc.__class__.__name__})") from exc
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise CheckpointError(f"{path} is not a mnistgen checkpoint")
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {state.get('format')!r}; this mnistgen reads {FORMAT}")
    preset = state["config"].get("preset")
    if expect_preset is not None and preset != expect_preset:
        raise CheckpointError(f"{path} belongs to preset {preset!r}, not {expect_preset!r}")
    return state


def find_checkpoint(target: str | os.PathLike) -> Path:
    """A run folder -> its checkpoints/last.pt; a file -> itself."""
    target = Path(target)
    if target.is_dir():
        for candidate in (target / "checkpoints" / "last.pt", target / "last.pt"):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"{target} holds no checkpoints/last.pt")
    if not target.exists():
        raise CheckpointError(f"{target} does not exist")
    return target
