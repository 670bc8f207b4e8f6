"""How training stops before its last epoch: Ctrl-C and SIGTERM (honoured between two steps), the time
budget (on every rank at once), a NaN or infinite loss (the NaN guard), an error; the one-line error
that says what was kept and how to go on; and the kill switch the tests stop a run with."""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import MnistgenError, TrainingDiverged, TrainingStopped
from .distributed import World, any_rank

if TYPE_CHECKING:
    from .loop import Trainer

KILL_ENV = "MNISTGEN_KILL_AFTER_STEP"  # test hook: signal ourselves after this global step ...
KILL_SIGNAL_ENV = "MNISTGEN_KILL_SIGNAL"  # ... with this signal (default SIGKILL)


class StopRequests:
    """Turns Ctrl-C and SIGTERM into a request that the loop honours between steps, so the
    checkpoint it saves is a whole step. A second Ctrl-C stops at once (nothing saved)."""

    def __init__(self, immediate: bool = False) -> None:
        self.signum: int | None = None
        self.immediate = immediate  # raise at once (setting up: nothing worth finishing yet)
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        if self.immediate:
            self.raise_if_requested()

    def raise_if_requested(self) -> None:
        if self.signum:
            raise TrainingStopped(f"interrupted by {signal.Signals(self.signum).name}", self.signum)

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():  # signals only reach the main thread
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def agree_to_stop(stop: StopRequests, out_of_time: bool, world: World) -> bool:
    """Raise if a stop was requested, return whether the time is up; with several ranks, a request or
    the budget on any rank counts for all, so every rank stops after the same step."""
    stopping, out_of_time = any_rank([stop.signum is not None, out_of_time], world)
    if stopping and stop.signum is None:
        stop.signum = signal.SIGTERM
    stop.raise_if_requested()
    return out_of_time


def check_finite(terms: dict[str, float], epoch: int, step: int) -> None:
    """The NaN guard: a loss that is NaN or infinite stops the run (training or validation terms of
    ``epoch``, at global ``step``, both counted from 1)."""
    bad = [k for k, v in terms.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise TrainingDiverged(f"{', '.join(bad)} became {terms[bad[0]]} at epoch {epoch}, step {step}; stopped "
                               f"(try a lower learning rate)")


def raise_stopped(exc: BaseException, note: str) -> NoReturn:
    """The error that ends a stopped run: what stopped it (a signal, a mnistgen error, anything else)
    followed by ``note``, what was kept and how to go on."""
    signum = getattr(exc, "signum", None) or (signal.SIGINT if isinstance(exc, KeyboardInterrupt) else None)
    if signum:
        raise TrainingStopped(f"interrupted by {signal.Signals(signum).name}; {note}", signum) from None
    if isinstance(exc, MnistgenError):
        raise exc.__class__(f"{exc}; {note}") from exc
    raise TrainingStopped(f"training failed ({exc.__class__.__name__}: {exc}); {note}") from exc


def end_stopped_run(trainer: Trainer, exc: BaseException) -> NoReturn:
    """Save the last completed step unless a step was cut half-way (or the weights are bad), then raise
    an error that says what was kept and how to go on."""
    writer = trainer.writer
    note = writer.last_checkpoint_note()
    if isinstance(exc, TrainingDiverged):
        raise TrainingDiverged(f"{exc}. {note.capitalize()}") from None
    discarded = trainer.global_step == 0 and trainer.discard_untrained  # start_run removes the folder
    if discarded:
        note = f"nothing was trained yet, so {trainer.out} was removed"
    elif trainer.mid_step:
        note = f"stopped half-way through a step or an epoch's end, not saved; {note}"
    else:
        try:
            trainer.save()
            note = f"saved epoch {trainer.epoch}, step {trainer.global_step} to {writer.last_checkpoint}"
        except Exception as save_error:  # e.g. the disk is full: say so, keep the old checkpoint
            note = f"could not save ({save_error.__class__.__name__}: {save_error}); {writer.last_checkpoint_note()}"
    if writer.last_checkpoint.is_file() and not discarded:
        note += f"; resume with: mnistgen train --resume {trainer.out}"
    raise_stopped(exc, note)


def kill_switch_from_env() -> Callable[[Any], None] | None:
    """With MNISTGEN_KILL_AFTER_STEP=N, a step hook that sends this process MNISTGEN_KILL_SIGNAL (default
    SIGKILL) after global step N, as a crash or a user would; else None."""
    after = int(os.environ.get(KILL_ENV, "0"))
    signum = signal.Signals[os.environ.get(KILL_SIGNAL_ENV, "SIGKILL")]

    def kill(trainer: Any) -> None:
        if trainer.global_step == after:
            os.kill(os.getpid(), signum)

    return kill if after else None
