"""``mnistgen reproduce``: train every system of a seed report to its recipe (or for up to a time cap),
score it like ``mnistgen evaluate``, and write a report whose first table sets the seed report's own
numbers (``mnistgen/seeds/NNN.yaml``) beside ours with a verdict per system, followed by the seed
report's own study drawn from our runs.

Runs already in the output folder are reused, or continued where a cap or a kill stopped them, never
retrained: a reproduction can be finished over several sittings, each with a larger ``--max-minutes``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.image as mpimg

from .. import plots
from ..claims import CLAIM_KEYS, FINAL_LOSS_TERMS, Claim, SeedClaims, SeedSystem, load_claims, seed_numbers
from ..config import Config, apply_overrides, load_preset
from ..errors import ConfigError, MnistgenError, TrainingStopped
from ..evaluation import EvalOptions, check_options, evaluate
from ..fileio import atomic_write_text
from ..metrics import DEFAULT_THRESHOLD, spread_note
from ..runfolder import RunFolderLock
from ..training import RunOptions, absolute_data_path, ensure_run, read_metrics, resolve_device
from .document import write_documents
from .figures import model_figures, training_length_study
from .findings import findings
from .report import stage
from .results import ModelResult, format_number, load_result, relative_path, results_table

MARKER = "reproduction.json"  # what the folder was made with; a later sitting must match it
# Shown beside a seed's systems though no report trained them: 004's failed WGAN next to one that trains.
OURS_BESIDE = {"004": ("wgan-gp",)}
# Agreement margins. Acceptable shares: 5 points plus twice our spread (the reports' own numbers come
# from a few images and carry more noise than that). IS and parameter counts: relative.
ACCEPTABLE_MARGIN = 0.05
IS_MARGIN = 0.10
PARAMETER_MARGIN = 0.05
# Final training losses: the loss is what both sides minimise, so lower is as good, and ours may be at most
# 5% higher. Report 002's loss falls 7% from each of its runs to the next (186.4, 172.7, 161.3 after 5, 10
# and 30 epochs), so 5% still tells a run that reproduces from one that trained like the next-shorter run.
LOSS_MARGIN = 0.05
# Judged: the total and the reconstruction. The KL is shown only: it trades against the reconstruction inside
# the total, so more or less of it is neither better nor worse.
JUDGED_LOSSES = ("total", "reconstruction")
# Where a report states no threshold: what a plain 10-class classifier accepts at even odds, to show
# how lenient a rule without a "not a digit" answer is next to ours.
LENIENT_THRESHOLD = 0.5
FIGURE_CAPTIONS = {"losses": "loss curves", "quality": "sample quality during training",
                   "latent": "latent space of test images", "manifold": "2-D latent manifold"}
# How a report watched its runs, done the same way for its systems: 004 plots FID every 10 epochs.
REPORT_SETTINGS = {"004": ["eval_every=10"]}


@dataclass
class Reproduced:
    """One system as we trained it: its run's result and how far it got through its recipe."""

    system: SeedSystem
    result: ModelResult
    recipe_epochs: int
    cap_minutes: float | None

    @property
    def epochs_done(self) -> float:
        s = self.result.summary
        return s["training_seconds"] / s["seconds_per_epoch"] if s["seconds_per_epoch"] else 0.0

    @property
    def complete(self) -> bool:
        return self.result.summary["epochs_completed"] >= self.recipe_epochs

    @property
    def projected_seconds(self) -> float:
        return self.result.summary["seconds_per_epoch"] * self.recipe_epochs

    @functools.cached_property
    def final_losses(self) -> tuple[int, dict[str, float]]:
        """(epoch, losses): the training losses of our last whole epoch under the reports' names, each
        the mean over the epoch's steps, as the reports' Keras logs give theirs; (0, {}) before one."""
        path = self.result.run_dir / "metrics.jsonl"
        records = [r for r in read_metrics(path) if not r.get("partial")] if path.is_file() else []
        if not records:
            return 0, {}
        last = records[-1]
        return last["epoch"], {name: last[ours] for name, ours in FINAL_LOSS_TERMS.items() if ours in last}


@dataclass
class Row:
    """One row of the claims table: a report's claims about a system, against our run of it."""

    claims: SeedClaims
    run: Reproduced
    verdict: str = ""
    reasons: list[str] = field(default_factory=list)


