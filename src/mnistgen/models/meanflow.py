"""MeanFlow (preset ``meanflow``): a flow that draws a digit in one network call (Geng, Deng, Bai,
Kolter and He 2025, "Mean Flows for One-step Generative Modeling").

Flow matching (``flow_matching.py``) learns the velocity v(z_t, t) of straight paths from noise to
digits and needs several steps to follow the curved flow that their average makes. MeanFlow learns the
AVERAGE velocity over an interval, u(z_t, r, t) = (z_r - z_t) / (r - t), so one step of any length
lands where the flow would: z_r = z_t + (r - t) * u(z_t, r, t). From noise at t = 0 one call with r = 1
gives a digit; ``steps`` 2 or 4 take equal steps for a little more quality.

Conventions here are mnistgen's, not the paper's: x_t = (1 - t) * noise + t * x, with t = 0 noise and
t = 1 data, and the velocity v = x - noise; the paper runs time the other way (its t is 1 - ours, its
velocity noise - x, its u the negative of ours). The interval is [t, r] with r >= t, the step moves
forward in time, and the network's second time input is the interval length r - t (the paper's
(t, t - r) conditioning, mirrored).

Training target, the MeanFlow identity: differentiating (r - t) u(z_t, r, t) = integral of v from t to
r along the flow, at fixed r, gives

    u(z_t, r, t) = v(z_t, t) + (r - t) * du/dt,   du/dt = v . d_z u + d_t u,

the total derivative along the path, one forward-mode JVP of the network (``torch.func.jvp``) with the
tangent (v, 0, 1) for (z, r, t). The loss regresses u_theta on stop-gradient(v + (r - t) * du/dt), with
the conditional velocity x - noise standing in for v (as flow matching does); at r = t it is flow
matching's loss. Per sample, the mean squared error e is weighted by 1 / stop-gradient(e + c)^p
(``adaptive_power`` p, c = 1e-3; the paper's adaptive weighting, p = 1 its best).

Times: t and a second time are drawn from ``time_distribution`` (as in flow matching), sorted so that
r >= t, and r is set to t in all but an ``interval_share`` of the draws (the paper: 25%; r = t draws
teach the instantaneous velocity that the identity builds on).

Guidance folded into training (``train_guidance`` g, the paper's classifier-free guidance for MeanFlow):
for a sample with its digit, the velocity in the target is v + g * (v - u(z_t, t, t | no digit)), that is
w * v + (1 - w) * u_uncond with the paper's w = 1 + g, the same mix as flow's sampling ``guidance`` g.
Sampling then needs one call per step. ``guidance`` (default 0) adds classifier-free guidance at
sampling time as well, at twice the calls. 10% of the digits are dropped to "no digit" in training
(``label_dropout``), so the network also learns the unconditional u.

``target: data`` makes the network predict where the step lands, the clean digit at r = 1: u = (out -
z_t) / (1 - t). The loss is then measured on that prediction, (1 - t) times the velocity error (at r = t:
the loss of flow matching's ``target: data``), and a flow trained with ``target: data`` (the ``flow``
preset) can warm-start this network (``init_from``; see ``training/meanflow.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..config import TARGETS, TIME_DISTRIBUTIONS
from .base import FlowModel
from .flow_matching import MIN_REMAINING
from .unet import DigitUNet

ADAPTIVE_C = 1e-3  # c of the adaptive loss weight 1 / (e + c)^p: keeps the weight finite as e -> 0
VelocityField = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def per_image(t: torch.Tensor) -> torch.Tensor:
    """Times (N,) or (1,) shaped (N, 1, 1, 1) to scale images."""
    return t[:, None, None, None]


def meanflow_target(u_fn: VelocityField, z: torch.Tensor, t: torch.Tensor, r: torch.Tensor,
                    v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``u_fn(z, t, r)`` and its MeanFlow target v + (r - t) * du/dt (detached), where du/dt is the
    derivative along the path z' = v at fixed r: one JVP with the tangent (v, 1, 0) for (z, t, r).
    It runs in float32 even under mixed precision: autocast's casts break forward-mode derivatives
    (a bf16 weight meets a float32 tangent in the first conv)."""
    z, t, r, v = (tensor.float() for tensor in (z, t, r, v))
    with torch.autocast(z.device.type, enabled=False):
        # torch types jvp's result as 2 or 3 items; the third (aux) comes only with has_aux=True
        u, du_dt = torch.func.jvp(u_fn, (z, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))  # type: ignore[misc]
    return u, (v + per_image(r - t) * du_dt).detach()


