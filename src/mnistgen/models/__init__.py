"""Model registry: name -> class. A preset YAML names its model here."""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from .base import GAN, VAE, FlowModel
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
}


def build_model(name: str, **kwargs) -> VAE | GAN | FlowModel:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](**kwargs)
    except (TypeError, ValueError, RuntimeError, MemoryError) as exc:  # RuntimeError: e.g. out of memory
        raise ConfigError(f"cannot build model {name!r} with {kwargs}: {str(exc).splitlines()[0]}") from exc


__all__ = ["GAN", "VAE", "FlowModel", "MODELS", "build_model"]
