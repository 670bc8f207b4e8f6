"""Model registry: name -> class. A preset YAML names its model here, or names a class of the
user's own as ``module:Class`` (a subclass of :class:`VAE`, :class:`GAN` or :class:`FlowModel`)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from torch import nn

from ..errors import ConfigError
from .base import GAN, VAE, DigitModel, FlowModel
from .conv_vae_seed000 import ConvVAESeed000
from .dcgan_seed000 import DCGANSeed000
from .diffusion import DDPM
from .fast_gan import FastGAN
from .fast_vae import FastVAE
from .flow_matching import FlowMatching
from .gan_seed003 import GANSeed003
from .gan_seed004 import GANSeed004
from .lstm_vae_seed003 import LSTMVAESeed003
from .lstm_vae_seed004 import LSTMVAESeed004
from .meanflow import MeanFlow
from .mlp_vae_seed002 import MLPVAESeed002
from .wgan_gp import WGANGP

MODELS: dict[str, type[nn.Module]] = {
    "fast_vae": FastVAE,
    "fast_gan": FastGAN,
    "conv_vae_seed000": ConvVAESeed000,
    "mlp_vae_seed002": MLPVAESeed002,
    "lstm_vae_seed003": LSTMVAESeed003,
    "lstm_vae_seed004": LSTMVAESeed004,
    "dcgan_seed000": DCGANSeed000,
    "gan_seed003": GANSeed003,
    "gan_seed004": GANSeed004,
    "wgan_gp": WGANGP,
    "flow_matching": FlowMatching,
    "ddpm": DDPM,
    "meanflow": MeanFlow,
}


DigitModelClass = type[DigitModel]  # a model class of any family


def _import_module(module: str, name: str) -> object:
    """``module`` imported as ``python -m`` would: the current folder is searched too (a console
    script's path lacks it). A class defined in a notebook lives in ``__main__``."""
    if module in sys.modules:
        return sys.modules[module]
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"model {name!r}: cannot import {module!r} ({exc}); run from the folder that holds "
                          f"it or put it on PYTHONPATH") from None


def model_class(name: str) -> DigitModelClass:
    """The class a config's ``model`` names: a registry name, or ``module:Class``."""
    if ":" not in name:
        if name not in MODELS:
            raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}, or module:Class")
        return MODELS[name]  # type: ignore[return-value]
    module, _, attr = name.partition(":")
    cls = getattr(_import_module(module, name), attr, None)
    if not (isinstance(cls, type) and issubclass(cls, (VAE, GAN, FlowModel))):
        raise ConfigError(f"model {name!r}: {module} has no class {attr!r} that subclasses mnistgen's VAE, "
                          f"GAN or FlowModel")
    return cls


def model_name(cls: type) -> str:
    """How a config names ``cls``: its registry name, or ``module:Class`` for the user's own."""
    return next((name for name, known in MODELS.items() if known is cls), f"{cls.__module__}:{cls.__qualname__}")


def build_model(name: str, **kwargs: Any) -> DigitModel:
    cls = model_class(name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, RuntimeError, MemoryError) as exc:  # RuntimeError: e.g. out of memory
        raise ConfigError(f"cannot build model {name!r} with {kwargs}: {str(exc).splitlines()[0]}") from exc


__all__ = ["GAN", "VAE", "FlowModel", "DigitModel", "MODELS", "build_model", "model_class", "model_name"]