def parse_seeds(names: list[str]) -> list[str]:
    known = seed_numbers()
    if not names:
        raise ConfigError(f"name the seed reports to reproduce: {', '.join(known)} or all")
    picked: list[str] = []
    for name in names:
        for seed in known if name == "all" else [name]:
            if seed not in known:
                raise ConfigError(f"SEED {name!r} is not a seed report; choose from {', '.join(known)} or all")
            if seed not in picked:
                picked.append(seed)
    return picked


def _given(value: object) -> str:
    return "(not given)" if value is None else str(value)


def _open_folder(out: Path, settings: dict) -> None:
    """Make ``out`` or check that it is a reproduction made with the same seed, subset and data
    (its runs were trained with them, so mixing would compare unlike things)."""
    if out.exists() and not out.is_dir():
        raise MnistgenError(f"--out {out} is a file; it must name a folder")
    marker = out / MARKER
    if marker.is_file():
        stored = json.loads(marker.read_text())
        for key, value in settings.items():
            if stored.get(key) != value:
                raise MnistgenError(f"--{key} {_given(value)} differs from the {_given(stored.get(key))} that {out} was "
                                    f"made with; use another --out to reproduce with other settings")
        return
    if out.is_dir() and any(p.name != ".lock" for p in out.iterdir()):
        raise MnistgenError(f"--out {out} holds files but no {MARKER}: it is not a reproduction folder")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps(settings, indent=2) + "\n")


def report_settings(system_id: str) -> list[str]:
    """The settings of ``REPORT_SETTINGS`` for a system that a report names or that we show beside it."""
    return [item for seed, items in REPORT_SETTINGS.items()
            if system_id in {s.id for s in load_claims(seed).systems} | set(OURS_BESIDE.get(seed, ()))
            for item in items]


def _system_config(system: SeedSystem, switches: list[str]) -> Config:
    return apply_overrides(load_preset(system.preset), system.set_args() + switches)


def obtain_system_run(system: SeedSystem, run_dir: Path, cap_minutes: float | None, opts: RunOptions,
                      switches: list[str]) -> tuple[dict, str]:
    """Train ``system`` into ``run_dir``, or reuse / continue the run already there, so that it ends
    with its recipe's epochs or ``cap_minutes`` of training in all (over every sitting)."""
    switches = switches + report_settings(system.id)
    opts = dataclasses.replace(opts, out=str(run_dir), max_minutes=cap_minutes)
    return ensure_run(opts, _system_config(system, switches), overrides=switches)


@dataclass(frozen=True)
class SystemJob:
    """What every system of a reproduction is trained and scored with (sent to each ``--jobs`` worker)."""

    out: Path
    cap_minutes: float | None
    run: RunOptions  # seed, device, subset, data, progress; ``out`` is each system's own
    switches: list[str]  # e.g. amp=on, for every system
    scoring: EvalOptions


def scored_result(system: SeedSystem, run_dir: Path, summary: dict, origin: str, job: SystemJob) -> ModelResult:
    """The run's result with ``evaluate``'s scores and its figures. Both are kept (``out/scores``)
    and reused while the run is unchanged, so a later sitting only evaluates what trained since."""
    out, scoring = job.out, job.scoring
    key = {"n": scoring.n, "seed": scoring.seed, "steps": summary["steps"],
           "thresholds": list(scoring.ten_class_thresholds)}
    path = out / "scores" / f"{system.id}.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        figures = {name: out / file for name, file in stored.get("figures", {}).items()}
        if stored.get("key") == key and all(f.is_file() for f in figures.values()):
            result = load_result(system.id, run_dir, summary, stored["scores"], origin)
            result.figures = figures
            return result
    scores = evaluate(run_dir, scoring, name=relative_path(run_dir, out))
    result = load_result(system.id, run_dir, summary, scores, origin)
    model_figures(result, out / "figures", scoring.data, scoring.seed)
    path.parent.mkdir(exist_ok=True)
    atomic_write_text(path, json.dumps({"key": key, "scores": scores, "figures": {
        name: relative_path(file, out) for name, file in result.figures.items()}}, indent=2) + "\n")
    return result


