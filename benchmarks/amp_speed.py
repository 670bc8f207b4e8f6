"""Seconds per training step of a GAN preset in fp32, under autocast, and torch.compiled.

A step is what the adversarial trainer does with one real batch for a ``bce`` preset: for each of
``rounds_per_batch`` rounds, one discriminator update, then one generator update, with the same
noise (seed 000's loop). Real images are random in the model's data range: speed does not depend
on what the pixels show. Autocast is bf16 on CPU, fp16 with a gradient scaler on CUDA (what
``--amp`` does). Besides the time, each mode's first-step losses are printed next to fp32's for the
same weights and batch, a cheap check that the lower precision computes the same thing.

Run: .venv/bin/python benchmarks/amp_speed.py [PRESET] [--device cpu|cuda] [--steps 5] [--warmup 2]
     [--modes fp32,amp,compile,amp+compile] [--batch-size N] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mnistgen.config import load_preset
from mnistgen.models import GAN, build_model


def make_step(model: GAN, rounds: int, lr_g: float, lr_d: float, betas: tuple[float, float], device: torch.device,
              amp: bool, compiled: bool) -> Callable[[torch.Tensor, torch.Tensor], tuple[float, float]]:
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    G = torch.compile(model.generate) if compiled else model.generate
    D = torch.compile(model.discriminate) if compiled else model.discriminate
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=lr_g, betas=betas)
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=lr_d, betas=betas)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")

    def update(loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def step(real: torch.Tensor, z: torch.Tensor) -> tuple[float, float]:
        for _ in range(rounds):
            with torch.autocast(device.type, dtype=dtype, enabled=amp):
                with torch.no_grad():
                    fake = G(z)
                d_loss = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
            update(d_loss, opt_d)
            with torch.autocast(device.type, dtype=dtype, enabled=amp):
                g_loss = F.softplus(-D(G(z))).mean()
            update(g_loss, opt_g)
        return float(d_loss.detach()), float(g_loss.detach())  # float() waits for the device, so the timing is honest

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", nargs="?", default="dcgan-seed000")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    parser.add_argument("--modes", default="fp32,amp,compile,amp+compile")
    parser.add_argument("--batch-size", type=int, help="instead of the preset's (a smaller one measures faster)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    cfg, device = load_preset(args.preset), torch.device(args.device)
    t = cfg.train
    batch = args.batch_size or t.batch_size
    torch.manual_seed(0)
    initial = build_model(cfg.model, **cfg.model_args).to(device)
    if not isinstance(initial, GAN):
        parser.error(f"preset {args.preset} is a {initial.family}: this benchmark times GAN steps")
    low, high = initial.data_range
    real = torch.rand(batch, 1, 28, 28, device=device) * (high - low) + low
    z = torch.randn(batch, initial.latent_dim, device=device)
    print(f"{args.preset} on {device} ({torch.get_num_threads()} threads, torch {torch.__version__}), "
          f"batch {batch}, {t.rounds_per_batch} (D, G) round(s) per step", flush=True)
    rows = []
    for mode in args.modes.split(","):
        model = copy.deepcopy(initial)  # every mode starts from the same weights
        step = make_step(model, t.rounds_per_batch, t.lr_g, t.lr_d, t.betas, device,
                         amp="amp" in mode, compiled="compile" in mode)
        start = time.perf_counter()
        try:
            first = step(real, z)
        except Exception as exc:  # torch.compile can fail on some torch/device pairs: record it, go on
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            rows.append({"mode": mode, "failed": f"{type(exc).__name__}: {reason}"})
            print(f"{mode:12s} failed: {rows[-1]['failed']}", flush=True)
            continue
        for _ in range(args.warmup - 1):
            step(real, z)
        warmup_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.steps):
            step(real, z)
        per_step = (time.perf_counter() - start) / args.steps
        rows.append({"mode": mode, "seconds_per_step": round(per_step, 4), "warmup_seconds": round(warmup_s, 1),
                     "first_step_d_loss": round(first[0], 4), "first_step_g_loss": round(first[1], 4)})
        print(f"{mode:12s} {per_step:8.4f} s/step  (warm-up {warmup_s:.1f} s; first step D {first[0]:.4f} "
              f"G {first[1]:.4f})", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"preset": args.preset, "device": str(device), "batch_size": batch, "machine": platform.platform(),
                       "threads": torch.get_num_threads(), "torch": torch.__version__,
                       "steps": args.steps, "warmup": args.warmup, "results": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
