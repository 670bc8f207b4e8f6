"""A one-step flow's few-call digits beside the flow it comes from and the GAN, measured in one run on one machine.

Trains --preset (flow-1step: the flow distilled into one step; meanflow: MeanFlow warm-started from
the flow), from --teacher (a flow run folder or checkpoint, or the shipped flow as pretrained:flow, the
default; "none" trains meanflow from scratch) for --epochs epochs or --minutes minutes; or takes a
finished run of either (--run). Then scores n samples of it at each of --steps network calls a digit
(1, 2, 4, 9 and 18) as `mnistgen evaluate RUN --steps S` does; the teacher at --flow-sampling (1, 2
and 4 Euler steps, 5 Heun steps, and the preset's 5 Heun steps with guidance: 1, 2, 4, 9 and 18 calls);
and --gan (the shipped GAN by default, one call). Each row is also timed: digits per second through
sample_images, the path of `mnistgen sample`. A distilled run's record also gives the teacher's time to
draw its pairs (outside --minutes, which counts the student's training).

Run:   .venv/bin/python benchmarks/one_step_quality.py [--preset flow-1step|meanflow]
           [--teacher RUN|pretrained:flow|none] [--epochs E | --minutes M] [--steps 1,2,4] [-n 10000]
           [--set KEY=VALUE ...] [--run RUN]
       .venv/bin/python benchmarks/one_step_quality.py --replot RESULTS.json   (the plot again, nothing sampled)
A check that it works end to end (a few minutes on 2 cores):
       .venv/bin/python benchmarks/one_step_quality.py --subset 256 --epochs 1 -n 200 --out /tmp/one-step-check
Writes benchmarks/results/one-step-quality-<date>-<device>-<preset>.json, .md and .png (or --out PATH
without suffix); the run folder goes under runs/one-step-quality/ (not in the repository).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from mnistgen import plots
from mnistgen.checkpoint import find_checkpoint, load_checkpoint
from mnistgen.config import apply_overrides, load_preset
from mnistgen.evaluation import evaluate
from mnistgen.fileio import atomic_write_text
from mnistgen.models.base import DigitModel
from mnistgen.pretrained import load_pretrained, read_record
from mnistgen.sampling import load_trained_model, network_calls, sample_images, set_sampling
from mnistgen.training import RunOptions, start_run
from mnistgen.training.distill import PAIRS_FILE, pairs_record
from mnistgen.training.meanflow import PRETRAINED_PREFIX

SCORES = ("acceptable", "coverage", "inception_score", "fid", "kid", "precision", "recall")
TIMED = 2000  # digits drawn to time a row (after a warm-up): whole batches for every model here


def preset_sampling(preset: str = "flow") -> str:
    """The flow preset's own sampling as SAMPLER:STEPS:GUIDANCE (read, so that it follows the preset)."""
    args = load_preset(preset).model_args
    return f"{args['sampler']}:{args['steps']}:{args['guidance']:g}"


# 1, 2 and 4 Euler steps, 5 Heun steps (the step ending at t = 1 is Euler: 9 calls), then the preset's
# sampling (5 Heun steps with guidance: 18 calls)
FLOW_SAMPLINGS = f"euler:1:0,euler:2:0,euler:4:0,heun:5:0,{preset_sampling()}"
# The setting that names the flow a one-step preset comes from.
TEACHER_SETTING = {"flow-1step": "distill_from", "meanflow": "init_from"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="flow-1step", choices=sorted(TEACHER_SETTING), help="the one-step preset")
    parser.add_argument("--teacher", default="pretrained:flow",
                        help="the flow it comes from: a run, checkpoint, pretrained:NAME, or none (meanflow only)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the preset's, or until --minutes)")
    parser.add_argument("--minutes", type=float, help="training minutes")
    parser.add_argument("--subset", type=int, help="train on the first N training digits only (checks)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a preset setting, as in train")
    parser.add_argument("--run", help="a finished flow-1step or meanflow run (or shipped weights, pretrained:NAME) "
                                      "to score instead of training one")
    parser.add_argument("--gan", default="pretrained:gan", help="the GAN to compare with: a run or pretrained:NAME")
    parser.add_argument("--steps", default="1,2,4,9,18", help="the one-step model's sampling steps, comma-separated")
    parser.add_argument("--flow-sampling", default=FLOW_SAMPLINGS,
                        help="the flow's samplings, SAMPLER:STEPS:GUIDANCE comma-separated (default: 1, 2, 4, 9 "
                             "and 18 network calls a digit, the last the preset's)")
    parser.add_argument("-n", type=int, default=10_000, help="samples per evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", default="runs/one-step-quality", help="where the run folder goes")
    parser.add_argument("--out", help="results path without suffix")
    parser.add_argument("--replot", metavar="RESULTS.json", help="only draw that result file's plot again")
    return parser.parse_args()


