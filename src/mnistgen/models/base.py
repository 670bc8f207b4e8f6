"""The three model interfaces every mnistgen model implements.

A likelihood model (VAE) gives ``encode / decode / sample / loss -> dict``; an adversarial
model (GAN) gives ``generate / discriminate / sample`` over its ``generator`` and
``discriminator`` modules; a flow model (flow matching) gives ``loss -> dict / sample`` over a
``net`` that turns noise into digits in several steps. The trainers in ``mnistgen.training``
only talk to these interfaces, so a new model is one module plus one registry entry in
``mnistgen.models`` plus one preset YAML.

Images cross these interfaces as float tensors (N, 1, 28, 28) in the model's
``data_range``; :meth:`sample` always returns [0, 1] so callers need not care.

A class-conditional model (``num_classes`` > 0) also takes ``labels``: int64 digits (N,), or
float class vectors (N, num_classes) so that a plot can blend two digits. Unconditional models
take and ignore them. :meth:`sample` draws uniform digits when it is given none.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def class_vectors(labels: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """Float (N, num_classes): one-hot rows for int labels; float rows pass through (blends).
    Conditional models call this on every input, so it is where missing labels are caught."""
    if labels is None:
        raise ValueError("this model is class-conditional: it needs labels")
    if labels.is_floating_point():
        return labels
    return F.one_hot(labels, num_classes).float()


def with_class(h: torch.Tensor, labels: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """``h`` (N, F) joined with the class vectors (N, num_classes); ``h`` itself when unconditional."""
    return torch.cat([h, class_vectors(labels, num_classes)], dim=1) if num_classes else h


def recording_arguments(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` that also keeps the arguments it was called with in ``self.constructor_args``: a
    model handed to ``mnistgen.train`` is stored in its run as class + arguments, and rebuilt from
    them on resume. The outermost ``__init__`` returns last, so its arguments are the ones kept."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def init_and_record(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        given = dict(list(bound.arguments.items())[1:])  # without self
        for name, param in signature.parameters.items():
            if param.kind is param.VAR_KEYWORD:
                given.update(given.pop(name))
        self.constructor_args = given

    return init_and_record


class DigitModel(nn.Module):
    """What every model shares, whatever its family (VAE, GAN, flow): a latent prior, optional class
    conditioning, and sampling. Type hints say ``DigitModel`` for "a model of any family"."""

    family: str  # "vae", "gan" or "flow": which trainer trains it
    data_range: tuple[float, float]  # what the network's images span (sample() always gives [0, 1])
    constructor_args: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = recording_arguments(cls.__init__)  # type: ignore[method-assign]

    latent_dim: int
    num_classes: int = 0
    # Prior samples are drawn as temperature * N(0, I); below 1 trades variety for sharper digits.
    temperature: float = 1.0

    def __init__(self, num_classes: int = 0, temperature: float = 1.0):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, not {temperature!r}")
        self.num_classes = num_classes
        self.temperature = temperature

    def decode_latents(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] for given latents (the fixed-noise grids use this)."""
        raise NotImplementedError

    def parts(self) -> dict[str, list[nn.Module]]:
        """The model's two halves, whose parameter counts the seeds report separately."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` images in [0, 1] from prior latents (scaled by ``temperature``); a conditional model
        draws uniform digits unless ``labels`` are given. Random numbers come from ``generator`` on
        the CPU, so a seed gives the same digits on every device."""
        z = torch.randn(n, self.latent_dim, generator=generator, device="cpu") * self.temperature
        if self.num_classes and labels is None:
            labels = torch.randint(self.num_classes, (n,), generator=generator)
        device = next(self.parameters()).device
        return self.decode_latents(z.to(device), None if labels is None else labels.to(device))


