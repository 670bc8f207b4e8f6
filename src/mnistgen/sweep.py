"""``mnistgen sweep``: hyperparameter search as an Optuna study.

Each trial trains the preset with the trial's ``--set`` overrides under the time budget, in its own
run folder ``SWEEP/trials/NNNN``; at every epoch's end it scores a small sample (``--prune-n``
digits) and reports the metric to Optuna, whose median pruner stops trials that trail the others;
a finished trial's value is the metric on ``-n`` digits. The study lives in a database (SQLite in
the sweep folder unless ``--storage`` names another): the same command started again continues
the study, and started on several machines against one database shares it. Each worker stops once
the study holds ``--trials`` finished trials. At the end the sweep folder gets the trial table,
the best trial's config as a preset YAML (``mnistgen train SWEEP/best.yaml``), the best trial
re-scored on 10,000 digits, and Optuna's plots.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import Config, apply_overrides
from .errors import MnistgenError, TrainingStopped
from .fileio import atomic_write, atomic_write_text
from .training import RunOptions, start_run

# The metric to optimise and its direction.
METRICS = {"fid": "minimize", "kid": "minimize", "acceptable": "maximize", "coverage": "maximize",
           "inception_score": "maximize", "precision": "maximize", "recall": "maximize"}
KINDS = ("log", "float", "int", "cat")
FINAL_N = 10_000  # samples that re-score the best trial


@dataclass(frozen=True)
class Param:
    """One ``--param NAME=KIND:LOW:HIGH`` (or ``NAME=cat:A,B,C``) search dimension."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        if self.kind == "cat":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log")


def parse_param(spec: str, cfg: Config) -> Param:
    """A checked search dimension: its setting must exist and both ends must be values it accepts."""
    name, sep, rest = spec.partition("=")
    kind, _, bounds = rest.partition(":")
    name = name.strip()
    usage = "NAME=log:LOW:HIGH, NAME=float:LOW:HIGH, NAME=int:LOW:HIGH or NAME=cat:A,B,..."
    if not sep or not name or kind not in KINDS or not bounds:
        raise MnistgenError(f"--param {spec!r}: must look like {usage}")
    if kind == "cat":
        choices = tuple(yaml.safe_load(c) for c in bounds.split(","))
        if len(choices) < 2:
            raise MnistgenError(f"--param {spec!r}: cat needs at least two choices")
        values = choices
        param = Param(name, kind, choices=choices)
    else:
        ends = bounds.split(":")
        try:
            low, high = (int(e) for e in ends) if kind == "int" else (float(e) for e in ends)
        except ValueError:
            raise MnistgenError(f"--param {spec!r}: {kind} needs two {'whole ' if kind == 'int' else ''}numbers, "
                                f"LOW:HIGH") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high) or (kind == "log" and low <= 0):
            raise MnistgenError(f"--param {spec!r}: needs LOW < HIGH{' and LOW > 0 (log scale)' if kind == 'log' else ''}")
        values = (low, high)
        param = Param(name, kind, low, high)
    for value in values:  # the schema says whether the setting exists and takes these values
        try:
            apply_overrides(cfg, [f"{name}={value}"])
        except MnistgenError as exc:
            raise MnistgenError(f"--param {spec!r}: {str(exc).removeprefix('--set ')}") from None
    return param


def score_model(model: Any, n: int, seed: int, data: str | None) -> dict[str, Any]:
    """The metrics of ``n`` samples of a model in memory (what `mnistgen evaluate` computes)."""
    from .evaluation import reference_set
    from .metrics import classify, score
    from .sampling import sample_float

    classifier, _, _, reference = reference_set(data)
    was_training = model.training
    model.eval()
    images = sample_float(model, n, seed)
    model.train(was_training)
    return score(classify(classifier, images), reference, seed=seed)


