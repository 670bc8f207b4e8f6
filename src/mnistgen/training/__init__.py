"""One training loop per family; ``make_trainer`` picks it from the preset's family.
``start_run`` and ``resume_run`` add what every caller (CLI, report, benchmarks) needs around
it: the run-folder lock, checks before anything is written, and a clean undo of a failed start;
``ensure_run`` is the one way a report, a reproduction and a sweep train, reuse or continue a run."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..checkpoint import load_checkpoint
from ..config import Config, apply_overrides
from ..errors import MnistgenError
from ..runfolder import RunFolderLock, check_new_run_folder, make_new_run_folder, remove_failed_start
from .adversarial import AdversarialTrainer
from .distill import DistillTrainer
from .distributed import world_from_env
from .flow import FlowTrainer
from .likelihood import LikelihoodTrainer
from .loop import RunOptions, Trainer, resolve_device
from .meanflow import MeanFlowTrainer
from .runwriter import read_metrics
from .stopping import StopRequests, kill_switch_from_env

# By family, or by model name for a model whose family's loop needs more (MeanFlow's warm start).
TRAINERS: dict[str, type[Trainer]] = {"vae": LikelihoodTrainer, "gan": AdversarialTrainer, "flow": FlowTrainer,
                                      "meanflow": MeanFlowTrainer}
# On resume these would change the data, the batches or the network, so they are refused.
FIXED_ON_RESUME = ("batch_size", "distill_from")


def trainer_class(cfg: Config) -> type[Trainer]:
    """The trainer that trains ``cfg``: distillation's loop if it names a teacher, its model's own loop if
    it has one, else its family's."""
    if cfg.train.distill_from:
        return DistillTrainer
    return TRAINERS.get(cfg.model, TRAINERS[cfg.family])


def make_trainer(cfg: Config, opts: RunOptions) -> Trainer:
    trainer = trainer_class(cfg)(cfg, opts)
    kill = kill_switch_from_env()  # the tests' way to kill a run at a given step
    if kill is not None:
        trainer.step_hooks.append(kill)
    return trainer


def absolute_data_path(data: str | os.PathLike | None) -> str | None:
    """``--data`` as stored in a run: absolute, so a resume from another folder finds it."""
    return None if data is None else str(Path(data).expanduser().resolve())


