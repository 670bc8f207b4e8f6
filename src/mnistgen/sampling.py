"""Load a trained model from a run folder or checkpoint, and draw samples from it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .checkpoint import find_checkpoint, load_checkpoint
from .config import Config
from .errors import CheckpointError, MnistgenError
from .fileio import atomic_write
from .images import save_grid, to_uint8
from .models import GAN, VAE, FlowModel, build_model

# How a flow model samples; each may be changed at sampling time (`sample`/`evaluate --steps ...`).
FLOW_SAMPLING = ("steps", "sampler", "guidance")


def load_trained_model(target: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[VAE | GAN | FlowModel, Config]:
    """The model of a run folder or checkpoint, in eval mode; its EMA weights if it has them (GANs, flows)."""
    state = load_checkpoint(find_checkpoint(target))
    cfg = Config.from_dict(state["config"])
    model = build_model(cfg.model, **cfg.model_args)
    ema = (state.get("family") or {}).get("ema")
    try:
        if ema is not None:
            weights = {k[len("module."):]: v for k, v in ema.items() if k.startswith("module.")}
            model.load_state_dict(weights)
        else:
            model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{target}: weights do not fit model {cfg.model!r} ({str(exc).splitlines()[0]})") from exc
    return model.to(device).eval(), cfg


def set_sampling(model: VAE | GAN | FlowModel, preset: str, **options: object) -> str:
    """Change how ``model`` samples: ``temperature`` (any model), ``steps``, ``sampler`` and ``guidance``
    (flow models); options given as None are left as they are. An option the model does not have is
    refused. Returns the changes as text for descriptions, e.g. "steps 4, guidance 2"."""
    changed = []
    for name, value in options.items():
        if value is None:
            continue
        if name not in FLOW_SAMPLING + ("temperature",):
            raise MnistgenError(f"unknown sampling option {name!r}")
        if name in FLOW_SAMPLING and not isinstance(model, FlowModel):
            raise MnistgenError(f"--{name} applies to flow models (e.g. the flow preset); preset {preset} is a "
                                f"{model.family}")
        if not hasattr(model, name):  # e.g. a DDPM's one sampler, DDIM
            raise MnistgenError(f"--{name} does not apply to preset {preset} ({type(model).__name__})")
        setattr(model, name, value)
        changed.append(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}")
    return ", ".join(changed)


@torch.no_grad()
def sample_float(model: VAE | GAN | FlowModel, n: int, seed: int, batch: int = 2000) -> torch.Tensor:
    """``n`` samples as float images in [0, 1] on the CPU, drawn in chunks, the same for a given seed."""
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([model.sample(min(batch, n - i), generator=gen).cpu().float() for i in range(0, n, batch)])


def sample_images(model: VAE | GAN, n: int, seed: int = 0, batch: int = 2000, digit: int | None = None) -> np.ndarray:
    """``n`` samples as uint8 (n, 28, 28), reproducible for a given seed; only ``digit`` if given
    (class-conditional models)."""
    gen = torch.Generator().manual_seed(seed)

    def labels(size: int) -> torch.Tensor | None:
        return None if digit is None else torch.full((size,), digit, dtype=torch.long)

    chunks = [to_uint8(model.sample(min(batch, n - i), generator=gen, labels=labels(min(batch, n - i))))
              for i in range(0, n, batch)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 28, 28), np.uint8)


def write_samples(images: np.ndarray, out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.suffix == ".png":
        return save_grid(images, out)
    if out.suffix == ".npz":
        return atomic_write(out, lambda fh: np.savez_compressed(fh, images=images))
    raise MnistgenError(f"--out must end in .png or .npz, not {out.name!r}")


def great_circle(a: torch.Tensor, b: torch.Tensor, points: int = 10) -> torch.Tensor:
    """``points`` vectors from ``a`` to ``b`` by spherical interpolation (slerp), (points, dim)."""
    angle = torch.arccos(torch.nn.functional.cosine_similarity(a, b, dim=0).clamp(-1, 1))
    w = torch.linspace(0, 1, points)[:, None]
    if float(angle) < 1e-4:  # (nearly) the same direction: a straight line is the same path
        return (1 - w) * a + w * b
    return (torch.sin((1 - w) * angle) * a + torch.sin(w * angle) * b) / torch.sin(angle)