def train_student(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """A new run of --preset from --teacher; its folder and summary."""
    settings = list(args.set) + ([f"epochs={args.epochs}"] if args.epochs else [])
    if args.teacher != "none":
        settings.append(f"{TEACHER_SETTING[args.preset]}={args.teacher}")
    elif args.preset != "meanflow":
        raise SystemExit(f"--teacher none: {args.preset} needs a teacher")
    cfg = apply_overrides(load_preset(args.preset), settings)
    out = Path(args.runs) / f"{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = start_run(cfg, RunOptions(out=str(out), seed=args.seed, device=args.device, subset=args.subset,
                                        max_minutes=args.minutes))
    return out, summary


def came_from(run: Path) -> tuple[str, str]:
    """The run's preset and the flow it came from (its distill_from or init_from), or "none"."""
    config = shipped(run)["config"] if is_shipped(run) else load_checkpoint(find_checkpoint(run))["config"]
    train = config["train"]
    return config["preset"], train.get("distill_from") or train.get("init_from") or "none"


def teacher_seconds(run: Path) -> float | None:
    """A distilled run's seconds to draw the teacher's pairs (None for another run, or shipped weights)."""
    return float(pairs_record(run)["seconds"]) if (run / PAIRS_FILE).is_file() else None


def is_shipped(run: Path) -> bool:
    return str(run).startswith(PRETRAINED_PREFIX)


def shipped(run: Path) -> dict[str, Any]:
    """The record of shipped weights named ``pretrained:NAME``."""
    return read_record(str(run).removeprefix(PRETRAINED_PREFIX))


def run_summary(run: Path) -> dict[str, Any]:
    """How the run trained: its summary.json, or the training record of shipped weights."""
    return shipped(run)["training"] if is_shipped(run) else json.loads((run / "summary.json").read_text())


def load_any(source: str) -> DigitModel:
    """A run folder's, checkpoint's or shipped model (``pretrained:NAME``), in eval mode on the CPU."""
    if source.startswith(PRETRAINED_PREFIX):
        return load_pretrained(source.removeprefix(PRETRAINED_PREFIX))[0]
    return load_trained_model(source)[0]


def parse_flow_sampling(spec: str) -> dict[str, Any]:
    """"heun:5:0.15" as sampling options for evaluate and set_sampling."""
    sampler, steps, guidance = spec.split(":")
    return {"sampler": sampler, "steps": int(steps), "guidance": float(guidance)}


