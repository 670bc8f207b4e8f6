"""The training loop of the adversarial family (GANs), with four losses:

- ``bce``: non-saturating cross-entropy (the seeds' GAN loss, on logits);
- ``hinge``: hinge loss for the discriminator, -D(G(z)) for the generator;
- ``wasserstein``: WGAN with critic weight clipping (Arjovsky et al. 2017);
- ``wgan-gp``: WGAN with a gradient penalty at per-sample interpolates (Gulrajani et al. 2017).

Each training step consumes one real batch. Noise is drawn once per batch and reused by
every update on that batch (seed 000 does this for its two (D, G) rounds). With ``d_steps`` = k
the generator is updated after every k-th discriminator update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F

from ..models import GAN
from .loop import Trainer, make_ema, plain


def gradient_penalty(critic: Callable[..., torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
    """E[(||grad D(x_hat)|| - 1)^2] with x_hat = eps*real + (1-eps)*fake, one eps per sample."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    scores = critic(x_hat, labels)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


class AdversarialTrainer(Trainer):
    model: GAN  # the family this loop trains (make_trainer picks it by the config's family)
    average_gradients_by_hand = True  # D is called on real and fake before one backward; WGAN-GP differentiates twice

    def setup(self) -> None:
        model = self.model
        self.opt_g = self.optimizer(model.generator.parameters(), self.t.lr_g)
        self.opt_d = self.optimizer(model.discriminator.parameters(), self.t.lr_d)
        self.G = self.maybe_compile(model.generate)
        self.D = self.maybe_compile(model.discriminate)
        self.ema = make_ema(model, self.t.ema_decay)
        self.last_g: dict[str, float] = {}

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        d_real, d_fake = self.D(real, labels), self.D(fake, labels)
        loss = self.t.loss
        if loss == "bce":
            terms = {"d_loss": F.softplus(-d_real).mean() + F.softplus(d_fake).mean()}
        elif loss == "hinge":
            terms = {"d_loss": F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()}
        else:
            w = d_real.float().mean() - d_fake.float().mean()
            terms = {"d_loss": -w, "wasserstein": w}
            if loss == "wgan-gp":
                gp = gradient_penalty(self.D, real, fake, labels)
                terms["gp"] = gp
                terms["d_loss"] = -w + self.t.gp_weight * gp
        terms["d_real"] = d_real.float().mean()
        terms["d_fake"] = d_fake.float().mean()
        return terms

    def g_loss(self, fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        d_fake = self.D(fake, labels)
        return F.softplus(-d_fake).mean() if self.t.loss == "bce" else -d_fake.float().mean()

    def train_step(self, real: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        t = self.t
        z = self.draw_noise(real.shape[0])
        # Fakes are asked for the batch's own digits: the training frequencies, at no extra cost.
        half = len(z) // 2 if t.split_real_fake else len(z)
        z_d, real_d, labels_d = z[:half], real[:half], labels[:half]
        out: dict[str, float] = {}
        for r in range(t.rounds_per_batch):
            with self.autocast():
                with torch.no_grad():
                    fake = self.G(z_d, labels_d)
                d_terms = self.d_loss(real_d, fake, labels_d)
            self.backward_step(d_terms["d_loss"], self.opt_d)
            if t.loss == "wasserstein" and t.clip_value > 0:
                with torch.no_grad():
                    for p in self.model.discriminator.parameters():
                        p.clamp_(-t.clip_value, t.clip_value)
            out.update({k: float(v.detach()) for k, v in d_terms.items()})
            if (self.global_step * t.rounds_per_batch + r + 1) % t.d_steps == 0:
                with self.autocast():
                    g = self.g_loss(self.G(z, labels), labels)
                # Only G's optimizer steps; D's gradients from this pass are cleared before D's next step.
                self.backward_step(g, self.opt_g)
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                self.last_g = {"g_loss": float(g.detach())}
        out.update(self.last_g)
        return out

    def draw_noise(self, n: int) -> torch.Tensor:
        """The batch's latent noise (a method, so that a test can give every rank its share of one draw)."""
        return torch.randn(n, self.model.latent_dim, device=self.device)

    def sampling_model(self) -> GAN:
        return cast(GAN, self.ema.module) if self.ema is not None else self.model  # the EMA wraps self.model

    def learning_rates(self) -> dict[str, float]:
        return {"lr_g": self.opt_g.param_groups[0]["lr"], "lr_d": self.opt_d.param_groups[0]["lr"]}

    def family_state(self) -> dict[str, Any]:
        return {"opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "ema": plain(self.ema.state_dict()) if self.ema is not None else None, "last_g": self.last_g}

    def load_family_state(self, state: dict[str, Any]) -> None:
        self.load_optimizer(self.opt_g, state["opt_g"])
        self.load_optimizer(self.opt_d, state["opt_d"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.last_g = dict(state["last_g"])
