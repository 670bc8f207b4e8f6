"""A bad value, option or data file is a one-line error (exit 2); the smallest legal values work."""

import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import one_line_error, quick, tiny_arrays
from mnistgen.checkpoint import load_checkpoint
from mnistgen.cli import main


def cli(args, env_extra=None, **kw):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "mnistgen", *args], capture_output=True, text=True,
                          env=env, timeout=300, **kw)


@pytest.mark.parametrize("args,expected", [
    (["train", "vae", "--dry-run", "--set", "betas=abc"], "--set betas=abc: betas must be two numbers"),
    (["train", "vae", "--dry-run", "--set", "weight_decay=-1"], "weight_decay must be a finite number >= 0"),
    (["train", "gan", "--dry-run", "--set", "lr_g=nan"], "--set lr_g=nan: lr_g must be a finite number > 0"),
    (["train", "vae", "--dry-run", "--set", "model_args.latent_dim=-3"], "model_args.latent_dim must be a whole"),
    (["train", "vae", "--dry-run", "--set", "model_args.nonsense=3"], "takes no argument 'nonsense'"),
    (["train", "gan", "--dry-run", "--set", "ema_decay=1"], "ema_decay must be a finite number in [0, 1)"),
    (["train", "vae", "--epochs", "0"], "argument --epochs: must be a whole number >= 1, not '0'"),
    (["train", "vae", "--max-minutes", "0"], "argument --minutes/--max-minutes: must be a finite number > 0, not '0'"),
    (["train", "vae", "--max-minutes", "-1"], "argument --minutes/--max-minutes: must be a finite number > 0"),
    (["train", "vae", "--max-minutes", "inf"], "argument --minutes/--max-minutes: must be a finite number > 0"),
    (["train", "vae", "--subset", "0"], "argument --subset: must be a whole number >= 1"),
    (["train", "vae", "--seed", "-1"], "argument --seed"),
    (["report", "--minutes", "0"], "argument --minutes/--max-minutes: must be a finite number > 0"),
    (["report", "--minutes", "-1"], "argument --minutes/--max-minutes: must be a finite number > 0"),
    (["sample", "x", "--out", "a.png", "--temperature", "inf"], "argument --temperature: must be a finite number"),
    (["sample", "x", "--out", "a.png", "-n", "0"], "argument -n"),
    (["evaluate", "x", "--threshold", "1.5"], "argument --threshold"),
    (["train", "vae", "--subset", "100000", "--dry-run"], "--subset 100000 is more than the 60,000 training"),
    (["train", "vae", "--dry-run", "--set", "model_args.num_classes=5"], "num_classes must be one of 0, 10"),
    (["train", "vae", "--dry-run", "--out", "somewhere"], "--dry-run writes nothing"),
    (["train", "vae", "--dry-run", "--set", "model_args.latent_dim=100000"], "latent_dim must be a whole number in [1, 4096]"),
    (["sample", "x", "--out", "big.png", "-n", "20000"], "a .png grid holds at most 10,000 digits"),
    (["data"], "required: ACTION"),
    (["classifier"], "required: ACTION"),
])
def test_bad_values_are_one_line_errors(args, expected, capsys):
    assert main(args) == 2
    assert expected in one_line_error(capsys)

def test_bad_values_in_a_subprocess_print_no_usage_block():
    proc = cli(["train", "vae", "--epochs", "0"])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "usage" not in proc.stderr

@pytest.mark.parametrize("arrays,expected", [
    ({"x_train": np.zeros((0, 28, 28), np.uint8), "y_train": np.zeros(0, np.int64)}, "x_train holds no images"),
    ({"y_train": (np.arange(40) % 10).astype(np.float64)}, "labels must be integers 0..9"),
])
def test_bad_data_is_a_one_line_error(arrays, expected, tmp_path, capsys):
    path = tmp_path / "bad.npz"
    np.savez(path, **{**tiny_arrays(), **arrays})
    assert main(["train", "vae", "--data", str(path), "--out", str(tmp_path / "run")]) == 2
    assert expected in one_line_error(capsys)
    assert not (tmp_path / "run").exists()

@pytest.mark.parametrize("preset", ["vae", "gan", "gan-seed004"])
def test_smallest_legal_data_trains(preset, tmp_path):
    """One image per class, a subset smaller than a batch: works."""
    arrays = tiny_arrays(n_train=10, n_test=10)
    np.savez(tmp_path / "ten.npz", **arrays)
    assert main(["train", preset, "--data", str(tmp_path / "ten.npz"), "--epochs", "1",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["global_step"] == 1

def test_a_batch_too_small_for_batch_statistics_is_refused(capsys):
    assert main(["train", "gan", "--subset", "1", "--dry-run"]) == 2
    assert "needs at least 2 images per batch" in one_line_error(capsys)

def test_amp_flag_is_recorded_as_the_setting_it_forces(tmp_path, mnist):
    out = tmp_path / "run"
    assert main(quick(out, "vae", "--epochs", "1", "--amp")) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["amp"] == "on"