def obtain_and_score(system: SeedSystem, run_dir: Path, job: SystemJob, threads: int | None = None) -> ModelResult:
    """One system, trained (or reused) and scored: what a ``--jobs`` worker process does."""
    if threads:  # a --jobs worker: N workers share the cores (N x all-cores threads would thrash)
        import torch

        torch.set_num_threads(threads)
        signal.signal(signal.SIGTERM, _stop_now)  # while scoring; the trainer takes SIGTERM over while it trains
    summary, origin = obtain_system_run(system, run_dir, job.cap_minutes, job.run, job.switches)
    return scored_result(system, run_dir, summary, origin, job)


# ------------------------------------------------------------------------------ verdicts


def ten_class_rule(claims: SeedClaims, run: Reproduced) -> tuple[float, float]:
    """(threshold, share): what a plain 10-class softmax classifier, like the reports' own, accepts of
    our samples at the report's threshold, or at a lenient 0.5 where the report states none."""
    threshold = LENIENT_THRESHOLD if claims.threshold is None else claims.threshold
    return threshold, run.result.scores["samples"]["ten_class_acceptable"][f"{threshold:g}"]


def our_count(info: dict, part: str | None) -> int:
    """Our parameter count as the Keras reports count (moving averages of batch norm included), of
    the whole model or of the half (``part``) a report counted."""
    return info[f"{part}_parameters_keras_style" if part else "parameters_keras_style"]


def _part(claim: Claim) -> str:
    return f" ({claim.part} only)" if claim.part else ""


def judge(row: Row) -> None:
    """Set ``row.verdict`` (reproduced / differs / partial / no number to compare) and its reasons,
    each from a measured number: parameters, acceptable share, IS and final losses are judged; times,
    FIDs and lines of code are shown with the reason they are not."""
    run, claims, said = row.run, row.claims, row.run.system.claims
    samples, info = run.result.scores["samples"], run.result.info
    agree: list[bool] = []
    if not run.complete:
        row.reasons.append(
            f"{run.epochs_done:.1f} of {run.recipe_epochs} epochs in {run.result.summary['training_seconds']:.0f} s "
            f"(cap {run.cap_minutes:g} min); the full recipe would take about {_duration(run.projected_seconds)} on "
            f"{run.result.summary['device']} at the measured {run.result.summary['seconds_per_epoch']:.0f} s/epoch")
    if claimed_count := said["parameters"].number():
        our_parameters = our_count(info, said["parameters"].part)
        ok = abs(our_parameters / claimed_count - 1) <= PARAMETER_MARGIN
        agree.append(ok)
        if not ok:
            row.reasons.append(f"parameters{_part(said['parameters'])}: ours {our_parameters:,} vs the report's "
                               f"{claimed_count:,} ({our_parameters / claimed_count - 1:+.0%}) for the architecture "
                               f"it describes")
    if (claimed := said["acceptable"].number()) is not None:
        threshold, ten_class = ten_class_rule(claims, run)
        if claims.threshold is not None:
            ours = ten_class
            rule = (f"a 10-class softmax at p >= {threshold:g} (the report's rule; ours, which may also say "
                    f"'not a digit', gives {samples['acceptable']:.3f})")
        else:
            ours = samples["acceptable"]
            rule = (f"our rule (a digit class at p >= {DEFAULT_THRESHOLD:g}; the report states no threshold, and a "
                    f"plain 10-class softmax at p >= {threshold:g} would accept {ten_class:.3f})")
        margin = ACCEPTABLE_MARGIN + 2 * samples["spread"]["acceptable"]
        ok = abs(ours - claimed) <= margin
        agree.append(ok)
        if not ok:
            row.reasons.append(f"acceptable: ours {ours:.3f} with {rule} vs the report's {claimed:.2f}, "
                               f"{'higher' if ours > claimed else 'lower'} by more than {margin:.3f}")
    if (claimed := said["inception_score"].number()) is not None and samples["inception_score"] is not None:
        ours = samples["inception_score"]
        ok = abs(ours / claimed - 1) <= IS_MARGIN
        agree.append(ok)
        if not ok:
            row.reasons.append(f"IS: ours {ours:.2f} vs the report's {claimed:.2f} (both over 10 digit classes, "
                               f"but with different MNIST classifiers)")
    if (claimed_losses := said["final_losses"].losses()) is not None and run.complete:
        agree += judge_losses(row, claimed_losses)
    if said["fid"].value is not None and samples["fid"] is not None:
        row.reasons.append(f"FID not judged: the report's {said['fid'].value:g} and our {samples['fid']:.2f} are "
                           f"distances in different feature spaces (see the claims file's note)")
    if said["lines_of_code"].value is not None:
        row.reasons.append(f"lines of code not judged: the report's {said['lines_of_code'].value} and our "
                           f"{info.get('lines_of_code_physical', '-')} count two implementations' own code, not the "
                           f"system (ours holds a shared loop with resume, checkpoints and stops that the report's "
                           f"lacks)")
    if not run.complete:
        row.verdict = "partial"
    elif not agree:
        row.verdict = "no number to compare"
    else:
        row.verdict = "reproduced" if all(agree) else "differs"


