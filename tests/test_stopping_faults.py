"""Stopping and refusing without damage: a refused `train --resume` changes nothing on disk, and the
launcher of `train --nproc` passes a stop on to every process it started and waits for all of them."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mnistgen.checkpoint import load_checkpoint
from mnistgen.cli import main
from mnistgen.runfolder import RunFolderLock


def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and folder under ``folder`` (dot files included): size, modification time, mode."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_mode)
            for p in sorted(folder.rglob("*"))}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mnistgen: error: "), err
    return err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, mnist):
    out = tmp_path_factory.mktemp("resume") / "run"
    assert main(["train", "vae", "--subset", "64", "--epochs", "1", "--set", "batch_size=32", "--out", str(out),
                 "--no-progress", "--device", "cpu"]) == 0
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A copy of the finished run with its times kept, for a test that may damage it."""
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


@pytest.mark.parametrize("extra, message", [
    (["--seed", "5"], "--seed 5 differs from the run's 0"),
    (["--subset", "32"], "--subset 32 differs from the run's 64"),
    (["--set", "model_args.latent_dim=3"], "latent_dim cannot change on resume"),
    (["--set", "batch_size=16"], "batch_size cannot change on resume"),
    (["--set", "lr=nan"], "lr must be a finite number > 0"),
    (["--set", "colour=red"], "unknown setting 'colour'"),
    (["--device", "cuda"], "cuda"),
])
def test_a_refused_resume_of_a_run_changes_nothing(extra, message, run_copy, capsys):
    before = snapshot(run_copy)
    # --epochs 3: without the refusal this would train two more epochs
    assert main(["train", "--resume", str(run_copy), "--epochs", "3", "--no-progress", *extra]) == 2
    assert message in one_line_error(capsys)
    assert snapshot(run_copy) == before


def test_a_resume_as_another_preset_changes_nothing(run_copy, capsys):
    before = snapshot(run_copy)
    assert main(["train", "gan", "--resume", str(run_copy), "--epochs", "3", "--no-progress"]) == 2
    assert "is a run of 'vae', not 'gan'" in one_line_error(capsys)
    assert snapshot(run_copy) == before


def test_a_finished_run_resumed_with_nothing_to_train_changes_nothing(run_copy, capsys):
    before = snapshot(run_copy)
    for extra in ([], ["--set", "lr=0.5"], ["--epochs", "1"]):
        assert main(["train", "--resume", str(run_copy), "--no-progress", *extra]) == 0
        assert "is already complete (1 epochs)" in capsys.readouterr().out
        assert snapshot(run_copy) == before


def test_a_damaged_run_is_refused_before_anything_is_written(run_copy, capsys):
    metrics = run_copy / "metrics.jsonl"
    metrics.write_text("{broken\n" + metrics.read_text())
    before = snapshot(run_copy)
    assert main(["train", "--resume", str(run_copy), "--epochs", "3", "--no-progress"]) == 2
    assert "metrics.jsonl, line 1: damaged record" in one_line_error(capsys)
    assert snapshot(run_copy) == before

    (run_copy / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    before = snapshot(run_copy)
    assert main(["train", "--resume", str(run_copy), "--epochs", "3", "--no-progress"]) == 2
    assert "is truncated, damaged or not a mnistgen checkpoint" in one_line_error(capsys)
    assert snapshot(run_copy) == before


def test_a_run_in_use_is_refused_and_left_alone(run_copy, capsys):
    with RunFolderLock(run_copy):
        before = snapshot(run_copy)
        assert main(["train", "--resume", str(run_copy), "--epochs", "3", "--no-progress"]) == 2
        assert f"is in use by process {os.getpid()}" in one_line_error(capsys)
        assert snapshot(run_copy) == before


@pytest.mark.parametrize("contents", [{}, {"notes.txt": "mine"}, {"checkpoints/other.pt": "x"}])
def test_a_folder_that_is_not_a_run_is_refused_and_left_alone(contents, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, text in contents.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    before = snapshot(folder)
    assert main(["train", "--resume", str(folder), "--no-progress"]) == 2
    assert "not a run folder (it holds no checkpoints/last.pt)" in one_line_error(capsys)
    assert snapshot(folder) == before


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
