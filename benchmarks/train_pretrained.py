"""Train the pretrained weights shipped in the package, from scratch, and record what they score.

Each preset trains from scratch with --seed for its preset's epochs, or --epochs (as `mnistgen train
PRESET --epochs E --seed S`): a count of epochs, not minutes, so the same command makes the same weights
on a slower or busier machine. Its sampling weights are exported in float16 to --out (default src/mnistgen/pretrained), and those
very weights are scored by `mnistgen evaluate --pretrained NAME` (n = 10,000); the record beside the
weights keeps the scores, the float32 run's scores (so the cost of float16 shows), and this command.

Run:   .venv/bin/python benchmarks/train_pretrained.py vae gan --seed 0
       .venv/bin/python benchmarks/train_pretrained.py flow-1step --run RUN --command "..."   (ship a finished run)
           [--set model_args.bf16_sampling=true]   (a sampling setting of the shipped config)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from mnistgen.config import Config, apply_overrides, load_preset, parse_override
from mnistgen.evaluation import evaluate
from mnistgen.fileio import atomic_write_text
from mnistgen.pretrained import FOLDER_ENV, export_run
from mnistgen.sampling import FLOW_SAMPLING
from mnistgen.training import RunOptions, start_run

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "mnistgen" / "pretrained"
KEPT = ("n", "acceptable", "coverage", "inception_score", "fid", "kid", "precision", "recall", "spread")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="+")
    parser.add_argument("--epochs", type=int, help="default: the preset's epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--runs", default="runs/pretrained", help="where the training runs go (not shipped)")
    parser.add_argument("--run", help="ship this finished run of the one preset named instead of training one")
    parser.add_argument("--command", help="with --run: the command that made that run, for the record")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="with --run: a sampling setting of the shipped config (e.g. model_args.bf16_sampling=true)")
    args = parser.parse_args()
    if args.run and len(args.presets) != 1:
        parser.error("--run ships one run: name its one preset")
    return args


def train(preset: str, args: argparse.Namespace) -> tuple[Path, dict[str, Any], str]:
    """A new run of ``preset`` from scratch; its folder, summary and the command that repeats it."""
    run = Path(args.runs) / f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = load_preset(preset)
    epochs = args.epochs or cfg.train.epochs
    summary = start_run(apply_overrides(cfg, [f"epochs={epochs}"]), RunOptions(out=str(run), seed=args.seed))
    return run, summary, f"benchmarks/train_pretrained.py {preset} --epochs {epochs} --seed {args.seed}"


def run_sampling(settings: list[str]) -> dict[str, Any]:
    """The sampling options (steps, sampler, guidance) among --set's settings: the float32 run is scored
    with them too, so its scores and the shipped weights' differ only by the float16 export."""
    given = dict(parse_override(item) for item in settings)
    return {name: given[f"model_args.{name}"] for name in FLOW_SAMPLING if f"model_args.{name}" in given}


def ship(preset: str, run: Path, summary: dict[str, Any], command: str, args: argparse.Namespace) -> None:
    """Export ``run``'s sampling weights in float16 and record the scores of the run and of those weights."""
    out = Path(args.out)
    full = evaluate(run, n=args.n, seed=args.seed, sampling=run_sampling(args.set) or None)
    record = {"name": preset, "preset": preset, "seed": args.seed, "epochs": summary["epochs_completed"],
              "command": command, "made": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "training": summary,
              "scores_float32": {k: full["samples"][k] for k in KEPT}}
    path = export_run(run, preset, out, record)
    if args.set:  # sampling settings of the shipped weights: the float16 scores below are taken with them
        meta = out / f"{preset}.json"
        shipped = json.loads(meta.read_text())
        shipped["config"] = apply_overrides(Config.from_dict(shipped["config"]), args.set).to_dict()
        record["shipped_with"] = list(args.set)
        atomic_write_text(meta, json.dumps({**shipped, **record}, indent=2) + "\n")
    os.environ[FOLDER_ENV] = str(out)
    shipped = evaluate(preset, n=args.n, seed=args.seed, pretrained=True)
    record["scores"] = {k: shipped["samples"][k] for k in KEPT}
    record["scores_note"] = (f"mnistgen evaluate --pretrained {preset} -n {args.n} --seed {args.seed}: these float16 "
                             f"weights; scores_float32: the run before export")
    meta = out / f"{preset}.json"
    atomic_write_text(meta, json.dumps({**json.loads(meta.read_text()), **record}, indent=2) + "\n")
    print(f"{preset}: {path} ({path.stat().st_size / 1e6:.2f} MB); acceptable {record['scores']['acceptable']:.3f} "
          f"(float32 {full['samples']['acceptable']:.3f}), FID {record['scores']['fid']:.2f} "
          f"(float32 {full['samples']['fid']:.2f})", flush=True)


def main() -> None:
    args = parse_args()
    if args.run:
        run = Path(args.run)
        summary = json.loads((run / "summary.json").read_text())
        command = args.command or f"(the run {run.name})"
        return ship(args.presets[0], run, summary, command, args)
    for preset in args.presets:
        ship(preset, *train(preset, args), args)


if __name__ == "__main__":
    main()