def judge_losses(row: Row, claimed: dict[str, float]) -> list[bool]:
    """Whether each judged final loss the report states is met by ours (at most LOSS_MARGIN higher, or
    lower); a reason for each that is not, and for the terms shown only."""
    epoch, ours = row.run.final_losses
    agree = []
    for name, value in claimed.items():
        if name not in ours:
            row.reasons.append(f"final {name} loss: the report's {value:g}; we log no such term")
        elif name not in JUDGED_LOSSES:
            row.reasons.append(f"final {name} loss not judged: ours {ours[name]:.2f} after epoch {epoch} vs the "
                               f"report's {value:g} (it trades against the reconstruction inside the total)")
        else:
            ok = ours[name] <= value * (1 + LOSS_MARGIN)
            agree.append(ok)
            if not ok:
                row.reasons.append(f"final {name} loss: ours {ours[name]:.2f} after epoch {epoch} vs the report's "
                                   f"{value:g}, higher by {ours[name] / value - 1:.1%} (more than {LOSS_MARGIN:.0%})")
    return agree


# ------------------------------------------------------------------------------- writing


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def _claimed(claim: Claim, fmt: str = "{}") -> str:
    if claim.value is None:
        return "-"
    return fmt.format(claim.value) if isinstance(claim.value, (int, float)) else str(claim.value)


def claims_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    header = ["report", "system", "time: claimed", "time: ours", "epochs: ours / recipe", "parameters: claimed / ours",
              "lines of code: claimed / ours", "acceptable: claimed", "acceptable: ours, 10-class softmax",
              "acceptable: ours, our rule", "IS: claimed / ours", "FID: claimed / ours",
              "final losses: claimed / ours", "verdict"]
    body = []
    for row in rows:
        said, run = row.run.system.claims, row.run
        s, summary = run.result.scores["samples"], run.result.summary
        hardware = said["training_seconds"].hardware or row.claims.hardware.value
        claimed_seconds = said["training_seconds"].number()
        claimed_time = "-" if claimed_seconds is None else \
            _duration(claimed_seconds) + (f" ({hardware})" if hardware else "")
        ours_time = f"{_duration(summary['training_seconds'])} ({summary['device']})"
        if not run.complete:
            ours_time += f"; full ≈ {_duration(run.projected_seconds)}"
        threshold, ten_class = ten_class_rule(row.claims, run)
        body.append([
            row.claims.seed, row.run.system.label, claimed_time, ours_time,
            f"{run.epochs_done:.1f} / {run.recipe_epochs}" if not run.complete else f"{run.recipe_epochs} / {run.recipe_epochs}",
            f"{_claimed(said['parameters'], '{:,}')} / {our_count(run.result.info, said['parameters'].part):,}"
            f"{_part(said['parameters'])}",
            f"{_claimed(said['lines_of_code'])} / {run.result.info.get('lines_of_code_physical', '-')}",
            _claimed(said["acceptable"], "{:.2f}"),
            f"{ten_class:.3f} (p >= {threshold:g}{'' if row.claims.threshold else '; no rule stated'})",
            f"{format_number(s['acceptable'])} ± {s['spread']['acceptable']:.3f}",
            f"{_claimed(said['inception_score'], '{:.2f}')} / {format_number(s['inception_score'], '{:.2f}')}",
            f"{_claimed(said['fid'], '{:g}')} / {format_number(s['fid'], '{:.2f}')}",
            _losses_cell(said["final_losses"], run),
            row.verdict,
        ])
    return header, body


