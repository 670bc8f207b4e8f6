"""mnistgen: train, sample, evaluate and compare generative models of MNIST-like digits.

The public API (see :mod:`mnistgen.api`)::

    import mnistgen
    model = mnistgen.load("flow")        # shipped weights, a run folder or a checkpoint
    x = model.generate(16, digit=7)      # float tensor (16, 1, 28, 28) in [0, 1]
    mnistgen.show(x)                     # a grid, inline in Jupyter
    mnistgen.score(x)                    # FID, precision, recall, acceptable... beside real digits
    run = mnistgen.train("gan", minutes=5)

Names are imported on first use, so ``import mnistgen`` (and the command line's ``--help``) stays
free of torch until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_FROM_API = ("load", "Model", "show", "Grid", "classify", "Classification", "score", "Scores", "presets",
             "PresetInfo", "train", "resume", "Run")
_FROM_MODELS = ("VAE", "GAN", "FlowModel")
_FROM_ELSEWHERE = {"Config": "mnistgen.config", "MnistgenError": "mnistgen.errors"}

__all__ = [*_FROM_API, *_FROM_MODELS, *_FROM_ELSEWHERE, "__version__"]

if TYPE_CHECKING:
    from .api import (
        Classification,
        Grid,
        Model,
        PresetInfo,
        Run,
        Scores,
        classify,
        load,
        presets,
        resume,
        score,
        show,
        train,
    )
    from .config import Config
    from .errors import MnistgenError
    from .models import GAN, VAE, FlowModel


def __getattr__(name: str) -> Any:
    if name in _FROM_API:
        module = "mnistgen.api"
    elif name in _FROM_MODELS:
        module = "mnistgen.models"
    elif name in _FROM_ELSEWHERE:
        module = _FROM_ELSEWHERE[name]
    else:
        raise AttributeError(f"module 'mnistgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