def start_run(cfg: Config, opts: RunOptions,
              on_epoch: Callable[[Trainer, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train a new run into ``opts.out`` (absent or empty) and return its summary.

    Everything that can be checked (options, data, model, batch size) is checked before the
    folder is made; if the start fails anyway, or the run stops before its first step, what was
    created is removed so that the same command can simply be run again. ``on_epoch(trainer, record)``
    is called after each epoch (see ``Trainer.on_epoch``)."""
    out = Path(opts.out)
    opts = dataclasses.replace(opts, data=absolute_data_path(opts.data))
    if not world_from_env().main:  # another rank of a distributed run: rank 0 checks and owns the folder
        trainer = make_trainer(cfg, opts)
        trainer.prepare_new_run()
        return trainer.run()
    check_new_run_folder(out)
    trainer = make_trainer(cfg, opts)
    trainer.discard_untrained = True
    trainer.on_epoch = on_epoch
    lock, created = make_new_run_folder(out)
    try:
        try:
            with StopRequests(immediate=True):  # SIGTERM while setting up: undo, like any failure
                trainer.prepare_new_run()
            return trainer.run()
        except BaseException:
            if trainer.global_step == 0:
                remove_failed_start(out, created)
            raise
    finally:
        lock.release()


def refuse_changes(run: dict[str, Any], given: dict[str, Any], out: Path) -> None:
    """Refuse an option (e.g. ``{"--seed": 1}``) whose value differs from the one the run was made with."""
    for option, value in given.items():
        if value is None:
            continue
        stored = run.get(option.lstrip("-"))
        if option == "--data":
            value = absolute_data_path(value)
            stored = absolute_data_path(stored)
        if value != stored:
            raise MnistgenError(f"{option} {value} differs from the run's {stored} in {out}; a resumed run "
                                f"keeps its {option.lstrip('-')} (start a new run to change it)")


@dataclasses.dataclass(frozen=True)
class ResumeOptions:
    """How to continue a run: for up to ``max_minutes`` more, on ``device`` (default: the run's own), with
    ``overrides`` that leave the network and the batches alone. ``preset``, ``seed``, ``subset`` and ``data``
    only confirm the run's own values: a resume refuses them where they differ."""

    max_minutes: float | None = None
    progress: bool = True
    overrides: list[str] | tuple[str, ...] = ()
    device: str | None = None
    preset: str | None = None
    seed: int | None = None
    subset: int | None = None
    data: str | None = None


def resume_run(out: str | os.PathLike, options: ResumeOptions | None = None,
               on_epoch: Callable[[Trainer, dict[str, Any]], None] | None = None, **changes: Any) -> dict[str, Any]:
    """Continue the run in ``out`` from its last checkpoint (see :class:`ResumeOptions`; ``changes`` replace
    single options: ``resume_run(out, max_minutes=5)``); return its summary (with ``already_complete``
    true when there was nothing left to train). ``on_epoch`` as in :func:`start_run`.

    A refusal, and a run that is already complete, leave the folder exactly as it was: everything is
    checked before the lock is taken or a file is written."""
    out = Path(out)
    checked = check_resume(out, dataclasses.replace(options or ResumeOptions(), **changes))
    trainer = checked.trainer
    summary_file = out / "summary.json"
    if trainer.complete and summary_file.is_file():
        return {**json.loads(summary_file.read_text()), "already_complete": True}
    # Rank 0 of a distributed run holds the lock for all of its ranks.
    with RunFolderLock(out) if world_from_env().main else contextlib.nullcontext():
        if checkpoint_signature(out) != checked.read_at:
            raise MnistgenError(f"{out} was trained by another process while this one read it; run the same "
                                f"command again to continue from where that one stopped")
        trainer.on_epoch = on_epoch
        trainer.resume(checked.state)
        if checked.settings_changed:
            trainer.write_config()
        if trainer.complete:  # stopped after its last epoch, before writing its summary
            summary = trainer.finish("epochs") if not summary_file.is_file() else json.loads(summary_file.read_text())
            return {**summary, "already_complete": True}
        return trainer.run()


TRAINED, REUSED, CONTINUED, RESUMED = ("trained now", "reused a finished run", "continued an earlier run",
                                       "resumed an interrupted run")


def ensure_run(opts: RunOptions, cfg: Config | None = None, overrides: list[str] | tuple[str, ...] = (),
               on_epoch: Callable[[Trainer, dict[str, Any]], None] | None = None) -> tuple[dict[str, Any], str]:
    """(summary, how it was obtained) of the run in ``opts.out``: trained now from ``cfg`` when the folder
    holds no run, else reused, or continued where a time budget or a kill stopped it.

    With ``cfg`` (a run the caller manages: a reproduction's system, a sweep's trial), ``opts.max_minutes``
    caps its training in all, over every sitting, and the run must have been made with ``opts``' seed,
    subset and data; it is continued with ``overrides`` (e.g. ``amp=on``). Without ``cfg`` (a run folder
    the user named, as in ``mnistgen report``) the run is taken as it is: reused once it holds a summary,
    else resumed with its own settings for up to ``opts.max_minutes`` more."""
    out = Path(opts.out)
    if cfg is None:
        return _as_found(out, opts.max_minutes)
    last = out / "checkpoints" / "last.pt"
    if not last.is_file():
        return start_run(cfg, opts, on_epoch=on_epoch), TRAINED
    state = load_checkpoint(last, expect_preset=cfg.preset)
    refuse_changes(state["run"], {"--seed": opts.seed, "--subset": opts.subset, "--data": opts.data}, out)
    summary_file = out / "summary.json"
    left = None if opts.max_minutes is None else opts.max_minutes * 60 - state["elapsed"]
    if summary_file.is_file() and (state["complete"] or (left is not None and left < 1)):
        return json.loads(summary_file.read_text()), REUSED
    # An interrupted run, or a capped one given more time: continue it (never past the cap in all).
    more = ResumeOptions(max_minutes=None if left is None else max(left, 1) / 60, progress=opts.progress,
                         overrides=overrides, device=opts.device, seed=opts.seed, subset=opts.subset, data=opts.data)
    summary = resume_run(out, more, on_epoch)
    return summary, CONTINUED


def _as_found(out: Path, max_minutes: float | None) -> tuple[dict[str, Any], str]:
    """A run folder the user named: reused when finished, else resumed first (see :func:`ensure_run`)."""
    if not (out / "checkpoints" / "last.pt").is_file():
        raise MnistgenError(f"{out} is not a run folder (no checkpoints/last.pt)")
    if (out / "summary.json").is_file():
        return json.loads((out / "summary.json").read_text()), REUSED
    summary = resume_run(out, max_minutes=max_minutes)
    # Killed between its last step and its summary: there was nothing left to train.
    done = "; it had finished training" if summary.get("already_complete") else ""
    return summary, f"{RESUMED}{done}"


def checkpoint_signature(out: Path) -> tuple[int, int, int]:
    """When and how last.pt was written: a checkpoint saved by another process changes it."""
    st = (out / "checkpoints" / "last.pt").stat()
    return st.st_mtime_ns, st.st_size, st.st_ino


@dataclasses.dataclass
class CheckedResume:
    """A run read and checked for resuming, with nothing in its folder touched yet."""

    trainer: Trainer  # with the new settings and the checkpoint loaded
    state: dict[str, Any]  # the checkpoint
    settings_changed: bool
    read_at: tuple[int, int, int]  # last.pt's checkpoint_signature when it was read


def check_resume(out: Path, options: ResumeOptions) -> CheckedResume:
    """Everything a resume checks, without writing anything: the folder is a run, the options agree
    with it, its checkpoint fits the network and its metrics can be read."""
    if not out.is_dir():
        raise MnistgenError(f"--resume {out}: no such run folder")
    if not (out / "checkpoints" / "last.pt").is_file():
        raise MnistgenError(f"--resume {out}: not a run folder (it holds no checkpoints/last.pt); name a folder "
                            f"that `mnistgen train` made")
    read_at = checkpoint_signature(out)
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    cfg = Config.from_dict(state["config"])
    if options.preset and options.preset != cfg.preset:
        raise MnistgenError(f"{out} is a run of {cfg.preset!r}, not {options.preset!r}")
    run = state["run"]
    refuse_changes(run, {"--seed": options.seed, "--subset": options.subset, "--data": options.data}, out)
    for item in options.overrides:
        key = item.partition("=")[0].strip().removeprefix("train.")
        if key.startswith("model_args.") or key in FIXED_ON_RESUME:
            raise MnistgenError(f"--set {item}: {key} cannot change on resume (it changes the network or the "
                                f"batches); start a new run instead")
    # Runs made before amp/compile were preset settings stored the --amp/--compile flags here.
    legacy = [f"{flag}=on" for flag in ("amp", "compile") if run.get(flag) is True]
    changed = apply_overrides(cfg, legacy + list(options.overrides))
    known = {f.name for f in dataclasses.fields(RunOptions)}
    opts = RunOptions(**{**{k: v for k, v in run.items() if k in known}, "out": str(out),
                         "max_minutes": options.max_minutes, "progress": options.progress})
    opts = dataclasses.replace(opts, device=options.device or opts.device)
    trainer = make_trainer(changed, opts)
    trainer.load_state(state)  # a checkpoint that does not fit the network is refused here
    if (out / "metrics.jsonl").is_file():
        read_metrics(out / "metrics.jsonl")  # a damaged record is refused here, before the log is rewritten
    return CheckedResume(trainer, state, changed != cfg, read_at)


__all__ = ["RunOptions", "ResumeOptions", "Trainer", "make_trainer", "trainer_class", "start_run", "resume_run",
           "ensure_run", "refuse_changes", "read_metrics", "resolve_device", "TRAINERS"]
