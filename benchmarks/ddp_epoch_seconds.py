"""Seconds per epoch of data-parallel training against one process (issue 17).

Trains each preset for --epochs epochs with `mnistgen train --nproc N` for every N in --nproc
(1 runs in this process's way: no torchrun), the same global batch, and reads the training seconds
from each run's summary. On 2 CPU cores expect little or no gain: two processes share the same two
cores, and each step adds an all-reduce of the gradients; the point is that it is correct.

Run:   .venv/bin/python benchmarks/ddp_epoch_seconds.py vae flow --nproc 1,2 --epochs 1
Writes benchmarks/results/ddp-epoch-seconds-<date>-<device>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="+")
    parser.add_argument("--nproc", default="1,2")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", help="results path without suffix")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            for n in (int(k) for k in args.nproc.split(",")):
                run = Path(tmp) / f"{preset}-{n}"
                argv = [sys.executable, "-m", "mnistgen", "train", preset, "--epochs", str(args.epochs),
                        "--out", str(run), "--no-progress", "--device", args.device, "--nproc", str(n)]
                started = time.perf_counter()
                subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
                wall = time.perf_counter() - started
                summary = json.loads((run / "summary.json").read_text())
                rows.append({"preset": preset, "processes": n, "epochs": summary["epochs_completed"],
                             "seconds_per_epoch": summary["seconds_per_epoch"], "wall_seconds": round(wall, 1),
                             "device": summary["device"]})
                print(json.dumps(rows[-1]), flush=True)
    device = rows[0]["device"].split(":")[0]
    out = Path(args.out) if args.out else \
        Path(__file__).parent / "results" / f"ddp-epoch-seconds-{time.strftime('%Y-%m-%d')}-{device}"
    command = f"benchmarks/ddp_epoch_seconds.py {' '.join(args.presets)} --nproc {args.nproc} --epochs {args.epochs}"
    out.with_suffix(".json").write_text(json.dumps({"command": command, "machine": platform.platform(),
                                                     "torch": torch.__version__, "rows": rows}, indent=2) + "\n")
    lines = [f"# Data-parallel training: seconds per epoch\n\n`{command}` on {platform.platform()}\n",
             "| preset | processes | seconds per epoch (training) | wall seconds (start-up included) |",
             "|---|---:|---:|---:|"]
    lines += [f"| {r['preset']} | {r['processes']} | {r['seconds_per_epoch']:.1f} | {r['wall_seconds']:.1f} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}.json and .md")


if __name__ == "__main__":
    main()
