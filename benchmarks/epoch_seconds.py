"""Seconds per training epoch (60,000 images) of every preset on this machine.

Each preset trains for a short time budget on the full training set; seconds per epoch is
extrapolated from the measured step time (steps per epoch x seconds per step).
Run: .venv/bin/python benchmarks/epoch_seconds.py [--minutes 0.5] [--device cuda] [--amp] [--compile] [PRESET ...]
Writes benchmarks/results/epoch-seconds-<date>-<device>[-amp][-compile].json (or --out) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from mnistgen.config import apply_overrides, load_preset, preset_names
from mnistgen.training import RunOptions, make_trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("presets", nargs="*")
    parser.add_argument("--minutes", type=float, default=0.5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", action="store_true", help="mixed precision (the presets' amp=on)")
    parser.add_argument("--compile", action="store_true", help="torch.compile (the presets' compile=on)")
    parser.add_argument("--out", help="result file (default: benchmarks/results/epoch-seconds-DATE-DEVICE.json)")
    args = parser.parse_args()
    switches = [f"{k}=on" for k in ("amp", "compile") if getattr(args, k)]
    rows = []
    for name in args.presets or preset_names():
        cfg = apply_overrides(load_preset(name), switches)
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
    device = rows[0]["device"].split(":")[0] if rows else "cpu"
    tag = "".join(f"-{k}" for k in ("amp", "compile") if getattr(args, k))
    out = Path(args.out or Path(__file__).parent / "results" / f"epoch-seconds-{time.strftime('%Y-%m-%d')}-{device}{tag}.json")
    gpu = torch.cuda.get_device_name() if device == "cuda" else None
    out.write_text(json.dumps({"machine": platform.platform(), "gpu": gpu, "threads": torch.get_num_threads(),
                               "torch": torch.__version__, "minutes_per_preset": args.minutes,
                               "switches": switches, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
