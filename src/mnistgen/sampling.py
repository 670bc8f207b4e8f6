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
from .models import FlowModel, build_model
from .models.base import DigitModel

# How a flow model samples; each may be changed at sampling time (`sample`/`evaluate --steps ...`).
FLOW_SAMPLING = ("steps", "sampler", "guidance")


def load_trained_model(target: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[DigitModel, Config]:
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


def set_sampling(model: DigitModel, preset: str, **options: object) -> str:
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
def draw(model: DigitModel, n: int, seed: int = 0, digit: int | None = None, batch: int = 2000,
         device: str | torch.device | None = None) -> torch.Tensor:
    """``n`` samples as images in [0, 1], drawn in chunks of ``batch`` and the same for a given seed
    on every device; only ``digit`` if given (class-conditional models). Each chunk is moved to
    ``device`` (default: it stays on the model's), so a long draw need not fit in GPU memory."""
    gen = torch.Generator().manual_seed(seed)
    chunks = []
    for start in range(0, n, batch):
        size = min(batch, n - start)
        labels = None if digit is None else torch.full((size,), digit, dtype=torch.long)
        images = model.sample(size, generator=gen, labels=labels)
        chunks.append(images if device is None else images.to(device))
    return torch.cat(chunks) if chunks else torch.zeros(0, 1, 28, 28, device=device)


def sample_float(model: DigitModel, n: int, seed: int, batch: int = 2000) -> torch.Tensor:
    """``n`` samples as float32 images in [0, 1] on the CPU (what the metrics take)."""
    return draw(model, n, seed, batch=batch, device="cpu").float()


def sample_images(model: DigitModel, n: int, seed: int = 0, batch: int = 2000, digit: int | None = None) -> np.ndarray:
    """``n`` samples as uint8 (n, 28, 28), reproducible for a given seed; only ``digit`` if given."""
    return to_uint8(draw(model, n, seed, digit, batch, device="cpu"))


def network_calls(model: DigitModel) -> int:
    """Network calls one digit costs, counted on one draw rather than computed: a data-predicting
    flow's last Heun step is an Euler step and guidance doubles each call, so counting is simpler than
    a formula. The network counted is the one that draws: a flow's, a GAN's generator, a VAE's decoder."""
    parts = model.parts()
    net = (parts.get("network") or parts.get("generator") or parts["decoder"])[0]
    calls: list[int] = []
    hook = net.register_forward_hook(lambda *_: calls.append(1))
    try:
        model.sample(1, generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    return len(calls)


@torch.no_grad()
def first_latent(model: DigitModel, seed: int, digit: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The latent (latent_dim,) and digit (1,) that :func:`draw` uses for the first image of ``seed``
    (the same random stream), so a walk starts and ends on digits one has seen."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(1, model.latent_dim, generator=gen) * model.temperature
    labels = None if digit is None else torch.full((1,), digit, dtype=torch.long)
    if model.num_classes and labels is None:
        labels = torch.randint(model.num_classes, (1,), generator=gen)
    return z[0], labels


@torch.no_grad()
def interpolation(model: DigitModel, a: int = 0, b: int = 1, points: int = 10, digit: int | None = None) -> torch.Tensor:
    """``points`` images (points, 1, 28, 28) in [0, 1] on the model's device, walking from the first
    digit of seed ``a`` to that of seed ``b``: a straight line between the latents, or a great circle
    for a flow (whose noise lives near a sphere); a conditional model's two digits blend on the way."""
    za, ya = first_latent(model, a, digit)
    zb, yb = first_latent(model, b, digit)
    along = torch.linspace(0, 1, points)[:, None]
    path = great_circle(za, zb, points) if isinstance(model, FlowModel) else torch.lerp(za, zb, along)
    labels = None
    if model.num_classes and ya is not None and yb is not None:
        one_hot = torch.eye(model.num_classes)
        labels = torch.lerp(one_hot[ya[0]], one_hot[yb[0]], along)
    device = next(model.parameters()).device
    return model.decode_latents(path.to(device), None if labels is None else labels.to(device))


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
