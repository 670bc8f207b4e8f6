"""Where a preset's training time goes on this machine, and what candidate speedups change.

For a preset the trainer is built exactly as ``epoch_seconds.py`` / ``mnistgen train`` build it
(full training set, the preset's batch size), then, for each variant, on the same starting weights:
``--steps`` timed training steps after ``--warmup`` untimed ones (median seconds per step), and
optionally one validation pass (VAEs), one epoch-end (validation + grid + checkpoint) and a
``torch.profiler`` table of the top ops by self CPU time over ``--profile-steps`` steps.
Variants are interleaved (A B A B ...) ``--repeats`` times so that the machine's drift hits all
alike; the median over repeats is reported.

Variants (comma-separated, ``+`` combines): ``base`` (the trainer as the code builds it),
``cl`` (channels_last model and inputs), ``nocl`` (contiguous NCHW, to measure the code's
default when that is channels_last), ``fused`` (fused Adam/AdamW kernels), ``foreach``
(multi-tensor Adam), ``forloop`` (per-parameter Adam, torch's CPU default before this change), ``compile`` (torch.compile as ``--compile`` does),
``t1`` (one intra-op thread).

Run: .venv/bin/python benchmarks/profile_presets.py PRESET [--variants base,cl,fused] [--steps 5]
     [--warmup 2] [--repeats 3] [--profile-steps 2] [--validation] [--epoch-end] [--json OUT]
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import statistics
import tempfile
import time
from typing import Any

import torch

from mnistgen.config import load_preset
from mnistgen.training import RunOptions, Trainer, family, make_trainer


def rebuild_optimizers(trainer: Trainer, **flags: bool) -> None:
    """Same optimizer and hyperparameters, another kernel (fused / foreach / for-loop)."""
    for name in ("opt", "opt_g", "opt_d"):
        old = getattr(trainer, name, None)
        if old is not None:
            accepted = set(inspect.signature(type(old)).parameters) - {"params", "fused", "foreach"}
            group = {k: v for k, v in old.param_groups[0].items() if k in accepted}
            setattr(trainer, name, type(old)(old.param_groups[0]["params"], **group, **flags))
    scheduler = getattr(trainer, "scheduler", None)  # the likelihood trainers', which have one optimizer
    if scheduler is not None:
        scheduler.optimizer = trainer.opt  # type: ignore[attr-defined]


def build(preset: str, variant: str, tmp: str, initial: dict[str, Any] | None) -> Trainer:
    parts = set(variant.split("+"))
    cfg = load_preset(preset)
    if "compile" in parts:
        cfg.train.compile = "on"
    trainer = make_trainer(cfg, RunOptions(out=tmp, device="cpu", progress=False, write_cache=False))
    if initial is not None:
        trainer.model.load_state_dict(initial)
    fmt = torch.channels_last if "cl" in parts else torch.contiguous_format if "nocl" in parts else None
    if fmt is not None:
        trainer.model.to(memory_format=fmt)  # type: ignore[call-overload]  # Module.to takes it; the stubs omit it
        trainer.x_train = trainer.x_train.contiguous(memory_format=fmt)
        trainer.x_val = trainer.x_val.contiguous(memory_format=fmt)
    if "fused" in parts:
        rebuild_optimizers(trainer, fused=True)
    if "foreach" in parts:
        rebuild_optimizers(trainer, foreach=True)
    if "forloop" in parts:
        rebuild_optimizers(trainer, foreach=False)
    return trainer


def time_steps(trainer: Trainer, n: int, start: int = 0, cpu: list[float] | None = None) -> list[float]:
    """Seconds of each of ``n`` training steps, batches as the loop assembles them; the process's
    CPU seconds per step go to ``cpu`` (less sensitive than wall time to other jobs on the cores)."""
    times = []
    for step, idx in enumerate(trainer.batches.epoch(0, start_step=start)):
        if step >= n:
            break
        started, cpu_started = time.perf_counter(), time.process_time()
        terms = trainer.train_step(trainer.x_train[idx], trainer.y_train[idx])
        trainer.step_in_epoch += 1
        trainer.global_step += 1
        times.append(time.perf_counter() - started)
        if cpu is not None:
            cpu.append(time.process_time() - cpu_started)
        assert all(v == v for v in terms.values()), terms
    return times


def profile_table(trainer: Trainer, n: int, top: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        time_steps(trainer, n, start=trainer.step_in_epoch)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=48)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset")
    parser.add_argument("--variants", default="base")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile-steps", type=int, default=0, help="profile this many steps of each variant (first repeat)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--validation", action="store_true", help="also time one validation pass (VAEs)")
    parser.add_argument("--epoch-end", action="store_true", help="also time one epoch-end (validation, grid, checkpoint)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads for all variants")
    parser.add_argument("--val-batch", type=int, help="cap on validation chunks instead of family.VAL_BATCH")
    parser.add_argument("--json", help="append the results (one JSON line) here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.val_batch:
        family.VAL_BATCH = args.val_batch
    variants = args.variants.split(",")
    results: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    initial = None
    for repeat in range(args.repeats):
        for variant in variants:
            threads = torch.get_num_threads()
            if "t1" in variant.split("+"):
                torch.set_num_threads(1)
            with tempfile.TemporaryDirectory() as tmp:
                torch.manual_seed(0)
                trainer = build(args.preset, variant, tmp, initial)
                if initial is None:
                    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
                started = time.perf_counter()
                time_steps(trainer, args.warmup)
                r = results[variant]
                r.setdefault("warmup_s", []).append(time.perf_counter() - started)
                cpu: list[float] = []
                r.setdefault("step_s", []).append(statistics.median(time_steps(trainer, args.steps, args.warmup, cpu)))
                r.setdefault("step_cpu_s", []).append(statistics.median(cpu))
                batch = next(iter(trainer.batches.epoch(0)))
                started = time.perf_counter()
                for _ in range(20):
                    trainer.x_train[batch], trainer.y_train[batch]
                r.setdefault("batch_assembly_s", []).append((time.perf_counter() - started) / 20)
                if args.validation and hasattr(trainer, "validation_loss"):  # the VAE trainer
                    started = time.perf_counter()
                    trainer.validation_loss()
                    r.setdefault("validation_s", []).append(time.perf_counter() - started)
                if args.epoch_end:
                    trainer.writer.tensorboard = _NullWriter()
                    started = time.perf_counter()
                    trainer._finish_epoch()
                    r.setdefault("epoch_end_s", []).append(time.perf_counter() - started)
                if args.profile_steps and repeat == 0:
                    print(f"--- {args.preset} [{variant}] top {args.top} ops by self CPU time, "
                          f"{args.profile_steps} steps", flush=True)
                    print(profile_table(trainer, args.profile_steps, args.top), flush=True)
            torch.set_num_threads(threads)
            print(f"{args.preset} [{variant}] repeat {repeat + 1}: "
                  + "  ".join(f"{k} {v[-1]:.4f}" for k, v in results[variant].items()), flush=True)
    steps_per_epoch = len(trainer.batches)
    rows = []
    base_step = statistics.median(results[variants[0]]["step_s"])
    print(f"\n{args.preset}: medians over {args.repeats} repeats ({steps_per_epoch} steps per epoch)")
    for variant, r in results.items():
        med = {k: statistics.median(v) for k, v in r.items()}
        epoch = med["step_s"] * steps_per_epoch + med.get("epoch_end_s", med.get("validation_s", 0.0))
        row = {"variant": variant, **{k: round(v, 5) for k, v in med.items()}, "runs": r,
               "projected_epoch_s": round(epoch, 1), "speedup_vs_first": round(base_step / med["step_s"], 3)}
        rows.append(row)
        print(f"  {variant:22s} step {med['step_s']:.4f} s  (range {min(r['step_s']):.4f}-{max(r['step_s']):.4f})  "
              f"x{row['speedup_vs_first']:.2f}  cpu {med['step_cpu_s']:.3f} s  epoch ~{epoch:.0f} s  warm-up {med['warmup_s']:.1f} s"
              + "".join(f"  {k} {med[k]:.3f} s" for k in ("validation_s", "epoch_end_s") if k in med))
    if args.json:
        record = {"preset": args.preset, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(),
                  "threads": torch.get_num_threads(), "torch": torch.__version__, "steps": args.steps,
                  "warmup": args.warmup, "repeats": args.repeats, "steps_per_epoch": steps_per_epoch, "results": rows}
        with open(args.json, "a") as fh:
            fh.write(json.dumps(record) + "\n")


class _NullWriter:
    """Stands in for the TensorBoard writer, which ``run`` opens and this script does not."""

    def add_scalar(self, *args: Any) -> None:
        pass


if __name__ == "__main__":
    main()