class MeanFlow(FlowModel):
    def __init__(self, width: int = 32, blocks: int = 1, attention: bool = False, patch: int = 1, num_classes: int = 10,
                 label_dropout: float = 0.1, time_distribution: str = "logit-normal", interval_share: float = 0.25,
                 adaptive_power: float = 1.0, train_guidance: float = 0.0, target: str = "velocity", steps: int = 1,
                 guidance: float = 0.0, temperature: float = 1.0):
        if time_distribution not in TIME_DISTRIBUTIONS:
            raise ValueError(f"time_distribution must be one of {', '.join(TIME_DISTRIBUTIONS)}, not {time_distribution!r}")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
        if not 0 <= interval_share <= 1:
            raise ValueError(f"interval_share must be in [0, 1], not {interval_share!r}")
        if not (adaptive_power >= 0 and train_guidance >= 0):
            raise ValueError(f"adaptive_power and train_guidance must be >= 0, not {adaptive_power!r}, {train_guidance!r}")
        net = DigitUNet(width=width, blocks=blocks, num_classes=num_classes, attention=attention, patch=patch,
                        interval=True)
        super().__init__(net, num_classes=num_classes, steps=steps, guidance=guidance, temperature=temperature,
                         label_dropout=label_dropout)
        self.time_distribution = time_distribution
        self.interval_share = interval_share
        self.adaptive_power = adaptive_power
        self.train_guidance = train_guidance
        self.target = target

    # ------------------------------------------------------------------ the average velocity
    def average_velocity(self, z: torch.Tensor, t: torch.Tensor, r: torch.Tensor,
                         labels: torch.Tensor | None) -> torch.Tensor:
        """u(z, r, t): the step from time t to time r is (r - t) * u. ``t`` and ``r`` are (N,), or (1,)
        for times the whole batch shares."""
        out = self.net(z, t, labels, r - t)
        if self.target == "data":  # the network predicts where the path ends, at t = 1
            return (out - z) / per_image((1 - t).clamp(min=MIN_REMAINING))
        return out

    def guided_average_velocity(self, z: torch.Tensor, t: torch.Tensor, r: torch.Tensor,
                                labels: torch.Tensor | None) -> torch.Tensor:
        """``average_velocity`` with sampling-time guidance (the same mix as ``FlowModel.predict``)."""
        u = self.average_velocity(z, t, r, labels)
        if self.guidance > 0 and self.num_classes and labels is not None:
            u = u + self.guidance * (u - self.average_velocity(z, t, r, None))
        return u

    # ------------------------------------------------------------------------- training
    def draw_times(self, n: int, device: torch.device) -> torch.Tensor:
        if self.time_distribution == "logit-normal":
            return torch.sigmoid(torch.randn(n, device=device))
        return torch.rand(n, device=device)

    def draw_intervals(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(t, r) with r >= t: in an ``interval_share`` of the draws the two times sorted, in the others
        r = t = the first time, which follows ``time_distribution`` as flow matching's time does (and is
        drawn first, as there, so that with the same seed both models see the same times)."""
        first, second = self.draw_times(n, device), self.draw_times(n, device)
        interval = torch.rand(n, device=device) < self.interval_share
        return (torch.where(interval, torch.minimum(first, second), first),
                torch.where(interval, torch.maximum(first, second), first))

    def guided_velocity(self, z: torch.Tensor, t: torch.Tensor, v: torch.Tensor,
                        labels: torch.Tensor | None) -> torch.Tensor:
        """The velocity the target is built on: v, or for samples with a digit, v + g * (v - u_uncond)
        with the network's own unconditional velocity u(z, t, t | no digit), held fixed."""
        if not (self.train_guidance > 0 and self.num_classes and labels is not None):
            return v
        with torch.no_grad():
            unconditional = self.average_velocity(z, t, t, None)
        guided = v + self.train_guidance * (v - unconditional)
        has_digit = labels != self.num_classes if not labels.is_floating_point() else torch.ones_like(t, dtype=torch.bool)
        return torch.where(per_image(has_digit), guided, v)

    def weighted_error(self, error: torch.Tensor) -> dict[str, torch.Tensor]:
        """``loss``: the mean over samples of e / stop-gradient(e + c)^p, e a sample's mean squared error;
        ``mse``: the mean of e (unweighted, comparable between runs of different p)."""
        per_sample = error.float().pow(2).flatten(1).mean(1)
        weight = (per_sample.detach() + ADAPTIVE_C).pow(-self.adaptive_power)
        return {"loss": (weight * per_sample).mean(), "mse": per_sample.mean()}

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        noise = torch.randn_like(x)
        t, r = self.draw_intervals(len(x), x.device)
        t, r = t.to(x.dtype), r.to(x.dtype)
        z = torch.lerp(noise, x, per_image(t))
        labels = self.drop_labels(labels)
        v = self.guided_velocity(z, t, x - noise, labels)
        u, target = meanflow_target(lambda z_, t_, r_: self.average_velocity(z_, t_, r_, labels), z, t, r, v)
        error = u - target
        if self.target == "data":  # measured on the predicted digit, as flow matching's target: data is
            error = error * per_image(1 - t)
        return self.weighted_error(error)

    # ------------------------------------------------------------------------- sampling
    @torch.inference_mode()
    def generate(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``steps`` equal steps z_r = z_t + (r - t) * u(z_t, r, t) from t = 0 to r = 1. The times go in
        as (1,) tensors, so the time embeddings are computed once per step, not once per image."""
        z = noise
        times = torch.linspace(0, 1, self.steps + 1, dtype=noise.dtype, device=noise.device)
        for t, r in zip(times[:-1, None], times[1:, None]):
            z = z + (r - t) * self.guided_average_velocity(z, t, r, labels)
        return z