class Sweep:
    def __init__(self, cfg: Config, params: list[Param], out: Path, metric: str, minutes: float, n: int,
                 prune_n: int, seed: int, subset: int | None, data: str | None, device: str):
        if metric not in METRICS:
            raise MnistgenError(f"--metric must be one of {', '.join(METRICS)}, not {metric!r}")
        self.cfg, self.params, self.out, self.metric = cfg, params, out, metric
        self.minutes, self.n, self.prune_n = minutes, n, prune_n
        self.seed, self.subset, self.data, self.device = seed, subset, data, device

    def value(self, scores: dict[str, Any]) -> float:
        value = scores[self.metric]
        if value is None:  # e.g. FID on fewer images than it needs
            raise MnistgenError(f"--metric {self.metric}: not computed ({scores['skipped'][self.metric]}); raise -n")
        return float(value)

    def objective(self, trial: Any) -> float:
        import optuna

        overrides = [f"{p.name}={p.suggest(trial)}" for p in self.params]
        cfg = apply_overrides(self.cfg, overrides)
        run = self.out / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("run", str(run))
        trial.set_user_attr("overrides", overrides)

        def report(trainer: Any, record: dict[str, Any]) -> None:
            value = self.value(score_model(trainer.sampling_model(), self.prune_n, self.seed, self.data))
            trial.report(value, int(record["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned(f"{self.metric} {value:.4g} after epoch {record['epoch']}")

        opts = RunOptions(out=str(run), seed=self.seed, device=self.device, subset=self.subset, data=self.data,
                          max_minutes=self.minutes, progress=False)
        try:
            start_run(cfg, opts, on_epoch=report)
        except TrainingStopped as exc:
            if isinstance(exc.__cause__, optuna.TrialPruned):
                raise exc.__cause__ from None
            raise
        from .sampling import load_trained_model

        model, _ = load_trained_model(run)
        return self.value(score_model(model, self.n, self.seed, self.data))


def open_study(name: str, storage: str, direction: str, attempts: int = 5) -> Any:
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

    for attempt in range(attempts):
        try:
            # Heartbeats let the study notice a trial whose worker was killed, and count it failed.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                rdb = optuna.storages.RDBStorage(storage, heartbeat_interval=30, grace_period=90)
            return optuna.create_study(study_name=name, storage=rdb, direction=direction, load_if_exists=True,
                                       pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
        except (OperationalError, IntegrityError) as exc:
            # Workers started together race to create a new database's tables: the loser tries again.
            if attempt == attempts - 1:
                raise MnistgenError(f"--storage {storage}: {str(exc).splitlines()[0]}") from None
            time.sleep(0.5 * (attempt + 1))
        except SQLAlchemyError as exc:  # e.g. a URL of no database it knows
            raise MnistgenError(f"--storage {storage}: {str(exc).splitlines()[0]}") from None
        except ValueError as exc:  # e.g. the stored study optimises the other way, or a URL it cannot read
            raise MnistgenError(f"study {name!r} in {storage}: {exc}") from None


def finished(study: Any) -> list[Any]:
    import optuna

    return [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


def run_sweep(cfg: Config, params: list[Param], out: Path, trials: int, metric: str = "fid", minutes: float = 1.0,
              n: int = 2000, prune_n: int = 500, seed: int = 0, subset: int | None = None, data: str | None = None,
              device: str = "auto", storage: str | None = None, study_name: str | None = None,
              final_n: int = FINAL_N) -> dict[str, Any]:
    """Run trials until the study holds ``trials`` finished ones, then write the sweep folder's summary."""
    import optuna

    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    name = study_name or f"mnistgen-{cfg.preset}"
    sweep = Sweep(cfg, params, out, metric, minutes, n, prune_n, seed, subset, data, device)
    study = open_study(name, storage, METRICS[metric])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    if len(finished(study)) < trials:
        study.optimize(sweep.objective, callbacks=[optuna.study.MaxTrialsCallback(trials, states=states)],
                       catch=(TrainingStopped,), gc_after_trial=True)
    return write_summary(study, sweep, storage, final_n)


def write_summary(study: Any, sweep: Sweep, storage: str, final_n: int = FINAL_N) -> dict[str, Any]:
    """trials.md, best.yaml, best.json and the plots, from the study as it is now."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    names = [p.name for p in sweep.params]
    lines = [f"# Sweep of {sweep.cfg.preset}: {sweep.metric} ({METRICS[sweep.metric]}), study {study.study_name!r}",
             "", f"storage: {storage.split('///')[-1] if storage.startswith('sqlite') else storage}; "
             f"{sweep.minutes:g} training minutes a trial; value on {sweep.n} samples, pruning on {sweep.prune_n} "
             f"(seed {sweep.seed})", "",
             "| trial | state | " + " | ".join(names) + f" | {sweep.metric} |", "|---|---|" + "---|" * (len(names) + 1)]
    for t in study.trials:
        value = "" if t.value is None else f"{t.value:.4g}"
        lines.append(f"| {t.number} | {t.state.name.lower()} | "
                     + " | ".join(f"{t.params.get(k, ''):.4g}" if isinstance(t.params.get(k), float)
                                  else str(t.params.get(k, "")) for k in names) + f" | {value} |")
    summary: dict[str, Any] = {"study": study.study_name, "metric": sweep.metric, "trials": len(study.trials),
                               "complete": len(complete)}
    if complete:
        best = study.best_trial
        best_cfg = apply_overrides(sweep.cfg, best.user_attrs.get("overrides", []))
        preset = {k: v for k, v in best_cfg.to_dict().items() if k != "preset"}
        preset["description"] = (f"best of sweep {study.study_name!r} ({sweep.metric} {best.value:.4g}, trial "
                                 f"{best.number}) over {sweep.cfg.preset}: {', '.join(best.user_attrs['overrides'])}")
        atomic_write_text(sweep.out / "best.yaml", yaml.safe_dump(preset, sort_keys=False))
        run = Path(best.user_attrs["run"])
        rescored = None
        if run.is_dir():  # on another machine's worker the folder is elsewhere
            from .evaluation import evaluate

            rescored = evaluate(run, n=final_n, seed=sweep.seed, data=sweep.data)["samples"]
            rescored = {k: rescored[k] for k in ("n", *METRICS, "spread")}
        summary.update(best_trial=best.number, best_value=best.value, best_overrides=best.user_attrs["overrides"],
                       best_run=str(run), best_rescored=rescored)
        lines += ["", f"Best: trial {best.number}, {sweep.metric} {best.value:.4g} on {sweep.n} samples"
                  + (f"; {rescored[sweep.metric]:.4g} on {final_n:,} (seed {sweep.seed})" if rescored else "")
                  + f"; its config: best.yaml (`mnistgen train {sweep.out / 'best.yaml'}`)"]
        summary["plots"] = write_plots(study, sweep.out)
    atomic_write_text(sweep.out / "trials.md", "\n".join(lines) + "\n")
    atomic_write_text(sweep.out / "sweep.json", json.dumps(summary, indent=2) + "\n")
    return summary


def write_plots(study: Any, out: Path) -> list[str]:
    """Optuna's optimisation history and parameter importances as PNG (importances need two or more
    finished trials that differ; where Optuna cannot draw one, it is left out and said so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    from optuna.exceptions import ExperimentalWarning

    warnings.filterwarnings("ignore", category=ExperimentalWarning)  # the matplotlib plots are marked experimental
    written = []
    for name, draw in (("history", optuna_plots.plot_optimization_history),
                       ("importances", optuna_plots.plot_param_importances)):
        with matplotlib.rc_context():  # Optuna switches pyplot to its own style; keep that to these figures
            try:
                axes = draw(study)
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                written.append(f"{name}: not drawn ({exc})")
                continue
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.tight_layout()
            atomic_write(out / f"{name}.png", lambda fh: figure.savefig(fh, format="png", dpi=100))
            plt.close(figure)
        written.append(f"{name}.png")
    return written


__all__ = ["METRICS", "Param", "parse_param", "run_sweep", "score_model"]
