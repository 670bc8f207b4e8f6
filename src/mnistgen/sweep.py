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

Ctrl-C or SIGTERM stops the sweep (exit 130 or 143) once the trial in progress has saved its
training; that trial is recorded as stopped, and the same command started again takes it up first,
with its parameters, continuing its run folder for the rest of its minutes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from .config import Config, apply_overrides
from .errors import MnistgenError, TrainingDiverged, TrainingStopped
from .evaluation import EvalOptions
from .fileio import atomic_write, atomic_write_text
from .training import RunOptions, StopRequests, ensure_run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Direction = Literal["minimize", "maximize"]

# The metric to optimise and its direction.
METRICS: dict[str, Direction] = {"fid": "minimize", "kid": "minimize", "acceptable": "maximize",
                                 "coverage": "maximize", "inception_score": "maximize", "precision": "maximize",
                                 "recall": "maximize"}
KINDS = ("log", "float", "int", "cat")
FINAL_N = 10_000  # samples that re-score the best trial
# Trial attributes: the signal that stopped a trial, and the earlier trial that a trial takes up again.
STOPPED, CONTINUES = "stopped_by", "continues_trial"
# Database drivers whose package on PyPI has another name than the module SQLAlchemy imports.
DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient",
                   "pymysql": "PyMySQL"}


class TrialFailed(Exception):
    """A trial's training failed (an error, or a loss that became NaN): the study records the trial
    as failed and the sweep goes on with the next one."""


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
        assert self.low is not None and self.high is not None  # parse_param gives a range both ends
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


