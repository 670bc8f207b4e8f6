"""What --eval-every costs: seconds per evaluation of --eval-n samples beside an epoch's training time.

Each preset trains a few short epochs (the first --subset training images) with eval_every=1. Each
epoch's record gives its training seconds, from which the seconds of a full epoch (60,000 images) are
projected by the step count, and the evaluation's ``eval_seconds``. Their ratio says what evaluating
every epoch adds, and holds better than either time on a shared machine.
Run: .venv/bin/python benchmarks/eval_cost.py [--subset 6000] [--epochs 2] [--eval-n 1000] [PRESET ...]
Writes benchmarks/results/eval-cost-<date>-<device>.json (or --out) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from mnistgen.config import apply_overrides, load_preset
from mnistgen.training import RunOptions, read_metrics, start_run

FULL_TRAINING_SET = 60_000


def measure(preset: str, epochs: int, subset: int, n: int, device: str) -> list[dict]:
    """Per epoch: the projected seconds of a full epoch, the evaluation's seconds and their ratio."""
    cfg = apply_overrides(load_preset(preset), [f"epochs={epochs}", "eval_every=1", f"eval_n={n}"])
    full_epoch_steps = FULL_TRAINING_SET // cfg.train.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        summary = start_run(cfg, RunOptions(out=str(Path(tmp) / "run"), device=device, subset=subset,
                                             progress=False))
        records = read_metrics(Path(tmp) / "run" / "metrics.jsonl")
    rows, seconds, steps = [], 0.0, 0
    for r in records:  # "seconds" and "step": the training time and steps so far, at the epoch's end
        per_step = (r["seconds"] - seconds) / (r["step"] - steps)
        seconds, steps = r["seconds"], r["step"]
        epoch_seconds = per_step * full_epoch_steps
        rows.append({"preset": preset, "epoch": r["epoch"], "seconds_per_step": round(per_step, 4),
                     "full_epoch_seconds": round(epoch_seconds, 1), "eval_seconds": r["eval_seconds"],
                     "ratio": round(r["eval_seconds"] / epoch_seconds, 4), "device": summary["device"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("presets", nargs="*", default=["vae", "gan", "flow"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--subset", type=int, default=6000, help="training images per (short) epoch")
    parser.add_argument("--eval-n", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="result file (default: benchmarks/results/eval-cost-DATE-DEVICE.json)")
    args = parser.parse_args()
    rows = []
    for preset in args.presets:
        for row in measure(preset, args.epochs, args.subset, args.eval_n, args.device):
            rows.append(row)
            print(f"{preset:6s} epoch {row['epoch']}: {row['full_epoch_seconds']:7.1f} s a full epoch, "
                  f"{row['eval_seconds']:6.2f} s evaluating {args.eval_n:,} samples ({row['ratio']:.1%})", flush=True)
    device = rows[0]["device"].split(":")[0] if rows else args.device
    out = Path(args.out or Path(__file__).parent / "results" / f"eval-cost-{time.strftime('%Y-%m-%d')}-{device}.json")
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                               "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
                               "torch": torch.__version__, "eval_n": args.eval_n, "subset": args.subset,
                               "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
