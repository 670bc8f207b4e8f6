"""A `train --resume` that is refused, or finds nothing left to train, changes nothing on disk."""

import os
import shutil
from pathlib import Path

import pytest

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
