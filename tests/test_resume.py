"""Resuming a run: damaged metrics lines, changed settings that are refused, and changed model defaults."""

import json
import shutil

import pytest

from conftest import one_line_error
from mnistgen.checkpoint import load_checkpoint
from mnistgen.cli import main


@pytest.fixture(scope="module")
def trained(trained, tmp_path_factory):
    """A copy of the shared trained run: a test here resumes it in place."""
    copy = tmp_path_factory.mktemp("resume") / "run"
    shutil.copytree(trained, copy)
    return copy


def test_a_torn_last_metrics_line_is_dropped_on_resume(trained, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / ".lock").unlink(missing_ok=True)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 3, "loss": 12')
    assert main(["train", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 0
    assert "dropped an incomplete last line" in capsys.readouterr().err
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]

def test_a_damaged_metrics_line_in_the_middle_is_a_one_line_error(trained, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("garbage{\n" + "\n".join(lines) + "\n")
    assert main(["train", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 2
    assert "metrics.jsonl, line 1: damaged record" in one_line_error(capsys)

def test_resume_refuses_changed_seed_subset_data_or_network(trained, tiny_npz, capsys):
    for extra, what in ((["--seed", "5"], "--seed 5 differs"), (["--subset", "32"], "--subset 32 differs"),
                        (["--data", str(tiny_npz)], "--data"),
                        (["--set", "model_args.latent_dim=8"], "cannot change on resume"),
                        (["--set", "batch_size=8"], "cannot change on resume")):
        assert main(["train", "--resume", str(trained), "--epochs", "3", *extra]) == 2, extra
        assert what in one_line_error(capsys)
    # confirming the run's own values is fine
    assert main(["train", "--resume", str(trained), "--seed", "0", "--subset", "64"]) == 0

def test_a_run_survives_a_later_change_of_model_defaults(trained, monkeypatch, tmp_path):
    import shutil

    from mnistgen.models.fast_vae import FastVAE

    state = load_checkpoint(trained / "checkpoints" / "last.pt")
    assert set(state["config"]["model_args"]) == {"latent_dim", "width", "num_classes", "temperature"}
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    monkeypatch.setattr(FastVAE.__init__, "__defaults__", (16, 64, 0, 1.0))  # a later version's defaults
    assert main(["train", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 0
    assert main(["sample", str(run), "-n", "3", "--out", str(tmp_path / "s.npz")]) == 0