def score_model(model: Any, options: EvalOptions) -> dict[str, Any]:
    """The metrics of ``options.n`` samples of a model in memory (what `mnistgen evaluate` computes)."""
    from .evaluation import reference_set
    from .metrics import classify, score
    from .sampling import sample_float

    classifier, _, _, reference = reference_set(options.data)
    was_training = model.training
    model.eval()
    images = sample_float(model, options.n, options.seed)
    model.train(was_training)
    return score(classify(classifier, images), reference, seed=options.seed)


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep trains and scores its trials: ``minutes`` of training each, scored by ``metric`` on
    ``n`` samples (``prune_n`` after each epoch for the pruner; the best again on ``final_n`` at the end),
    all with ``seed``; ``subset``, ``data`` and ``device`` as for ``mnistgen train``. The study lives in
    ``storage`` (default: SQLite in the sweep folder) under ``study_name`` (default mnistgen-PRESET)."""

    metric: str = "fid"
    minutes: float = 1.0
    n: int = 2000
    prune_n: int = 500
    final_n: int = FINAL_N
    seed: int = 0
    subset: int | None = None
    data: str | None = None
    device: str = "auto"
    storage: str | None = None
    study_name: str | None = None


class Sweep:
    """The trials of one study: each trains ``cfg`` with a trial's values for ``params`` in ``out``."""

    def __init__(self, cfg: Config, params: list[Param], out: Path, options: SweepOptions):
        if options.metric not in METRICS:
            raise MnistgenError(f"--metric must be one of {', '.join(METRICS)}, not {options.metric!r}")
        self.cfg, self.params, self.out, self.options = cfg, params, out, options
        self.metric, self.minutes, self.n, self.prune_n = options.metric, options.minutes, options.n, options.prune_n
        self.seed, self.data = options.seed, options.data
        # A finished trial's score, and the smaller one after each epoch that the pruner compares.
        self.scoring = EvalOptions(n=options.n, seed=options.seed, data=options.data)
        self.pruning = dataclasses.replace(self.scoring, n=options.prune_n)
        self.stopped: dict[int, str] = {}  # trials a signal stopped in this process: number -> run folder

    def value(self, scores: dict[str, Any]) -> float:
        value = scores[self.metric]
        if value is None:  # e.g. FID on fewer images than it needs
            raise MnistgenError(f"--metric {self.metric}: not computed ({scores['skipped'][self.metric]}); raise -n")
        return float(value)

    def objective(self, trial: Any) -> float:
        """Train and score one trial. A stop by Ctrl-C or SIGTERM is marked on the trial and raised
        on (the run saved itself); a failed training fails this trial only."""
        import optuna

        run = self.run_folder(trial)
        trial.set_user_attr("run", str(run))
        try:
            return self.train_and_score(trial, run)
        except TrainingStopped as exc:
            if exc.signum:
                trial.set_user_attr(STOPPED, signal.Signals(exc.signum).name)
                self.stopped[trial.number] = str(run)
                raise
            if isinstance(exc.__cause__, optuna.TrialPruned):
                raise exc.__cause__ from None
            raise TrialFailed(str(exc)) from exc
        except TrainingDiverged as exc:
            raise TrialFailed(str(exc)) from exc

    def run_folder(self, trial: Any) -> Path:
        """``SWEEP/trials/NNNN``, or the folder of the stopped trial that this one takes up again."""
        if CONTINUES in trial.user_attrs:
            return Path(trial.user_attrs["run"])
        return self.out / "trials" / f"{trial.number:04d}"

    def train_and_score(self, trial: Any, run: Path) -> float:
        import optuna

        overrides = [f"{p.name}={p.suggest(trial)}" for p in self.params]
        cfg = apply_overrides(self.cfg, overrides)
        trial.set_user_attr("overrides", overrides)

        def report(trainer: Any, record: dict[str, Any]) -> None:
            value = self.value(score_model(trainer.sampling_model(), self.pruning))
            trial.report(value, int(record["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned(f"{self.metric} {value:.4g} after epoch {record['epoch']}")

        # A new trial trains now; a stopped one taken up again continues its run for its minutes left
        # (--minutes counts its training in all, as a reproduction's cap counts a system's).
        o = self.options
        ensure_run(RunOptions(out=str(run), seed=o.seed, device=o.device, subset=o.subset, data=o.data,
                              max_minutes=o.minutes, progress=False), cfg, on_epoch=report)
        from .sampling import load_trained_model

        model, _ = load_trained_model(run)
        return self.value(score_model(model, self.scoring))

    def stop_message(self, signum: int) -> str:
        name = signal.Signals(signum).name
        if not self.stopped:
            return f"sweep {self.out} stopped by {name}; run the same command to continue it"
        number, run = max(self.stopped.items())
        return (f"sweep {self.out} stopped by {name} in trial {number}; run the same command to continue it "
                f"(the trial's training goes on from {run})")


class HideStoppedTrials(logging.Filter):
    """Optuna logs a trial that raised as failed, with a traceback. A trial stopped by a signal has not
    failed: the sweep says in one line that it stopped, and takes the trial up again when run again."""

    def __init__(self, sweep: Sweep):
        super().__init__()
        self.sweep = sweep

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(record.getMessage().startswith(f"Trial {n} failed") for n in self.sweep.stopped)


def take_up_stopped_trials(study: Any) -> None:
    """Queue again each trial that a signal stopped and no later trial has taken up: with its
    parameters and its run folder, so that the next trial continues its training."""
    import optuna

    taken = {t.user_attrs.get(CONTINUES) for t in study.trials}
    for t in study.trials:
        if t.state == optuna.trial.TrialState.FAIL and STOPPED in t.user_attrs and t.number not in taken:
            study.enqueue_trial(t.params, user_attrs={CONTINUES: t.number, "run": t.user_attrs["run"]})


def open_study(name: str, storage: str, direction: Direction, attempts: int = 5) -> Any:
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
        except ImportError as exc:  # Optuna's, raised from SQLAlchemy's import of the database's driver
            raise MnistgenError(f"--storage {storage}: {missing_driver(exc)}") from None
        except ValueError as exc:  # e.g. the stored study optimises the other way, or a URL it cannot read
            raise MnistgenError(f"study {name!r} in {storage}: {exc}") from None


def finished(study: Any) -> list[Any]:
    import optuna

    return [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


def missing_driver(exc: ImportError) -> str:
    module = getattr(exc.__cause__, "name", None)
    if not module:
        return f"the database's driver cannot be imported ({exc.__cause__ or exc}); install it, or use another URL"
    package = DRIVER_PACKAGES.get(module, module)
    return f"its database driver {module} is not installed; install it (pip install {package}) or use another URL"


def make_sweep_folder(out: Path) -> None:
    """Create the sweep folder, or take an existing one to continue; a file or a place that cannot
    be written is refused."""
    if out.exists() and not out.is_dir():
        raise MnistgenError(f"--out {out} is a file; it must name a sweep folder (a new one, or one to continue)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MnistgenError(f"--out {out}: cannot create it ({exc.strerror or exc}); name a folder you can "
                            f"write to") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise MnistgenError(f"--out {out}: cannot write into it; name a folder you can write to")


def run_sweep(cfg: Config, params: list[Param], out: Path, trials: int,
              options: SweepOptions | None = None) -> dict[str, Any]:
    """Run trials until the study holds ``trials`` finished ones, then write the sweep folder's summary.
    Ctrl-C or SIGTERM raises :class:`TrainingStopped` once the trial in progress has saved its training."""
    import optuna

    options = options or SweepOptions()
    sweep = Sweep(cfg, params, out, options)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = options.storage
    shared = storage is not None
    if storage is None:  # the study lives in the sweep folder
        make_sweep_folder(out)
        storage = f"sqlite:///{(out / 'study.db').resolve()}"
    study = open_study(options.study_name or f"mnistgen-{cfg.preset}", storage, METRICS[options.metric])
    if shared:  # made once the database has answered, so that a bad URL leaves nothing behind
        make_sweep_folder(out)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    hide = HideStoppedTrials(sweep)
    optuna_log = logging.getLogger("optuna.study._optimize")
    optuna_log.addFilter(hide)
    try:
        # A signal while no trial trains (scoring, the database, the summary) stops at once.
        with StopRequests(immediate=True):
            if len(finished(study)) < trials:
                take_up_stopped_trials(study)
                study.optimize(sweep.objective, callbacks=[optuna.study.MaxTrialsCallback(trials, states=states)],
                               catch=(TrialFailed,), gc_after_trial=True)
            return write_summary(study, sweep, storage, options.final_n)
    except TrainingStopped as exc:
        if not exc.signum:
            raise
        raise TrainingStopped(sweep.stop_message(exc.signum), exc.signum) from None
    finally:
        optuna_log.removeFilter(hide)


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
        state = f"stopped by {t.user_attrs[STOPPED]}" if STOPPED in t.user_attrs else t.state.name.lower()
        lines.append(f"| {t.number} | {state} | "
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

            rescored = evaluate(run, sweep.scoring, n=final_n)["samples"]
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
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as optuna_plots

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
            figure = _figure_of(axes)
            figure.tight_layout()
            atomic_write(out / f"{name}.png", partial(figure.savefig, format="png", dpi=100))
            plt.close(figure)
        written.append(f"{name}.png")
    return written


def _figure_of(drawn: Any) -> Figure:
    """The figure an Optuna plot drew on. Typed Any: Optuna declares one Axes, but a plot of several
    panels gives an array of them; either way it is a figure of its own (plt.subplots), not a subfigure."""
    axes = drawn if hasattr(drawn, "figure") else drawn.flat[0]
    return axes.figure


__all__ = ["METRICS", "Param", "SweepOptions", "parse_param", "run_sweep", "score_model"]
