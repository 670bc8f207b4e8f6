"""A run folder holds one run's work whole: locked while in use, written by rename, never overwritten."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import one_line_error, quick, tiny_arrays
from mnistgen.checkpoint import load_checkpoint
from mnistgen.cli import main
from mnistgen.runfolder import RunFolderLock


def test_a_locked_run_folder_is_refused_with_the_holders_pid(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with RunFolderLock(out):
        assert main(quick(out)) == 2
    assert f"{out} is in use by process {os.getpid()}" in one_line_error(capsys)
    assert [p.name for p in out.iterdir()] == [".lock"]

def test_two_trainings_started_at_once_on_one_folder_never_mix(tmp_path, mnist):
    out = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-m", "mnistgen", *quick(out)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    err = next(e for code, e in results if code == 2)
    assert "is in use by process" in err or "already holds files" in err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]

def test_every_file_of_a_run_is_written_by_rename(tmp_path, mnist, monkeypatch):
    """Atomic writes: each file appears by os.replace of a complete temp file."""
    import mnistgen.fileio as fileio

    renamed = set()
    real_replace = os.replace

    def spy(src, dst):
        renamed.add(Path(dst).resolve())
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", spy)
    out = tmp_path / "run"
    assert main(quick(out, "gan", "--epochs", "1")) == 0
    assert main(["sample", str(out), "-n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["sample", str(out), "-n", "4", "--out", str(tmp_path / "s.npz")]) == 0
    # evaluate's own work is tested elsewhere; here only how --json is written
    import mnistgen.evaluation as evaluation

    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **kw: {"fid": 1.0})
    monkeypatch.setattr(evaluation, "format_table", lambda result: "table")
    assert main(["evaluate", str(tmp_path / "s.npz"), "--json", str(tmp_path / "e.json")]) == 0
    written = [p for p in out.rglob("*") if p.is_file() and "tensorboard" not in p.parts
               and p.name not in (".lock", "metrics.jsonl")]  # metrics.jsonl is appended; resume repairs it
    written += [tmp_path / "s.png", tmp_path / "s.npz", tmp_path / "e.json"]
    assert {p.resolve() for p in written} <= renamed, sorted(set(map(str, written)) - set(map(str, renamed)))

def test_a_failed_start_leaves_nothing_behind(tmp_path, mnist, monkeypatch, capsys):
    from mnistgen.training.loop import Trainer

    out = tmp_path / "run"
    real = Trainer.prepare_new_run

    def fails_half_way(self):
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.yaml").write_text("half")
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Trainer, "prepare_new_run", fails_half_way)
    with pytest.raises(OSError):
        main(quick(out))
    assert not out.exists()
    monkeypatch.setattr(Trainer, "prepare_new_run", real)
    assert main(quick(out)) == 0  # the retry is not blocked

def test_what_a_start_killed_before_its_first_checkpoint_leaves_does_not_block_a_retry(tmp_path, mnist):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / ".lock").write_text("99999\n")
    (out / "checkpoints" / "last.pt12345.tmp").write_bytes(b"half a checkpoint")
    assert main(quick(out, "vae", "--epochs", "1")) == 0

def test_a_bad_option_found_late_creates_no_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "gan", "--subset", "1", "--out", str(out), "--no-progress"]) == 2
    assert "--subset 1" in one_line_error(capsys)
    assert not out.exists()

def test_out_pointing_at_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("mine")
    assert main(["train", "vae", "--out", str(target)]) == 2
    assert "is a file" in one_line_error(capsys)
    assert target.read_text() == "mine"

def test_sample_never_overwrites_without_force(trained, tmp_path, capsys):
    out = tmp_path / "digits.png"
    out.write_bytes(b"precious")
    assert main(["sample", str(trained), "-n", "4", "--out", str(out)]) == 2
    assert "already exists; pass --force" in one_line_error(capsys)
    assert out.read_bytes() == b"precious"
    assert main(["sample", str(trained), "-n", "4", "--out", str(out), "--force"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    folder = tmp_path / "folder.png"
    folder.mkdir()
    assert main(["sample", str(trained), "-n", "4", "--out", str(folder)]) == 2
    assert "is a folder" in one_line_error(capsys)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    assert main(["sample", str(trained), "-n", "4", "--out", str(blocker / "d.png")]) == 2
    assert "cannot write" in one_line_error(capsys)

def test_evaluate_json_never_overwrites_without_force(tmp_path, capsys):
    images = tmp_path / "img.npz"
    np.savez(images, images=tiny_arrays()["x_train"][:12])
    out = tmp_path / "e.json"
    out.write_text("{}")
    assert main(["evaluate", str(images), "--json", str(out)]) == 2
    assert "already exists" in one_line_error(capsys) and out.read_text() == "{}"

def test_data_is_stored_as_an_absolute_path(tmp_path, monkeypatch):
    np.savez(tmp_path / "d.npz", **tiny_arrays())
    monkeypatch.chdir(tmp_path)
    assert main(["train", "vae", "--data", "d.npz", "--epochs", "1", "--out", "run", "--no-progress"]) == 0
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["run"]["data"]
    assert stored == str(tmp_path / "d.npz")
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["run"]["data"] == stored
