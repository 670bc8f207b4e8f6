"""The training loop of a one-step flow distilled from a trained flow (``distill_from``): the flow
family's loop (``flow.py``) on pairs the teacher made, instead of on MNIST's digits.

A new run first asks the teacher (a flow_matching run folder, a checkpoint, or ``pretrained:NAME``)
for one digit per training label: from seeded noise, in the teacher's own sampling (its steps, sampler
and guidance). The pairs (noise, teacher's digit) are the training set; the student, a flow_matching
network of the teacher's shape that starts from the teacher's weights, learns to land on the teacher's
digit in one Euler step from the same noise (``distillation_loss``). This is knowledge
distillation of a sampler (Luhman and Luhman 2021) on rectified flow's straight-ish paths (Liu et al.
2022): it costs one pass of the teacher's sampler over the pairs, then plain regression.

Why this and not MeanFlow (``meanflow.py``), which needs no teacher pass: warm-started from the shipped
flow, MeanFlow's one call reached FID 14.6 with recall 0 after 12 minutes on 2 cores; distilling the
same flow, one call reached FID 1.90, recall 0.71, after 5.8 minutes of the teacher's digits and 8 of
training (10,000 samples; docs/benchmarks.md, 2026-12-02).

The teacher's digits are stored in the run folder (``teacher.safetensors``, 8 bits a pixel as MNIST's
own; the noise is drawn again from the run's seed), so a resumed run trains on the very same pairs
without the teacher, which may be gone by then."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data import to_float_images
from ..errors import MnistgenError
from ..fileio import atomic_write
from ..models import FlowModel
from ..models.flow_matching import FlowMatching
from .flow import FlowTrainer
from .meanflow import check_fits, read_flow

PAIRS_FILE = "teacher.safetensors"
VALIDATION_PAIRS = 1000  # the first test labels: enough to see overfitting, 3 seconds of the teacher's time
NOISE_SEEDS = {"train": 1, "validation": 2}  # added to the run's seed; evaluation's seed 0 draws other noise
TEACHER_BATCH = 256  # the teacher's chunk on a CPU (see FlowModel.generation_batch)
# The pseudo-Huber constant of improved consistency training, 0.00054 * sqrt(pixels): 0.0151 for 28x28.
HUBER_C = 0.00054 * 28


def distillation_loss(student: FlowMatching, pairs: torch.Tensor, labels: torch.Tensor | None = None,
                      distance: str = "mse", path_share: float = 0.0) -> dict[str, torch.Tensor]:
    """How far from the teacher's digit one Euler step of ``student`` lands: ``pairs`` (N, 2, 28, 28),
    channel 0 the noise, 1 the digit the teacher made of it. The step starts at t = 0 from the noise, or,
    for a share ``path_share`` of the pairs, at a uniform t on the straight line from the noise to the
    digit (reflow: those points teach a few-step sampler's later steps the same landing point)."""
    noise, digit = pairs[:, :1], pairs[:, 1:]
    t = distillation_times(len(pairs), path_share, pairs.device)
    x_t = torch.lerp(noise, digit, t[:, None, None, None].to(noise.dtype))
    out = student.net(x_t, t.to(noise.dtype), labels)
    landing = out if student.target == "data" else x_t + (1 - t)[:, None, None, None] * out
    return {"loss": digit_distance(landing.float(), digit.float(), distance)}


def distillation_times(n: int, path_share: float, device: torch.device) -> torch.Tensor:
    """t = 0, or uniform on [0, 1) for each pair with probability ``path_share`` (no random numbers are
    drawn at share 0, so such runs repeat those trained before the share existed)."""
    t = torch.zeros(n, device=device)
    if path_share > 0:
        on_path = torch.rand(n, device=device) < path_share
        t = torch.where(on_path, torch.rand(n, device=device), t)
    return t


def digit_distance(landing: torch.Tensor, digit: torch.Tensor, distance: str) -> torch.Tensor:
    """``mse`` per pixel, or ``pseudo-huber`` sqrt(|d|^2 + c^2) - c of each image's error d, which weighs
    a digit's large errors less than their square does (Song and Dhariwal 2023)."""
    if distance == "mse":
        return F.mse_loss(landing, digit)
    squared = (landing - digit).pow(2).flatten(1).sum(1)
    return (torch.sqrt(squared + HUBER_C ** 2) - HUBER_C).mean()


def pair_noise(n: int, seed: int) -> torch.Tensor:
    """The noise (n, 1, 28, 28) of ``n`` pairs, the same on every machine for a seed."""
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()
def teacher_digits(teacher: FlowMatching, noise: torch.Tensor, labels: torch.Tensor, bar: bool = False) -> torch.Tensor:
    """The teacher's digits as uint8 (n, 28, 28): where its sampler carries each noise for its label;
    ``bar`` shows a progress bar (minutes for MNIST's 60,000 on a CPU)."""
    device = next(teacher.parameters()).device
    starts = range(0, len(noise), TEACHER_BATCH)
    chunks = [teacher.decode_latents(noise[i:i + TEACHER_BATCH].to(device), labels[i:i + TEACHER_BATCH].to(device))
              for i in tqdm(starts, desc="teacher's digits", unit="chunk", disable=not bar, leave=False,
                            dynamic_ncols=True, mininterval=0.5)]
    return (torch.cat(chunks)[:, 0] * 255).round().to(torch.uint8).cpu()


def as_pairs(noise: torch.Tensor, digits: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Noise and the teacher's digits (in the flow's range [-1, 1]) as one (n, 2, 28, 28) tensor, so that
    the loop slices a batch of both with one index (channel 0: noise, 1: the digit)."""
    return torch.cat([noise.to(device), to_float_images(digits.numpy(), (-1.0, 1.0)).to(device)], dim=1)


class DistillTrainer(FlowTrainer):
    model: FlowMatching  # config.py refuses distill_from for any other model

    def setup(self) -> None:
        if self.world.size > 1:
            raise MnistgenError("distill_from trains in one process: the teacher's pairs are made once, by it "
                                "(run it without torchrun)")
        super().setup()

    def training_loss(self) -> Callable[..., dict[str, torch.Tensor]]:
        return self.loss_of(self.model)  # one process (setup refuses more): no DDP wrapper to go through

    def loss_of(self, model: FlowModel) -> Callable[..., dict[str, torch.Tensor]]:
        """``distillation_loss`` on the (noise, teacher's digit) pairs, with this run's settings."""
        return partial(distillation_loss, cast(FlowMatching, model), distance=self.t.distill_loss,
                       path_share=self.t.distill_path_share)

    # ------------------------------------------------------------------ the pairs
    def make_pairs(self) -> None:
        """Ask the teacher for its digits and store them in the run folder (atomically)."""
        from safetensors.torch import save

        teacher, teacher_cfg = read_flow(self.t.distill_from, setting="distill_from")
        check_fits(self.t.distill_from, teacher_cfg, self.cfg.model_args, setting="distill_from")
        assert isinstance(teacher, FlowMatching)  # check_fits refused every other model
        self.model.net.load_state_dict(teacher.net.state_dict())  # the student starts as the teacher
        teacher.to(self.device)
        started = time.perf_counter()
        bar = self.opts.progress and sys.stderr.isatty()
        digits = {split: teacher_digits(teacher, self.split_noise(split), labels, bar)
                  for split, labels in self.split_labels().items()}
        seconds = time.perf_counter() - started
        print(f"teacher {self.t.distill_from}: {sum(map(len, digits.values())):,} digits in {seconds:.0f} s "
              f"({teacher.steps} {teacher_cfg.model_args.get('sampler')} steps, guidance {teacher.guidance:g})")
        meta = {"teacher": self.t.distill_from, "seconds": f"{seconds:.1f}", "steps": str(teacher.steps),
                "guidance": str(teacher.guidance)}
        if self.world.main:
            atomic_write(self.out / PAIRS_FILE, lambda fh: fh.write(save(digits, metadata=meta)))
        self.use_pairs(digits)

    def split_labels(self) -> dict[str, torch.Tensor]:
        return {"train": self.y_train.cpu(), "validation": self.y_val[:VALIDATION_PAIRS].cpu()}

    def split_noise(self, split: str) -> torch.Tensor:
        return pair_noise(len(self.split_labels()[split]), self.opts.seed + NOISE_SEEDS[split])

    def use_pairs(self, digits: dict[str, torch.Tensor]) -> None:
        """Train and validate on the pairs: x_* become (n, 2, 28, 28), the labels stay the digits'."""
        self.x_train = as_pairs(self.split_noise("train"), digits["train"], self.device)
        self.x_val = as_pairs(self.split_noise("validation"), digits["validation"], self.device)
        self.y_val = self.y_val[:VALIDATION_PAIRS]

    def read_pairs(self) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.out / PAIRS_FILE
        try:
            digits = load_file(str(path))
        except (OSError, SafetensorError) as exc:
            raise MnistgenError(f"{path}: the teacher's digits of this run cannot be read ({exc}); "
                                f"start a new run") from None
        expected = {split: len(labels) for split, labels in self.split_labels().items()}
        if {split: len(d) for split, d in digits.items()} != expected:
            raise MnistgenError(f"{path} holds pairs for other data ({', '.join(f'{k} {len(v)}' for k, v in digits.items())}"
                                f"; this run has {', '.join(f'{k} {v}' for k, v in expected.items())})")
        self.use_pairs(digits)

    # ------------------------------------------------------------------ the loop's hooks
    def prepare_new_run(self) -> None:
        """Pairs and warm start before the step-0 checkpoint, so that it holds the teacher's weights."""
        self.make_pairs()
        if self.ema is not None:  # the EMA begins where the model does
            self.ema.module.load_state_dict(self.model.state_dict())
        super().prepare_new_run()

    def load_family_state(self, state: dict[str, Any]) -> None:
        super().load_family_state(state)
        self.read_pairs()


def pairs_record(run: str | Path) -> dict[str, str]:
    """What ``teacher.safetensors`` of a distilled run says of its teacher (source, seconds, steps, guidance)."""
    from safetensors import safe_open

    with safe_open(str(Path(run) / PAIRS_FILE), "pt") as fh:
        return dict(fh.metadata() or {})
