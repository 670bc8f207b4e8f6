"""Quality against training time for the default presets (issue 6).

Each preset trains once, bounded only by the largest budget (its epoch count is lifted), and
saves a checkpoint when its training time reaches each budget (``checkpoints/minute_M.pt``).
With a constant learning rate that snapshot is the model a run stopped at M minutes would
have (up to timing noise), so budgets 1, 2, 5 and 15 cost 15 minutes, not 23. Every snapshot
is scored by ``mnistgen evaluate`` (10,000 samples); sampling speed is timed on the last one.

Run:   .venv/bin/python benchmarks/quality_vs_time.py [PRESET_OR_RUN ...] [--budgets 1,2,5,15]
           [--beside EARLIER.json]
       .venv/bin/python benchmarks/quality_vs_time.py --replot RESULTS.json   (the plot again, nothing trained)
(a run folder of an earlier call is evaluated again instead of trained; --beside draws an earlier
result file's curves in the same plot, labelled with that file's date, and copies them into the JSON)
Writes benchmarks/results/quality-vs-time-<date>-<device>.json and .png; run folders are kept
under runs/quality-vs-time/ (not in the repo) so the grids can be looked at.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from mnistgen import plots
from mnistgen.config import Config, apply_overrides, load_preset
from mnistgen.errors import MnistgenError
from mnistgen.evaluation import evaluate
from mnistgen.sampling import load_trained_model, sample_images
from mnistgen.training import RunOptions, make_trainer
from mnistgen.training.loop import resolve_device, snapshot_name

SCORES = ("acceptable", "coverage", "inception_score", "fid", "kid", "precision", "recall")
UNBOUNDED_EPOCHS = 100_000  # time, not epochs, ends these runs


def sampling_speed(checkpoint: Path, device: str, n: int = 10_000) -> float:
    """Digits per second drawn by ``sample_images`` (the path `mnistgen sample` takes)."""
    model, _ = load_trained_model(checkpoint, device=resolve_device(device))
    sample_images(model, 1000)  # warm-up: first calls allocate
    started = time.perf_counter()
    sample_images(model, n)
    return n / (time.perf_counter() - started)


def steps_per_epoch(last_state: dict) -> float:
    """From the run's final checkpoint, so it matches the trainer's batching exactly."""
    completed = last_state["global_step"] - last_state["step_in_epoch"]
    return completed / last_state["epoch"] if last_state["epoch"] else float("nan")


def train_with_snapshots(entry: str, budgets: list[float], seed: int, device: str, runs: Path,
                         stamp: str) -> tuple[Path, dict]:
    """Train preset ``entry`` for the largest budget, or reuse ``entry`` if it is such a run folder."""
    path = Path(entry)
    if path.is_dir():
        missing = [m for m in budgets if not (path / "checkpoints" / snapshot_name(m)).is_file()]
        if missing:
            raise MnistgenError(f"{path} has no snapshot for minute(s) {missing}")
        return path, json.loads((path / "summary.json").read_text())
    cfg = apply_overrides(load_preset(entry), [f"epochs={UNBOUNDED_EPOCHS}"])
    run_dir = runs / f"{stamp}-{Path(entry).stem}-{time.strftime('%H%M%S')}"  # a preset name, or a YAML's
    trainer = make_trainer(cfg, RunOptions(out=str(run_dir), seed=seed, device=device,
                                           max_minutes=budgets[-1], snapshot_minutes=tuple(budgets)))
    trainer.prepare_new_run()
    return run_dir, trainer.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="*", default=["vae", "gan"])
    parser.add_argument("--budgets", default="1,2,5,15", help="training minutes, comma-separated")
    parser.add_argument("-n", type=int, default=10_000, help="samples per evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", default="runs/quality-vs-time", help="where the run folders go")
    parser.add_argument("--beside", help="an earlier quality-vs-time JSON whose presets (those not run now) "
                                         "are drawn beside, labelled as earlier")
    parser.add_argument("--out", help="results path without suffix (default: "
                                      "benchmarks/results/quality-vs-time-<date>-<device>)")
    parser.add_argument("--replot", metavar="RESULTS.json", help="only draw that result file's plot again")
    args = parser.parse_args()
    if args.replot:
        return replot(Path(args.replot))
    budgets = sorted(float(b) for b in args.budgets.split(","))
    stamp = time.strftime("%Y-%m-%d")
    results: dict[str, dict] = {}
    ceiling: dict = {}
    for entry in args.presets:
        run_dir, summary = train_with_snapshots(entry, budgets, args.seed, args.device, Path(args.runs), stamp)
        last_state = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
        cfg = Config.from_dict(last_state["config"])
        name = cfg.preset
        points = []
        for minutes in budgets:
            checkpoint = run_dir / "checkpoints" / snapshot_name(minutes)
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            result = evaluate(checkpoint, n=args.n, seed=args.seed)
            ceiling = {k: result["real"][k] for k in SCORES}
            point = {"minutes": minutes, "steps": state["global_step"],
                     "epochs": round(state["global_step"] / steps_per_epoch(last_state), 2),
                     **{k: result["samples"][k] for k in SCORES},
                     "class_histogram": result["samples"]["class_histogram"]}
            points.append(point)
            print(f"{name:6s} {minutes:5g} min  {point['epochs']:6.2f} epochs  acceptable {point['acceptable']:.3f}  "
                  f"coverage {point['coverage']:.3f}  IS {point['inception_score']:.2f}  FID {point['fid']:.2f}",
                  flush=True)
        last = run_dir / "checkpoints" / snapshot_name(budgets[-1])
        results[name] = {"preset": cfg.to_dict(), "run": str(run_dir), "device": summary["device"],
                         "seconds_per_epoch": summary["seconds_per_epoch"],
                         "sampling_digits_per_second": round(sampling_speed(last, args.device)), "points": points}
        print(f"{name:6s} samples {results[name]['sampling_digits_per_second']} digits/s", flush=True)
    device = next(iter(results.values()))["device"]
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"quality-vs-time-{stamp}-{device}"
    record = {"command": "benchmarks/quality_vs_time.py " + " ".join(args.presets) + f" --budgets {args.budgets}",
              "machine": platform.platform(), "processor": platform.processor(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "samples_per_evaluation": args.n, "seed": args.seed,
              "real_data": ceiling, "results": results}
    if args.beside:  # earlier measurements of other presets, on the same machine, kept apart by name
        earlier = json.loads(Path(args.beside).read_text())
        record["beside"] = {"file": Path(args.beside).name, "command": earlier.get("command"),
                            "results": {k: v for k, v in earlier["results"].items() if k not in results}}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    plot(record, out.with_suffix(".png"))
    print(f"wrote {out}.json and {out}.png")


def plot(record: dict, path: Path) -> None:
    """The record's curves, and those it was given --beside (labelled with that file's date)."""
    device = next(iter(record["results"].values()))["device"]
    curves = {name: [(p["minutes"], p) for p in r["points"]] for name, r in record["results"].items()}
    if "beside" in record:
        when = Path(record["beside"]["file"]).stem.removeprefix("quality-vs-time-")
        for name, r in record["beside"]["results"].items():
            curves[f"{name} ({when})"] = [(p["minutes"], p) for p in r["points"]]
    plots.quality_vs_time(curves, record["real_data"], f"quality vs training time, {device}, "
                          f"{record['threads']} threads", path)


def replot(path: Path) -> None:
    """Draw an earlier result file's plot again (e.g. after the plot gained panels), nothing trained."""
    record = json.loads(path.read_text())
    plot(record, path.with_suffix(".png"))
    print(f"wrote {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