def _losses_cell(claim: Claim, run: Reproduced) -> str:
    """e.g. 'total 186.37 / 176.92; reconstruction 180.59 / 170.94; kl 5.78 / 5.99 (epoch 5)'."""
    epoch, ours = run.final_losses
    claimed = claim.losses()
    if claimed is None:
        return "-" if "total" not in ours else f"- / {ours['total']:.2f} (epoch {epoch})"
    pairs = [f"{name} {value:.2f} / {format_number(ours.get(name), '{:.2f}')}" for name, value in claimed.items()]
    return "; ".join(pairs) + (f" (epoch {epoch})" if ours else "")


def size_by_loss_table(results: list[ModelResult]) -> list[tuple]:
    """Report 003's 2 x 2 study: the generator's width against the loss, for the GANs of one model
    trained with at least two of each; acceptable and FID in each cell."""
    cells = {(r.cfg.model_args["width"], r.cfg.train.loss): r for r in results
             if r.cfg.family == "gan" and "width" in r.cfg.model_args}
    widths, losses = sorted({w for w, _ in cells}), sorted({loss for _, loss in cells})
    if len(widths) < 2 or len(losses) < 2 or len({r.cfg.model for r in cells.values()}) > 1:
        return []

    def cell(r: ModelResult | None) -> str:
        return "-" if r is None else (f"acceptable {format_number(r.scores['samples']['acceptable'])}, "
                                      f"FID {format_number(r.scores['samples']['fid'], '{:.2f}')} "
                                      f"({r.summary['epochs_completed']} epochs)")

    rows = [[f"generator width x{w}", *[cell(cells.get((w, loss))) for loss in losses]] for w in widths]
    return [("h3", "Generator size against loss"), ("table", ["", *[f"loss: {loss}" for loss in losses]], rows)]


def _seed_blocks(claims: SeedClaims, rows: list[Row], extra: list[Reproduced], out: Path) -> list[tuple]:
    """The seed report's own study, from our runs: its systems (and ours beside them) compared."""
    runs = [row.run for row in rows] + extra
    results = [r.result for r in runs]
    blocks: list[tuple] = [
        ("h2", f"Report {claims.seed}: {claims.title}"),
        ("p", f"Source: shared/seeds/{claims.source}. The report's study: {claims.study} "
              f"How it counts an acceptable digit: {(claims.acceptable_rule.text() or 'not stated').rstrip('.')}."),
        ("ul", [f"{row.run.system.label} ({row.run.system.id}): {row.verdict}"
                + (f"; {'; '.join(row.reasons)}" if row.reasons else "") for row in rows]
         + [f"{r.system.label} ({r.system.id}): ours, shown beside the report's systems" for r in extra]),
        ("table", *results_table(results)),
        ("ul", findings(results)),
    ]
    study = training_length_study(results, out)  # 002: one preset after 5, 10 and 30 epochs, samples included
    if not study:
        pictures = {f"{r.system.id}\n{r.epochs_done:.1f} of {r.recipe_epochs} epochs":
                    mpimg.imread(r.result.figures["samples"]) for r in runs}
        path = plots.labelled_grids(pictures, f"Report {claims.seed}: 100 samples of each system",
                                    out / "figures" / f"report{claims.seed}_samples.png")
        blocks.append(("img", path, f"report {claims.seed}: samples of each system side by side"))
    blocks += study + size_by_loss_table(results)  # 003
    for r in runs:
        # The training-length study already shows the latent figures side by side.
        keys = ("losses", "quality") if study else ("losses", "quality", "latent", "manifold")
        blocks += [("img", r.result.figures[key], f"{r.system.id}: {FIGURE_CAPTIONS[key]}")
                   for key in keys if key in r.result.figures]
    return blocks


@dataclass(frozen=True)
class ReproduceOptions:
    """How a reproduction trains and scores: ``max_minutes`` caps each system's training in all (default:
    its full recipe); ``n`` samples per system scored with ``seed``, which also seeds training; ``subset``
    trains on the first N images; ``amp`` and ``compile`` switch on for every system; ``jobs`` systems
    train at once, each in its own process."""

    max_minutes: float | None = None
    n: int = 10_000
    data: str | None = None
    seed: int = 0
    subset: int | None = None
    device: str = "auto"
    amp: bool = False
    compile: bool = False
    progress: bool = True
    jobs: int = 1


