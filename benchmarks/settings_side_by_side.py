"""Settings of one preset side by side: each variant trained for the same minutes, one after the other,
then scored as `mnistgen evaluate RUN -n N --steps S` does.

Each --variant is NAME:KEY=VALUE,KEY=VALUE (as `--set` takes them; "NAME:" alone is the preset as it
is). Variants of a distilled preset (flow-1step) train on one set of the teacher's pairs: the first
variant's teacher draws them, the others copy them and start from the same teacher weights, so their
--minutes all go to the student and the comparison is not muddied by other pairs. Run it alone: other
processes on the cores change the epochs a variant gets in its minutes.

Run:   .venv/bin/python benchmarks/settings_side_by_side.py --preset flow --minutes 15 \\
           --variant "the preset:" --variant "logit-normal:model_args.time_distribution=logit-normal"
       .venv/bin/python benchmarks/settings_side_by_side.py --preset flow-1step --minutes 8 --steps 1,2 \\
           --variant "mse (the preset):" --variant "pseudo-huber:distill_loss=pseudo-huber"
A check that it works end to end (a minute on 2 cores), from a tiny teacher:
       .venv/bin/mnistgen train flow --subset 256 --epochs 1 --set model_args.width=8 --out /tmp/tinyflow
       .venv/bin/python benchmarks/settings_side_by_side.py --preset flow-1step --subset 256 --epochs 1 \\
           --set model_args.width=8 --set distill_from=/tmp/tinyflow --variant "a:" \\
           --variant "b:distill_loss=pseudo-huber" --steps 1,2 -n 200 --out /tmp/sbs
Writes benchmarks/results/settings-<preset>-<date>-<device>.json and .md (or --out PATH without suffix);
run folders go under runs/settings-side-by-side/ (not in the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from mnistgen.config import apply_overrides, load_preset
from mnistgen.evaluation import evaluate
from mnistgen.fileio import atomic_write_text
from mnistgen.models.flow_matching import FlowMatching
from mnistgen.training import RunOptions, start_run
from mnistgen.training.distill import PAIRS_FILE, DistillTrainer, pairs_record
from mnistgen.training.meanflow import read_flow

SCORES = ("fid", "precision", "recall", "acceptable")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--variant", action="append", required=True, metavar="NAME:KEY=VALUE,...",
                        help="a name and its settings; repeat for each variant")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting of every variant")
    parser.add_argument("--minutes", type=float, help="training minutes of each variant")
    parser.add_argument("--epochs", type=int, help="training epochs of each variant (instead of --minutes)")
    parser.add_argument("--subset", type=int, help="train on the first N training digits only (checks)")
    parser.add_argument("--steps", help="sampling steps to score, comma-separated (default: the preset's sampling)")
    parser.add_argument("-n", type=int, default=10_000, help="samples per evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="runs/settings-side-by-side", help="where the run folders go")
    parser.add_argument("--out", help="results path without suffix")
    return parser.parse_args()


def parse_variant(spec: str) -> tuple[str, list[str]]:
    name, _, settings = spec.partition(":")
    return name, [s for s in settings.split(",") if s]


def reuse_pairs(source: Path) -> None:
    """Later distilled variants copy ``source``'s pairs and start from the teacher's weights, as its
    first run did, instead of asking the teacher again."""
    def make_pairs(self: DistillTrainer) -> None:
        teacher, _ = read_flow(self.t.distill_from, setting="distill_from")
        assert isinstance(teacher, FlowMatching)  # the first variant's run checked it
        self.model.net.load_state_dict(teacher.net.state_dict())
        shutil.copyfile(source / PAIRS_FILE, self.out / PAIRS_FILE)
        self.read_pairs()

    DistillTrainer.make_pairs = make_pairs  # type: ignore[method-assign]


def train_variant(args: argparse.Namespace, name: str, settings: list[str], index: int) -> tuple[Path, dict]:
    extra = [f"epochs={args.epochs}"] if args.epochs else []
    cfg = apply_overrides(load_preset(args.preset), [*args.set, *settings, *extra])
    out = Path(args.runs) / f"{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}-{index}"
    print(f"== {name}: {' '.join(settings) or 'the preset'} -> {out}", flush=True)
    summary = start_run(cfg, RunOptions(out=str(out), seed=args.seed, subset=args.subset, max_minutes=args.minutes,
                                        progress=False))
    return out, summary


def score(run: Path, steps: int | None, args: argparse.Namespace) -> dict[str, Any]:
    result = evaluate(run, n=args.n, seed=args.seed, sampling={"steps": steps} if steps else None)
    samples = result["samples"]
    return {"steps": steps, **{k: samples[k] for k in SCORES},
            "spread": {k: samples["spread"].get(k) for k in SCORES}, "real": {k: result["real"][k] for k in SCORES}}


def machine() -> str:
    """The CPU's name, its cores and torch's threads and version: what a seconds-per-epoch depends on."""
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
             if line.startswith("model name")] if info.exists() else []
    import torch

    return (f"{names[0] if names else platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}")


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| variant | settings | epochs | s/epoch | steps | FID | precision | recall | acceptable |",
             "|" + "---|" * 9]
    for row in rows:
        for s in row["scores"]:
            cells = [f"{s[k]:.3f} ± {s['spread'][k]:.3f}" if s["spread"].get(k) is not None else f"{s[k]:.3f}"
                     for k in SCORES]
            lines.append(f"| {row['variant']} | {' '.join(row['settings']) or '-'} | {row['epochs']} | "
                         f"{row['seconds_per_epoch']} | {s['steps'] or 'preset'} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    if not (args.minutes or args.epochs):
        raise SystemExit("--minutes or --epochs: variants compare at the same training")
    steps = [int(s) for s in args.steps.split(",")] if args.steps else [None]
    rows = []
    for index, (name, settings) in enumerate(map(parse_variant, args.variant)):
        run, summary = train_variant(args, name, settings, index)
        if index == 0 and (run / PAIRS_FILE).is_file():
            reuse_pairs(run)
        scores = [score(run, s, args) for s in steps]
        rows.append({"variant": name, "settings": settings, "run": str(run), "epochs": summary["epochs_completed"],
                     "seconds_per_epoch": summary.get("seconds_per_epoch"), "training_seconds": summary["training_seconds"],
                     "mixed_precision": summary.get("mixed_precision"), "scores": scores})
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    first = Path(rows[0]["run"])
    record = {"preset": args.preset, "date": time.strftime("%Y-%m-%d"), "machine": machine(),
              "command": "python benchmarks/settings_side_by_side.py " + " ".join(
                  f'--variant "{v}"' for v in args.variant) + f" --preset {args.preset} -n {args.n} --seed {args.seed}"
              + (f" --minutes {args.minutes:g}" if args.minutes else f" --epochs {args.epochs}")
              + (f" --steps {args.steps}" if args.steps else "") + "".join(f" --set {s}" for s in args.set),
              "samples_per_evaluation": args.n, "seed": args.seed,
              "teacher_pairs": pairs_record(first) if (first / PAIRS_FILE).is_file() else None, "rows": rows}
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / \
        f"settings-{args.preset}-{record['date']}-{summary['device'].split(':')[0]}"
    atomic_write_text(out.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    pairs = record["teacher_pairs"]
    notes = f"\nThe teacher's pairs: {pairs['seconds']} s, drawn once by the first variant.\n" if pairs else "\n"
    atomic_write_text(out.with_suffix(".md"), f"# {args.preset}: settings side by side ({record['date']})\n\n"
                      f"{record['machine']}; one training run per variant (seed {args.seed}), {args.n:,} samples "
                      f"per score (± its bootstrap spread).\n\n{table(rows)}\n{notes}\nCommand: `{record['command']}`\n")
    print(f"wrote {out}.json and .md")


if __name__ == "__main__":
    main()
