"""Seconds per training epoch (60,000 images) of every preset on this machine.

Each preset trains for a short time budget on the full training set; seconds per epoch is
extrapolated from the measured step time (steps per epoch x seconds per step).
Run: .venv/bin/python benchmarks/epoch_seconds.py [--minutes 0.5] [PRESET ...]
Writes benchmarks/results/epoch-seconds-<date>-<device>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from mnistgen.config import load_preset, preset_names
from mnistgen.training import RunOptions, make_trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("presets", nargs="*")
    parser.add_argument("--minutes", type=float, default=0.5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    rows = []
    for name in args.presets or preset_names():
        cfg = load_preset(name)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = make_trainer(cfg, RunOptions(out=tmp, device=args.device, max_minutes=args.minutes,
                                                   progress=False))
            trainer.prepare_new_run()
            summary = trainer.run()
        row = {"preset": name, "batch_size": cfg.train.batch_size, "steps_measured": summary["steps"],
               "seconds_per_epoch": summary["seconds_per_epoch"], "epochs_in_preset": cfg.train.epochs,
               "hours_for_preset_epochs": round(summary["seconds_per_epoch"] * cfg.train.epochs / 3600, 2),
               "device": summary["device"]}
        rows.append(row)
        print(f"{name:34s} {row['seconds_per_epoch']:9.1f} s/epoch  "
              f"({row['steps_measured']} steps measured; {cfg.train.epochs} epochs = "
              f"{row['hours_for_preset_epochs']} h)", flush=True)
    device = rows[0]["device"] if rows else "cpu"
    out = Path(__file__).parent / "results" / f"epoch-seconds-{time.strftime('%Y-%m-%d')}-{device}.json"
    out.write_text(json.dumps({"machine": platform.platform(), "threads": torch.get_num_threads(),
                               "torch": torch.__version__, "minutes_per_preset": args.minutes,
                               "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