def reproduce(names: list[str], out: Path, options: ReproduceOptions | None = None) -> Path:
    """Reproduce the seed reports ``names`` into ``out``; returns the path of report.md. ``jobs`` > 1 trains
    and scores that many systems at once, each in its own process (a GPU that one small model leaves
    mostly idle); their times are then longer than each alone would take, and the report says so."""
    o = options or ReproduceOptions()
    every = {s: load_claims(s) for s in parse_seeds(names)}
    check_options(o.n)
    for claims in every.values():  # a bad preset or setting fails before anything trains
        for system in claims.systems:
            _system_config(system, [])
    resolve_device(o.device)  # e.g. --device cuda without CUDA: refused before the folder is made
    _open_folder(out, {"seed": o.seed, "subset": o.subset, "data": absolute_data_path(o.data)})
    thresholds = tuple(sorted({LENIENT_THRESHOLD if c.threshold is None else c.threshold for c in every.values()}))
    job = SystemJob(out, o.max_minutes,
                    # Workers print one line per finished system instead of interleaved progress bars.
                    RunOptions(out="", seed=o.seed, device=o.device, subset=o.subset, data=o.data,
                               progress=o.progress and o.jobs == 1),
                    [f"{flag}=on" for flag, on in (("amp", o.amp), ("compile", o.compile)) if on],
                    EvalOptions(n=o.n, seed=o.seed, data=o.data, ten_class_thresholds=thresholds))
    systems = _systems(every)
    started = time.perf_counter()
    with RunFolderLock(out):
        results = _train_and_score(systems, job, o.jobs)
        runs = {sid: Reproduced(systems[sid], results[sid], results[sid].cfg.train.epochs, o.max_minutes)
                for sid in systems}
        stage(len(systems) + 1, len(systems) + 1, "writing report.md and report.html")
        rows = [Row(claims, runs[system.id]) for claims in every.values() for system in claims.systems]
        for row in rows:
            judge(row)
        write_documents(out, _blocks(every, rows, runs, out, o), [_record(row, out) for row in rows])
    print(f"report: {out / 'report.md'} and {out / 'report.html'} ({time.perf_counter() - started:.0f} s)")
    return out / "report.md"


def _systems(every: dict[str, SeedClaims]) -> dict[str, SeedSystem]:
    """One system per id (reports 000 and 001 describe the same two), and ours shown beside a report's."""
    systems: dict[str, SeedSystem] = {}
    for s, claims in every.items():
        for system in claims.systems:
            systems.setdefault(system.id, system)
        for preset in OURS_BESIDE.get(s, ()):
            systems.setdefault(preset, SeedSystem(preset, preset, {}, f"ours: {preset}",
                                                  {k: Claim(None, None) for k in CLAIM_KEYS}))
    return systems


def _train_and_score(systems: dict[str, SeedSystem], job: SystemJob, jobs: int) -> dict[str, ModelResult]:
    """Every system trained (or reused) and scored: one after another, or ``jobs`` at a time."""
    cap = f" (at most {job.cap_minutes:g} min of training in all)" if job.cap_minutes else ""
    if jobs > 1:
        return _in_workers(systems, jobs, job.out, cap, functools.partial(obtain_and_score, job=job))
    results: dict[str, ModelResult] = {}
    for i, (sid, system) in enumerate(systems.items(), start=1):
        stage(i, len(systems) + 1, f"{sid}: training, or reusing what {job.out / 'runs' / sid} holds{cap}")
        results[sid] = obtain_and_score(system, job.out / "runs" / sid, job)
    return results


def _record(row: Row, out: Path) -> dict:
    """A row of results.json: the report's claims about a system, our run of it and the verdict."""
    result = row.run.result
    return {"report": row.claims.seed, "system": row.run.system.id, "preset": row.run.system.preset,
            "overrides": row.run.system.overrides, "verdict": row.verdict, "reasons": row.reasons,
            "claims": {k: vars(c) for k, c in row.run.system.claims.items()},
            "run": relative_path(result.run_dir, out), "obtained": result.origin, "summary": result.summary,
            "model_info": result.info, "scores": result.scores, "final_losses": final_losses_record(row)}


def final_losses_record(row: Row) -> dict:
    """Our final training losses beside the report's, and how they were judged, for results.json."""
    epoch, ours = row.run.final_losses
    return {"epoch": epoch, "ours": ours, "claimed": row.run.system.claims["final_losses"].value,
            "judged": list(JUDGED_LOSSES), "rule": f"ours at most {LOSS_MARGIN:.0%} above the report's, or lower"}


