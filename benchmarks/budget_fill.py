"""What `mnistgen train PRESET --max-minutes M` (no --epochs) gives, run exactly as a user runs it
(issue 13 §5: the defaults now train for the whole budget instead of stopping at their epochs).

Run:   .venv/bin/python benchmarks/budget_fill.py [PRESET ...] [--minutes 5] [--seed 0]
Each preset is trained by the CLI into runs/budget-fill/, then scored by `mnistgen evaluate`
(10,000 samples, seed 0). Writes benchmarks/results/budget-fill-<date>-<device>.json.
Run it with nothing else on the machine: training time is wall-clock.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCORES = ("acceptable", "coverage", "inception_score", "fid", "precision", "recall")


def mnistgen(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "mnistgen", *args], check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", default=["vae", "gan"])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    stamp = time.strftime("%Y-%m-%d")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for preset in args.presets:
        run = Path("runs/budget-fill") / f"{stamp}-{preset}-{time.strftime('%H%M%S')}"
        mnistgen("train", preset, "--max-minutes", f"{args.minutes:g}", "--seed", str(args.seed),
                 "--out", str(run), "--no-progress")
        scores_file = ROOT / run / "scores.json"
        mnistgen("evaluate", str(run), "-n", "10000", "--seed", "0", "--json", str(run / "scores.json"))
        summary = json.loads((ROOT / run / "summary.json").read_text())
        scores = json.loads(scores_file.read_text())
        rows.append({
            "preset": preset,
            "command": f"mnistgen train {preset} --max-minutes {args.minutes:g} --seed {args.seed}",
            "epochs_completed": summary["epochs_completed"], "steps": summary["steps"],
            "training_seconds": summary["training_seconds"], "stop_reason": summary["stop_reason"],
            "evaluated": {"n": scores["samples"]["n"], "seed": scores["seed"]},
            **{k: scores["samples"][k] for k in SCORES},
            "real_ceiling": {k: scores["real"][k] for k in SCORES},
        })
        print(json.dumps(rows[-1], indent=2), flush=True)
    out = ROOT / "benchmarks" / "results" / f"budget-fill-{stamp}-{device}.json"
    out.write_text(json.dumps({"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {device}",
                               "torch": torch.__version__, "runs": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