def measure(label: str, source: str, n: int, seed: int, sampling: dict[str, Any] | None = None) -> dict[str, Any]:
    """One row: ``source``'s scores on n samples (with ``sampling`` options if given), calls a digit and digits/s."""
    pretrained = source.startswith(PRETRAINED_PREFIX)
    target = source.removeprefix(PRETRAINED_PREFIX) if pretrained else source
    result = evaluate(target, n=n, seed=seed, sampling=sampling, pretrained=pretrained)
    model = load_any(source)
    if sampling:
        set_sampling(model, label, **sampling)
    sample_images(model, 200)  # warm-up: first calls allocate
    started = time.perf_counter()
    sample_images(model, TIMED)
    row = {"model": label, "source": source, "sampling": sampling, "network_calls": network_calls(model),
           **{k: result["samples"][k] for k in SCORES}, "digits_per_second": round(TIMED / (time.perf_counter() - started)),
           "real": {k: result["real"][k] for k in SCORES}}
    print(f"{label:24s} {row['network_calls']:3d} calls: FID {row['fid']:.3f} precision {row['precision']:.3f} "
          f"recall {row['recall']:.3f} acceptable {row['acceptable']:.3f}  {row['digits_per_second']:,} digits/s", flush=True)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | network calls / digit | FID | precision | recall | acceptable | IS | digits/s |", "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['model']} | {r['network_calls']} | {r['fid']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['acceptable']:.3f} | {r['inception_score']:.2f} | {r['digits_per_second']:,} |")
    real = rows[0]["real"]
    lines.append(f"| real training images | | {real['fid']:.3f} | {real['precision']:.3f} | {real['recall']:.3f} | "
                 f"{real['acceptable']:.3f} | {real['inception_score']:.2f} | |")
    return "\n".join(lines)


def plot(record: dict[str, Any], path: Path) -> None:
    """Each score against network calls a digit: the one-step model's steps as one line, the others as points."""
    curves: dict[str, list[tuple[float, dict]]] = {}
    for row in record["rows"]:
        curves.setdefault(row["model"], []).append((row["network_calls"], row))
    title = (f"{record.get('preset', 'meanflow')} ({record['training']}) beside its flow and the GAN, "
             f"n = {record['samples_per_evaluation']}; digits/s beside each point of the FID panel")
    plots.quality_vs_time(curves, record["rows"][0]["real"], title,
                          path, x_label="network calls per digit", speed_key="digits_per_second")


def main() -> None:
    args = parse_args()
    if args.replot:
        return plot(json.loads(Path(args.replot).read_text()), Path(args.replot).with_suffix(".png"))
    run, summary = (Path(args.run), run_summary(Path(args.run))) if args.run else train_student(args)
    preset, teacher = came_from(run)
    rows = [measure(preset, str(run), args.n, args.seed, {"steps": steps}) for steps in map(int, args.steps.split(","))]
    if teacher != "none":
        rows += [measure("flow it comes from", teacher, args.n, args.seed, parse_flow_sampling(spec))
                 for spec in args.flow_sampling.split(",")]
    rows.append(measure("gan", args.gan, args.n, args.seed))
    device = summary["device"].split(":")[0]
    out = Path(args.out) if args.out else \
        Path(__file__).parent / "results" / f"one-step-quality-{time.strftime('%Y-%m-%d')}-{device}-{preset}"
    pairs = teacher_seconds(run)
    training = (f"from {teacher}" if teacher != "none" else "from scratch") + \
        (f" (its pairs: {pairs / 60:.1f} min)" if pairs is not None else "") + \
        f", {summary['epochs_completed']} epochs, {summary['training_seconds'] / 60:.1f} min on {summary['device']}"
    record = {"command": "benchmarks/one_step_quality.py " + " ".join(vars_as_options(args)), "run": str(run),
              "preset": preset, "training": training, "teacher_pairs_seconds": pairs, "summary": summary,
              "machine": platform.platform(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "samples_per_evaluation": args.n, "seed": args.seed, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    atomic_write_text(out.with_suffix(".md"), f"# {preset}: quality against network calls a digit\n\n`{record['command']}`; "
                      f"trained {training}; {record['threads']} threads, n = {args.n} per row, seed {args.seed}\n\n"
                      f"{table(rows)}\n")
    plot(record, out.with_suffix(".png"))
    print(f"wrote {out}.json, .md and .png")


def vars_as_options(args: argparse.Namespace) -> list[str]:
    """The options given, as a command line that repeats this measurement."""
    skip = {"replot", "out", "runs"}
    words = []
    for name, value in vars(args).items():
        if name in skip or value is None or value == []:
            continue
        flag = "-n" if name == "n" else "--" + name.replace("_", "-")
        words += [word for item in (value if isinstance(value, list) else [value]) for word in (flag, str(item))]
    return words


if __name__ == "__main__":
    main()