def _stop_now(signum: int, frame: object) -> None:
    raise TrainingStopped(f"interrupted by {signal.Signals(signum).name} while scoring; run the same command "
                          f"again to continue", signum)


def _in_workers(systems: dict[str, SeedSystem], jobs: int, out: Path, cap: str,
                score: Callable[..., ModelResult]) -> dict[str, ModelResult]:
    """``score(system, run_dir, threads=...)`` for every system, in ``jobs`` processes at once (spawned:
    CUDA cannot be forked)."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    stage(1, len(systems) + 1, f"{len(systems)} systems, {jobs} at a time (each with {threads} CPU thread"
                               f"{'s' if threads > 1 else ''}), in {out / 'runs'}{cap}")
    results: dict[str, ModelResult] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:

        def stop_workers(signum: int, frame: object) -> None:
            # A signal to this process alone (kill PID) must stop the trainings too, each saving its step.
            # Sent on as SIGTERM: a worker that also got the terminal's Ctrl-C would take a second
            # SIGINT as "stop at once, save nothing".
            for process in list(getattr(pool, "_processes", {}).values()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

        previous = {sig: signal.signal(sig, stop_workers) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            futures = {sid: pool.submit(score, system, out / "runs" / sid, threads=threads)
                       for sid, system in systems.items()}
            for sid, future in futures.items():
                results[sid] = future.result()
                print(f"  {sid}: {results[sid].origin}", flush=True)
        except BrokenProcessPool:
            raise MnistgenError(f"a --jobs worker process died (killed, or out of memory); what the others "
                                f"finished is kept in {out}: run the same command again to continue") from None
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # systems not started yet stay untouched
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return results


def _blocks(every: dict[str, SeedClaims], rows: list[Row], runs: dict[str, Reproduced], out: Path,
            options: ReproduceOptions) -> list[tuple]:
    n, seed, max_minutes, jobs = options.n, options.seed, options.max_minutes, options.jobs
    cap = (f"each system trained for its recipe's epochs or {max_minutes:g} minutes of training, whichever came "
           f"first (a capped system is 'partial', with the time its full recipe would take)") if max_minutes \
        else "each system trained for its recipe's epochs"
    if jobs > 1:
        cap += (f"; {jobs} systems trained at once on one {next(iter(runs.values())).result.summary['device']} "
                f"(--jobs {jobs}), so each one's time is longer than it would be alone")
    blocks: list[tuple] = [
        ("h1", f"Reproduction of seed report{'s' if len(every) > 1 else ''} {', '.join(every)}"),
        ("p", f"Written {time.strftime('%Y-%m-%d %H:%M')}; {cap}. Each report's numbers are quoted in "
              f"mnistgen/seeds/NNN.yaml with the sentence they come from. Ours: {n:,} samples per system, sampling "
              f"seed {seed}, ± the spread ({spread_note(n, seed)}). '10-class softmax': what a plain 10-class "
              f"classifier like the reports' (ours, renormalised over the 10 digits) accepts at the report's "
              f"threshold, or at {LENIENT_THRESHOLD:g} where the report states none; 'our rule': "
              f"the reference classifier's digit classes at p >= {DEFAULT_THRESHOLD:g}, where it may also say "
              f"'not a digit'. Verdicts: reproduced (every number the report states that we can measure agrees: "
              f"parameters within {PARAMETER_MARGIN:.0%}, IS within {IS_MARGIN:.0%}, acceptable within "
              f"{ACCEPTABLE_MARGIN:.2f} + 2 spreads, final total and reconstruction losses at most "
              f"{LOSS_MARGIN:.0%} above the report's or lower), differs (the reasons say by how much), partial "
              f"(capped before the recipe's end), no number to compare. Times are not judged: the reports trained on "
              f"other hardware; nor are lines of code, which count each implementation's own code."),
        ("h2", "The reports' claims beside ours"),
        ("table", *claims_table(rows)),
    ]
    for claims in every.values():
        extra = [runs[p] for p in OURS_BESIDE.get(claims.seed, ())]
        blocks += _seed_blocks(claims, [r for r in rows if r.claims is claims], extra, out)
    return blocks