class VAE(DigitModel):
    """Gaussian-latent VAE with a Bernoulli decoder (BCE reconstruction + closed-form KL).

    ``loss_reduction`` says how the seeds scale the two terms:
    ``"sum"``: sum over pixels and latent dims, mean over the batch (the usual ELBO);
    ``"mean"``: mean over pixels and over latent dims (seed 000's Keras code).
    """

    family = "vae"
    data_range = (0.0, 1.0)

    def __init__(self, latent_dim: int, loss_reduction: str = "sum", num_classes: int = 0, temperature: float = 1.0):
        super().__init__(num_classes, temperature)
        if loss_reduction not in ("sum", "mean"):
            raise ValueError(f"loss_reduction must be 'sum' or 'mean', not {loss_reduction!r}")
        self.latent_dim = latent_dim
        self.loss_reduction = loss_reduction

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x) (of q(z|x, label) for a conditional model)."""
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Pixel logits (N, 1, 28, 28); sigmoid of them is the decoded image."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z, labels))

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def loss(self, x: torch.Tensor, beta: float = 1.0, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Terms of the negative ELBO; ``loss`` is the one to minimise (KL weighted by beta)."""
        mu, logvar = self.encode(x, labels)
        logits = self.decode_logits(self.reparameterize(mu, logvar), labels)
        # BCE on logits is the numerically safe form of BCE on sigmoid outputs (and AMP-safe).
        bce = F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none").flatten(1)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).float()
        if self.loss_reduction == "sum":
            recon, kl = bce.sum(1).mean(), kl.sum(1).mean()
        else:
            recon, kl = bce.mean(), kl.mean()
        return {"loss": recon + beta * kl, "recon": recon, "kl": kl}

    def decode_latents(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(z, labels).clamp(0, 1)

    def parts(self) -> dict[str, list[nn.Module]]:
        """Decoder: the ``decoder`` submodule, which every VAE here has; encoder: all the others
        (the encoder body and its heads to the latent statistics)."""
        children = dict(self.named_children())
        return {"encoder": [m for name, m in children.items() if name != "decoder"], "decoder": [children["decoder"]]}


class GAN(DigitModel):
    """A generator z (and digit) -> image in ``data_range``; a discriminator image (and digit) -> logit (N,)."""

    family = "gan"
    data_range = (-1.0, 1.0)

    def __init__(self, latent_dim: int, generator: nn.Module, discriminator: nn.Module, num_classes: int = 0):
        super().__init__(num_classes)
        self.latent_dim = latent_dim
        self.generator = generator
        self.discriminator = discriminator

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in ``data_range``; a conditional generator's forward takes (z, labels)."""
        return self.generator(z, labels) if self.num_classes else self.generator(z)

    def discriminate(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N,); a conditional discriminator's forward takes (x, labels)."""
        return self.discriminator(x, labels) if self.num_classes else self.discriminator(x)

    def decode_latents(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Generated images mapped to [0, 1]."""
        low, high = self.data_range
        return ((self.generate(z, labels) - low) / (high - low)).clamp(0, 1)

    def parts(self) -> dict[str, list[nn.Module]]:
        return {"generator": [self.generator], "discriminator": [self.discriminator]}


class FlowModel(DigitModel):
    """A network that carries image-shaped noise to digits in ``steps`` network calls.

    Its "latent" is the starting noise itself, flattened (``latent_dim`` 784), so fixed-noise
    grids, seeds and temperature work as for the other families. ``guidance`` w > 0 mixes in the
    unconditional prediction (classifier-free guidance): conditional + w * (conditional -
    unconditional), at twice the network calls."""

    family = "flow"
    data_range = (-1.0, 1.0)
    latent_dim = 28 * 28

    def __init__(self, net: nn.Module, num_classes: int, steps: int, guidance: float, temperature: float,
                 label_dropout: float):
        super().__init__(num_classes, temperature)
        if steps < 1:
            raise ValueError(f"steps must be at least 1, not {steps!r}")
        if not guidance >= 0:
            raise ValueError(f"guidance must be >= 0, not {guidance!r}")
        self.net = net
        self.steps = steps
        self.guidance = guidance
        self.label_dropout = label_dropout

    def drop_labels(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """In training, each digit replaced by "no digit" (index ``num_classes``) with probability
        ``label_dropout``: the same network then also learns the unconditional prediction."""
        if not (self.training and self.num_classes and labels is not None and self.label_dropout > 0):
            return labels
        dropped = torch.rand(len(labels), device=labels.device) < self.label_dropout
        return torch.where(dropped, torch.full_like(labels, self.num_classes), labels)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The training objective on data ``x`` in ``data_range``; ``loss`` is the one to minimise."""
        raise NotImplementedError

    def generate(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in ``data_range`` from noise (N, 1, 28, 28) in ``steps`` steps."""
        raise NotImplementedError

    def predict(self, x: torch.Tensor, t: float, labels: torch.Tensor | None) -> torch.Tensor:
        """The network's output at time ``t`` (one time for the whole batch), guided when ``guidance`` > 0."""
        times = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])
        out = self.net(x, times, labels)
        if self.guidance > 0 and self.num_classes and labels is not None:
            out = out + self.guidance * (out - self.net(x, times, None))
        return out

    # Samples carried through the ODE together on a CPU: each one's path is independent of the others',
    # and there the UNet runs ~3x faster per image on 256 at a time than on 2,000 (its activations stay in
    # cache). A GPU takes the whole batch at once.
    generation_batch = 256

    def decode_latents(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        low, high = self.data_range
        noise = z.reshape(-1, 1, 28, 28)
        size = self.generation_batch if noise.device.type == "cpu" else max(1, len(noise))
        # (no autocast context at all when off: a disabled one would switch off a caller's, e.g. amp's probe)
        bf16 = torch.autocast("cpu", dtype=torch.bfloat16) if self.samples_in_bf16(noise.device) else nullcontext()
        with bf16:
            images = torch.cat([self.generate(noise[i:i + size], None if labels is None else labels[i:i + size])
                                for i in range(0, len(noise), size)]) if len(noise) else noise
        return ((images.float() - low) / (high - low)).clamp(0, 1)

    # Sample under bf16 autocast where the CPU executes bf16 natively (a model argument of flow_matching).
    bf16_sampling = False

    def samples_in_bf16(self, device: torch.device) -> bool:
        if not (self.bf16_sampling and device.type == "cpu"):
            return False
        from ..training.precision import cpu_has_native_bf16  # (models do not import the training package at load)

        return cpu_has_native_bf16()

    def parts(self) -> dict[str, list[nn.Module]]:
        return {"network": [self.net]}


class Reshape(nn.Module):
    def __init__(self, *shape: int):
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], *self.shape)


class Crop(nn.Module):
    """Remove ``border`` pixels on every side (Keras Cropping2D)."""

    def __init__(self, border: int):
        super().__init__()
        self.border = border

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.border
        return x[..., b:-b, b:-b]


def keras_batchnorm(num_features: int, dims: int = 2) -> nn.Module:
    """BatchNorm with Keras' defaults (momentum 0.99 -> torch 0.01, eps 1e-3), for faithful presets."""
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(num_features, eps=1e-3, momentum=0.01)
