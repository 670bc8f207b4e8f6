"""``mnistgen report``: train (or reuse) runs, evaluate them, draw the figures, write report.md and a
self-contained report.html. Every number in it is computed; the findings are the numbers, ranked."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import apply_overrides, load_preset
from ..errors import MnistgenError
from ..evaluation import EvalOptions, check_options, evaluate
from ..metrics import spread_note
from ..training import RunOptions, ensure_run
from .document import write_documents
from .figures import model_figures, training_length_study
from .findings import TIE_SIGMAS, TIME_TIE_RATIO, findings
from .results import ModelResult, load_result, relative_path, results_table

DEFAULT_PRESETS = ("vae", "gan")
QUICK_MINUTES = 3.0  # per preset: two presets + evaluation + figures stay under 10 minutes on 2 cores
SEED_000_ACCEPTABLE = (
    "Our % acceptable is not report 000's: its \"acceptable digit rates\" (VAE 76%, GAN 88%; report 001 repeats "
    "them as \"digit acceptability\") come from a notebook that classifies 16 generated images with its own "
    "10-class ConvNet and states no threshold; ours is the share of all {n:,} samples per model that the shipped "
    "reference classifier, which has an 11th \"not a digit\" class, calls a digit with p >= {threshold:g}.")


@dataclass(frozen=True)
class ReportOptions:
    """How a report trains and scores its entries. ``minutes`` caps each training (default: the preset's
    epochs, or QUICK_MINUTES with ``quick``); ``epochs`` trains each preset once per count; ``n`` samples
    are scored per model with ``seed``; training and scoring run on ``device``."""

    quick: bool = False
    minutes: float | None = None
    epochs: list[int] | None = None
    n: int = 10_000
    data: str | None = None
    seed: int = 0
    device: str = "cpu"

    @property
    def budget(self) -> float | None:
        return self.minutes if self.minutes is not None else (QUICK_MINUTES if self.quick else None)

    @property
    def scoring(self) -> EvalOptions:
        return EvalOptions(n=self.n, seed=self.seed, data=self.data, device=self.device)


def stage(i: int, total: int, text: str) -> None:
    print(f"[{i}/{total}] {text}", flush=True)


def obtain_run(entry: str, out: Path, epochs: int | None, options: ReportOptions) -> tuple[Path, str, dict, str]:
    """(run folder, label, summary, how it was obtained): an existing run folder as it is (an
    interrupted one is resumed first, for up to the budget's minutes), or a preset trained now into ``out/runs``."""
    opts = RunOptions(out=entry, seed=options.seed, device=options.device, data=options.data,
                      max_minutes=options.budget)
    if Path(entry).is_dir():
        return Path(entry), Path(entry).name, *ensure_run(opts)
    cfg = load_preset(entry)
    if epochs is not None:
        cfg = apply_overrides(cfg, [f"epochs={epochs}"])
    run_dir = out / "runs" / (entry if epochs is None else f"{entry}-{epochs}ep")
    label = entry if epochs is None else f"{entry} ({epochs} epochs)"
    return run_dir, label, *ensure_run(dataclasses.replace(opts, out=str(run_dir)), cfg)


def _check_entries(entries: list[str], out: Path, n: int) -> None:
    """Fail on a bad name, -n or --out before training anything."""
    for entry in entries:
        if not Path(entry).is_dir():
            load_preset(entry)
    check_options(n)
    if out.exists() and not out.is_dir():
        raise MnistgenError(f"--out {out} is a file; it must name a folder (new or empty)")
    if out.exists() and any(out.iterdir()):
        raise MnistgenError(f"{out} already holds files; choose another --out")


def build_report(entries: list[str], out: Path, options: ReportOptions | None = None) -> Path:
    """Train or reuse each entry (a preset or a run folder), evaluate it, draw its figures, and write
    report.md, report.html and results.json in ``out``."""
    options = options or ReportOptions()
    entries = entries or list(DEFAULT_PRESETS)
    _check_entries(entries, out, options.n)
    minutes = options.budget
    lengths: list[int | None] = [*options.epochs] if options.epochs else [None]  # None: each preset's own epochs
    jobs = [(entry, e) for entry in entries for e in lengths]
    total = 2 * len(jobs) + 1
    results: list[ModelResult] = []
    started = time.perf_counter()
    for i, (entry, e) in enumerate(jobs):
        path = Path(entry)
        what = ("reusing" if (path / "summary.json").is_file() else "resuming") if path.is_dir() else "training"
        budget = f" for up to {minutes:g} minutes" if minutes and what != "reusing" else ""
        stage(2 * i + 1, total, f"{what} {entry}{f' for {e} epochs' if e else ''}{budget}")
        run_dir, label, summary, origin = obtain_run(entry, out, e, options)
        stage(2 * i + 2, total, f"evaluating {label} on {options.n:,} samples and drawing its figures")
        scores = evaluate(run_dir, options.scoring, name=relative_path(run_dir, out))
        result = load_result(label, run_dir, summary, scores, origin)
        model_figures(result, out / "figures", options.data, options.seed)
        results.append(result)
    stage(total, total, "writing report.md and report.html")
    write_documents(out, _blocks(results, options.n, out, options.epochs), [
        {"model": r.label, "run": relative_path(r.run_dir, out), "obtained": r.origin, "summary": r.summary,
         "model_info": r.info, "scores": r.scores} for r in results])
    print(f"report: {out / 'report.md'} and {out / 'report.html'} ({time.perf_counter() - started:.0f} s)")
    return out / "report.md"


def _blocks(results: list[ModelResult], n: int, out: Path, epochs: list[int] | None) -> list[tuple]:
    threshold = results[0].scores["threshold"] if results else 0.9
    clf = results[0].scores["classifier"] if results else {}
    seed = results[0].scores["seed"] if results else 0
    blocks: list[tuple] = [
        ("h1", "mnistgen report"),
        ("p", f"Written {time.strftime('%Y-%m-%d %H:%M')}. Metrics on {n:,} samples per model with the reference "
              f"classifier (test accuracy {clf.get('test_accuracy')}); acceptable = classified as a digit with "
              f"p >= {threshold:g}; FID, KID, precision and recall in the classifier's feature space against the "
              f"10,000 test images. Lines of code: physical lines, blank and comment lines included (as report 000 "
              f"counts its notebook cells), of the model's and trainer's modules with their bases and the preset. "
              f"{SEED_000_ACCEPTABLE.format(n=n, threshold=threshold)}"),
        ("h2", "Comparison"), ("table", *results_table(results)),
        ("h2", "Findings"),
        ("p", f"± is each metric's spread: {spread_note(n, seed)}. A finding names a "
              f"winner only where its lead exceeds {TIE_SIGMAS:g} standard deviations of the difference (the two "
              f"spreads combined) and says tie otherwise; training times less than {TIME_TIE_RATIO:g}x apart, or "
              f"both set by a time budget, are a tie too."),
        ("ul", findings(results)),
    ]
    if epochs and len(epochs) > 1:
        blocks += training_length_study(results, out)
    for r in results:
        blocks.append(("h2", r.label))
        blocks.append(("p", f"{r.cfg.description} Trained {r.summary['training_seconds']:.0f} s on "
                            f"{r.summary['device']}, {r.summary['epochs_completed']} epochs "
                            f"({r.summary['steps']} steps, stopped by {r.summary['stop_reason']}); {r.origin}, "
                            f"run folder {relative_path(r.run_dir, out)} (relative to this report)."))
        captions = {"samples": "100 samples", "losses": "loss curves", "quality": "sample quality during training",
                    "progress": "training progress (fixed noise)",
                    "classifier": "generated vs real digits with class probabilities",
                    "latent": "latent space of test images", "manifold": "2-D latent manifold",
                    "interpolation": "interpolation"}
        for key, caption in captions.items():
            if key in r.figures:
                blocks.append(("img", r.figures[key], f"{r.label}: {caption}"))
    return blocks

