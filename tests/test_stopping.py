"""How a training stops: signals (also through the `train --nproc` launcher), errors, NaNs and time budgets."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_trainer, one_line_error, quick
from mnistgen.checkpoint import load_checkpoint
from mnistgen.cli import main
from mnistgen.errors import TrainingDiverged
from mnistgen.training.stopping import KILL_ENV, KILL_SIGNAL_ENV


def test_sigterm_saves_the_last_step_and_exits_143(tmp_path, mnist, monkeypatch, capsys):
    out = tmp_path / "run"
    # checkpoint_every 0: before, everything since the last epoch end was lost. Progress is on and
    # stderr is not a terminal, so the log gets one line per epoch and no bar noise.
    monkeypatch.setenv(KILL_ENV, "6")
    monkeypatch.setenv(KILL_SIGNAL_ENV, "SIGTERM")
    assert main([a for a in quick(out) if a != "--no-progress"]) == 143
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err
    assert "interrupted by SIGTERM" in captured.err and f"--resume {out}" in captured.err
    assert [line.split(":")[0] for line in captured.out.splitlines()] == ["vae epoch 1/2"]
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 6)
    monkeypatch.delenv(KILL_ENV)
    assert (out / ".lock").exists()  # left behind (a SIGKILL would leave it too): must not block the resume
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert load_checkpoint(out / "checkpoints" / "last.pt")["global_step"] == 8

def test_ctrl_c_saves_the_last_step_and_exits_130(tmp_path, mnist, monkeypatch, capsys):
    monkeypatch.setenv(KILL_ENV, "3")
    monkeypatch.setenv(KILL_SIGNAL_ENV, "SIGINT")
    assert main(quick(tmp_path / "run")) == 130
    assert "interrupted by SIGINT" in one_line_error(capsys)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["global_step"] == 3

def test_an_error_during_training_saves_the_last_step(tmp_path, mnist, monkeypatch, capsys):
    import mnistgen.training.runwriter as runwriter

    real_save_grid, calls = runwriter.save_grid, {"n": 0}

    def disk_full_on_second_grid(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real_save_grid(*args, **kw)

    monkeypatch.setattr(runwriter, "save_grid", disk_full_on_second_grid)
    out = tmp_path / "run"
    assert main(quick(out)) == 1
    err = one_line_error(capsys)
    assert "No space left on device" in err and "saved epoch 2, step 8" in err
    monkeypatch.undo()
    assert load_checkpoint(out / "checkpoints" / "last.pt")["global_step"] == 8


def test_nan_loss_stops_with_clear_message_and_keeps_last_good_checkpoint(tmp_path, mnist):
    trainer = make_tiny_trainer(tmp_path / "run", checkpoint_every=1)
    real_loss, calls = trainer.loss_fn, {"n": 0}

    def loss_that_explodes(x, beta, labels):
        calls["n"] += 1
        terms = real_loss(x, beta=beta, labels=labels)
        if calls["n"] == 3:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    trainer.loss_fn = loss_that_explodes
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1, step 3"):
        trainer.run()
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["global_step"] == 2
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_nan_validation_loss_stops_the_run(tmp_path, mnist, monkeypatch, capsys):
    from mnistgen.training.likelihood import LikelihoodTrainer

    monkeypatch.setattr(LikelihoodTrainer, "validation_loss", lambda self: {"val_loss": float("nan")})
    assert main(quick(tmp_path / "run")) == 2
    assert "val_loss became nan" in one_line_error(capsys)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["global_step"] == 0


def test_time_budget_stops_and_is_recorded(tmp_path, mnist):
    trainer = make_tiny_trainer(tmp_path / "run", epochs=50)
    trainer.opts.max_minutes = 1e-6
    summary = trainer.run()
    assert summary["stop_reason"] == "time budget" and summary["steps"] == 1
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 1


def test_a_default_preset_fills_its_time_budget(tmp_path, mnist):
    """With --max-minutes and no --epochs, vae and gan train until the time is up."""
    from mnistgen.config import apply_overrides, load_preset

    for preset in ("vae", "gan"):
        cfg = load_preset(preset)
        assert cfg.train.fill_budget and not apply_overrides(cfg, ["epochs=3"]).train.fill_budget
    out = tmp_path / "run"  # the preset's epochs cut to 2 (fill_budget kept on) to keep the test short
    assert main(["train", "vae", "--subset", "32", "--set", "batch_size=32", "--set", "epochs=2", "--set",
                 "fill_budget=true", "--max-minutes", "0.03", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "time budget" and summary["epochs_completed"] > 2
    out2 = tmp_path / "run2"  # an explicit epoch count is obeyed
    assert main(["train", "vae", "--subset", "32", "--set", "batch_size=32", "--max-minutes", "5", "--epochs", "2",
                 "--out", str(out2), "--no-progress"]) == 0
    assert json.loads((out2 / "summary.json").read_text())["epochs_completed"] == 2

def test_signals_are_restored_after_training(tmp_path, mnist):
    before = signal.getsignal(signal.SIGTERM)
    assert main(quick(tmp_path / "run", "vae", "--epochs", "1")) == 0
    assert signal.getsignal(signal.SIGTERM) is before

def test_a_stop_before_any_checkpoint_says_so(tmp_path, mnist):
    from mnistgen.config import load_preset
    from mnistgen.errors import TrainingDiverged
    from mnistgen.training import RunOptions, make_trainer

    trainer = make_trainer(load_preset("vae"), RunOptions(out=str(tmp_path / "run"), subset=32, progress=False))
    with pytest.raises(TrainingDiverged, match="No checkpoint yet"):
        trainer._stop(TrainingDiverged("loss became nan"))


# ------------------------------------------------------------------ the launcher of `train --nproc`

LAUNCHER = [sys.executable, "-c", "import sys; from mnistgen.training.distributed import launch; "
                                  "sys.exit(launch(sys.argv[1:]))"]
# A stand-in for torchrun: a parent that starts a child in its group. On a stop, the parent writes its
# file and ends at once; the child takes a second longer, so the launcher must wait for a process
# that is no longer its child's child but an orphan.
FAKE = textwrap.dedent("""
    import signal, subprocess, sys, time
    from pathlib import Path
    folder, role = Path(sys.argv[1]), sys.argv[2]
    def stop(signum, frame):
        if role == "child":
            time.sleep(1)
        (folder / f"{role}.stopped").write_text(signal.Signals(signum).name)
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if role == "parent":
        subprocess.Popen([sys.executable, __file__, str(folder), "child"])
    (folder / f"{role}.pid").write_text(str(__import__("os").getpid()))
    while True:
        time.sleep(0.05)
