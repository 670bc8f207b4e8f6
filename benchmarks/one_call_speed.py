"""One-call sampling speed of the shipped flow-1step by chunk size, float32 against bf16 autocast, and the
scores of 10,000 digits both ways (seed 0). Run alone: other processes on the cores slow it.

Run:   .venv/bin/python benchmarks/one_call_speed.py > benchmarks/results/one-call-speed-<date>-cpu.txt
"""

from __future__ import annotations

import time

import torch

from mnistgen.evaluation import EvalOptions, evaluate_images
from mnistgen.models import FlowModel
from mnistgen.pretrained import load_pretrained

TIMED = 4096  # digits a timing draws
CHUNKS = (64, 128, 256, 512, 1024)


def latents(model: FlowModel, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, model.latent_dim, generator=gen), torch.randint(10, (n,), generator=gen)


def draw(model: FlowModel, z: torch.Tensor, labels: torch.Tensor, bf16: bool) -> torch.Tensor:
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model.decode_latents(z, labels).float()


def digits_per_second(model: FlowModel, chunk: int, bf16: bool, repeats: int = 3) -> float:
    """The best of ``repeats`` timings of one draw of TIMED digits in chunks of ``chunk``."""
    model.generation_batch = chunk
    z, labels = latents(model, TIMED)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        draw(model, z, labels, bf16)
        best = min(best, time.perf_counter() - started)
    return TIMED / best


def main() -> None:
    model, _ = load_pretrained("flow-1step")
    model.bf16_sampling = False  # this script turns autocast on and off itself
    for chunk in CHUNKS:
        for bf16 in (False, True):
            print(f"chunk {chunk} bf16 {bf16}: {digits_per_second(model, chunk, bf16):,.0f} digits/s", flush=True)
    model.generation_batch = 256
    z, labels = latents(model, 10_000)
    for bf16 in (False, True):
        scores = evaluate_images(draw(model, z, labels, bf16), "flow-1step", EvalOptions(n=10_000, seed=0))["samples"]
        print("bf16", bf16, {k: round(scores[k], 4) for k in ("fid", "precision", "recall", "acceptable")}, flush=True)


if __name__ == "__main__":
    main()