""")


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """True for a process that runs (a zombie, ended but not collected, counts as alive too)."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False



@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_to_the_launcher_reaches_every_process_and_waits_for_them(signum, code, tmp_path):
    script = tmp_path / "fake_torchrun.py"
    script.write_text(FAKE)
    launcher = subprocess.Popen([*LAUNCHER, sys.executable, str(script), str(tmp_path), "parent"],
                                stderr=subprocess.PIPE, text=True)
    for role in ("parent", "child"):
        wait_for(tmp_path / f"{role}.pid", launcher)
    pids = [int((tmp_path / f"{role}.pid").read_text()) for role in ("parent", "child")]
    launcher.send_signal(signum)
    assert launcher.wait(timeout=30) == code, launcher.stderr.read()
    assert [(tmp_path / f"{role}.stopped").read_text() for role in ("parent", "child")] == [signum.name] * 2
    assert not any(alive(pid) for pid in pids)
    with pytest.raises(ProcessLookupError):
        os.killpg(pids[0], 0)  # the parent led the group: nothing of it is left

@pytest.mark.parametrize("body, code", [("raise SystemExit(3)", 3), ("import os; os.kill(os.getpid(), 9)", 137)])
def test_the_launcher_returns_the_commands_exit_code(body, code):
    assert subprocess.run([*LAUNCHER, sys.executable, "-c", body], timeout=60).returncode == code

def processes_naming(text: str) -> list[int]:
    """PIDs of the processes whose command line holds ``text`` (zombies included)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:  # ended while we looked
            pass
    return found

@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the ranks through /proc")
def test_sigterm_to_the_launcher_of_two_ranks_saves_and_leaves_no_rank_running(tmp_path, mnist):
    """The slow one (about 20 s): torchrun with two real ranks, stopped during training."""
    run = tmp_path / "ddp-run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "mnistgen",
                "train", "vae", "--subset", "128", "--epochs", "1000", "--set", "batch_size=32", "--no-progress",
                "--device", "cpu", "--out", str(run)]
    launcher = subprocess.Popen([*LAUNCHER, *torchrun], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(run / "metrics.jsonl", launcher, seconds=120)  # an epoch is done: both ranks train
    assert len(processes_naming(str(run))) >= 3  # torchrun and its two ranks
    launcher.send_signal(signal.SIGTERM)
    out, err = launcher.communicate(timeout=90)
    assert launcher.returncode == 143, err[-3000:]
    assert "interrupted by SIGTERM; saved epoch" in err
    assert processes_naming(str(run)) == []
    saved = load_checkpoint(run / "checkpoints" / "last.pt")
    assert saved["global_step"] > 0
    more = str(saved["epoch"] + 1)  # the saved run goes on, in one process
    assert main(["train", "--resume", str(run), "--epochs", more, "--no-progress"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == int(more)
