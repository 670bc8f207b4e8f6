"""`mnistgen sweep`: an Optuna study of tiny trials, continued, shared by two processes, pruned; bad specs."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from mnistgen.checkpoint import load_checkpoint
from mnistgen.cli import main
from mnistgen.config import load_preset
from mnistgen.errors import TrainingDiverged, TrainingStopped
from mnistgen.sweep import Sweep, SweepOptions, TrialFailed, parse_param, take_up_stopped_trials

TINY = ["--subset", "128", "--minutes", "0.02", "-n", "60", "--prune-n", "30", "--final-n", "100"]


def study_of(out, name="mnistgen-vae"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


def test_a_two_trial_sweep_writes_its_folder_and_a_best_preset_then_continues(tmp_path, mnist, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "vae", "--param", "lr=log:1e-4:1e-2", "--param", "model_args.latent_dim=int:4:16", *TINY,
            "--out", str(out)]
    assert main([*args, "--trials", "2"]) == 0
    assert "study mnistgen-vae: 2 complete of 2 trials; best: trial" in capsys.readouterr().out
    table = (out / "trials.md").read_text()
    assert "| trial | state | lr | model_args.latent_dim | fid |" in table and table.count("| complete |") == 2
    assert (out / "history.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["best_rescored"]["n"] == 100
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["model"] == "fast_vae" and f"model_args.latent_dim={best['model_args']['latent_dim']}" in \
        summary["best_overrides"]
    assert main(["train", str(out / "best.yaml"), "--dry-run"]) == 0  # the best config trains as a preset

    # Run again with a larger target: the study goes on from its 2 trials, none is trained twice.
    assert main([*args, "--trials", "3"]) == 0
    trials = study_of(out).trials
    assert [t.number for t in trials] == [0, 1, 2]
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0000", "0001", "0002"]


def test_two_sweep_processes_share_one_study(tmp_path, mnist):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    command = [sys.executable, "-m", "mnistgen", "sweep", "vae", "--param", "lr=log:1e-4:1e-2", "--trials", "4",
               "--storage", storage, *TINY]
    workers = [subprocess.Popen([*command, "--out", str(tmp_path / f"worker{k}")], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    results = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-1500:] for _, err in results]
    study = optuna.load_study(study_name="mnistgen-vae", storage=storage)
    # Finished: complete, or stopped early by the pruner (both count towards --trials).
    finished = [t for t in study.trials
                if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(finished) >= 4
    folders = {t.user_attrs["run"].split("/worker")[1][0] for t in finished}
    assert folders == {"1", "2"}  # trials of both workers are in the one study


def test_a_trial_that_trails_is_pruned_after_an_epoch(tmp_path, mnist):
    cfg = load_preset("vae")
    sweep = Sweep(cfg, [parse_param("lr=log:1e-4:1e-2", cfg)], tmp_path,
                  SweepOptions(metric="fid", minutes=0.05, n=50, prune_n=30, seed=0, subset=128, device="cpu"))

    class Trial:
        number, params, reported, user_attrs = 7, {}, [], {}

        def suggest_float(self, name, low, high, log=False):
            return 1e-3

        def set_user_attr(self, key, value):
            self.user_attrs[key] = value

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return True

    trial = Trial()
    with pytest.raises(optuna.TrialPruned, match="fid .* after epoch 1"):
        sweep.objective(trial)
    assert [step for step, _ in trial.reported] == [1]
    assert (tmp_path / "trials" / "0007" / "checkpoints" / "last.pt").is_file()  # what it trained is kept


@pytest.mark.parametrize("spec, message", [
    ("lr", "--param 'lr': must look like NAME=log:LOW:HIGH"),
    ("lr=exp:1:2", "--param 'lr=exp:1:2': must look like"),
    ("lr=log:0:1", "needs LOW < HIGH and LOW > 0 (log scale)"),
    ("lr=float:1e-2:1e-4", "needs LOW < HIGH"),
    ("lr=float:a:b", "float needs two numbers, LOW:HIGH"),
    ("model_args.latent_dim=int:1.5:8", "int needs two whole numbers"),
    ("model_args.latent_dim=int:0:8", "model_args.latent_dim must be a whole number in [1, 4096]"),
    ("colour=float:0:1", "unknown setting 'colour'"),
    ("model_args.depth=int:1:3", "model 'fast_vae' takes no argument 'depth'"),
    ("optimizer=cat:adam", "cat needs at least two choices"),
    ("optimizer=cat:adam,sgd", "optimizer must be one of adam, adamw, rmsprop"),
])
def test_bad_param_specs_are_one_line_errors(spec, message, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "vae", "--trials", "2", "--param", spec, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_other_bad_sweep_options(tmp_path, capsys):
    assert main(["sweep", "vae", "--trials", "0", "--param", "lr=log:1e-4:1e-2"]) == 2
    assert "--trials: must be a whole number in [1, 100000], not '0'" in capsys.readouterr().err
    assert main(["sweep", "vae", "--trials", "2", "--param", "lr=log:1e-4:1e-2", "--param", "lr=float:0.1:0.2",
                 "--out", str(tmp_path / "s")]) == 2
    assert "--param: lr is given twice" in capsys.readouterr().err
    assert main(["sweep", "vae", "--trials", "2"]) == 2
    assert "the following arguments are required: --param" in capsys.readouterr().err
    assert main(["sweep", "vae", "--trials", "2", "--param", "lr=log:1e-4:1e-2", "--storage", "nosuchdb://x",
                 "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mnistgen: error: --storage nosuchdb://x: ") and err.count("\n") == 1


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mnistgen: error: "), err
    return err


SEARCH = ["sweep", "vae", "--trials", "1", "--param", "lr=log:1e-4:1e-2"]


@pytest.mark.parametrize("url, message", [
    # SQLAlchemy 2.1 reads postgresql:// as psycopg (3), older versions as psycopg2
    ("postgresql://user@host/db", "its database driver psycopg"),
    ("postgresql+psycopg2://user@host/db", "its database driver psycopg2 is not installed; install it (pip install "
                                           "psycopg2-binary) or use another URL"),
    ("mysql://user@host/db", "its database driver MySQLdb is not installed; install it (pip install mysqlclient)"),
    ("not a url", "Could not parse SQLAlchemy URL"),
    ("sqlite:////no/such/folder/study.db", "unable to open database file"),
])
def test_a_storage_that_cannot_be_opened_is_one_line_and_makes_no_folder(url, message, tmp_path, capsys, monkeypatch):
    drivers = {"postgresql": ("psycopg", "psycopg2"), "postgresql+psycopg2": ("psycopg2",), "mysql": ("MySQLdb",)}
    if any(importlib.util.find_spec(d) for d in drivers.get(url.partition(":")[0], ())):
        pytest.skip(f"the driver of {url} is installed here")
    monkeypatch.setattr("mnistgen.sweep.time.sleep", lambda seconds: None)  # the retries of a busy database
    out = tmp_path / "sweep"
    assert main([*SEARCH, "--storage", url, "--out", str(out)]) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"mnistgen: error: --storage {url}: ") and message in err
    assert not out.exists()


def test_sweep_out_must_be_a_folder_it_can_write(tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    assert main([*SEARCH, "--out", str(taken)]) == 2
    assert f"--out {taken} is a file; it must name a sweep folder" in one_line_error(capsys)
    assert main([*SEARCH, "--out", str(taken / "sweep")]) == 2
    assert f"--out {taken / 'sweep'}: cannot create it (Not a directory)" in one_line_error(capsys)
    assert taken.read_text() == "mine"
    if os.geteuid() == 0:
        return  # root writes into read-only folders
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert main([*SEARCH, "--out", str(locked / "sweep")]) == 2
    assert "cannot create it (Permission denied)" in one_line_error(capsys)


def wait_for(path, process, seconds=120):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_sweep_after_saving_its_trial_and_the_same_command_continues_it(signum, tmp_path, mnist):
    # Trials that stop after 2 or 3 epochs (the minutes are ample): how far a trial got does not
    # depend on how busy the machine is.
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "mnistgen", "sweep", "mlp-vae-2d-seed002", "--trials", "1", "--param",
               "epochs=int:2:3", "--subset", "1024", "--minutes", "5", "-n", "60", "--prune-n", "30",
               "--final-n", "100", "--out", str(out)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = out / "trials" / "0000"
    wait_for(run / "metrics.jsonl", first)  # the trial has trained its first epoch
    first.send_signal(signum)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 128 + signum
    assert err == (f"mnistgen: sweep {out} stopped by {signum.name} in trial 0; run the same command to continue it "
                   f"(the trial's training goes on from {run})\n")
    [stopped] = study_of(out, "mnistgen-mlp-vae-2d-seed002").trials
    assert stopped.state == optuna.trial.TrialState.FAIL and stopped.user_attrs["stopped_by"] == signum.name
    at_stop = load_checkpoint(run / "checkpoints" / "last.pt")
    assert 0 < at_stop["global_step"] < stopped.params["epochs"] * 8
    if signum == signal.SIGINT:
        return  # the same from here on

    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    first_trial, taken_up = study_of(out, "mnistgen-mlp-vae-2d-seed002").trials
    assert taken_up.state == optuna.trial.TrialState.COMPLETE and taken_up.params == first_trial.params
    assert taken_up.user_attrs["continues_trial"] == 0 and taken_up.user_attrs["run"] == str(run)
    assert [p.name for p in (out / "trials").iterdir()] == ["0000"]  # its training went on in its folder
    resumed = load_checkpoint(run / "checkpoints" / "last.pt")
    epochs = taken_up.params["epochs"]
    assert resumed["epoch"] == epochs and resumed["global_step"] == epochs * 8  # the trial's epochs in all, not more
    table = (out / "trials.md").read_text()
    assert "| 0 | stopped by SIGTERM |" in table and "| 1 | complete |" in table


class FakeTrial:
    number, params = 3, {}

    def __init__(self):
        self.user_attrs = {}

    def suggest_float(self, name, low, high, log=False):
        return 1e-3

    def set_user_attr(self, key, value):
        self.user_attrs[key] = value


@pytest.mark.parametrize("raised, expected", [
    (TrainingStopped("training failed (RuntimeError: boom); saved", None), TrialFailed),
    (TrainingDiverged("loss became nan at epoch 1"), TrialFailed),
    (TrainingStopped("interrupted by SIGTERM; saved", signal.SIGTERM), TrainingStopped),
])
def test_a_failed_trial_fails_alone_and_a_stopped_one_is_marked_and_stops_the_sweep(raised, expected, tmp_path,
                                                                                      monkeypatch):
    def start_run(cfg, opts, on_epoch=None):
        raise raised

    monkeypatch.setattr("mnistgen.training.start_run", start_run)
    cfg = load_preset("vae")
    sweep = Sweep(cfg, [parse_param("lr=log:1e-4:1e-2", cfg)], tmp_path,
                  SweepOptions(metric="fid", minutes=0.05, n=50, prune_n=30, seed=0, subset=128, device="cpu"))
    trial = FakeTrial()
    with pytest.raises(expected):
        sweep.objective(trial)
    stopped = expected is TrainingStopped
    assert (trial.user_attrs.get("stopped_by") == "SIGTERM") == stopped
    assert sweep.stopped == ({3: str(tmp_path / "trials" / "0003")} if stopped else {})


def test_a_stopped_trial_is_queued_again_once_with_its_parameters_and_folder():
    study = optuna.create_study()
    distributions = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    for number, attrs in enumerate([{"run": "s/trials/0000", "stopped_by": "SIGTERM"}, {"run": "s/trials/0001"}]):
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs=attrs,
                                                  params={"lr": 1e-3 * (number + 1)}, distributions=distributions))
    take_up_stopped_trials(study)
    take_up_stopped_trials(study)  # a second look finds it taken up already
    waiting = [t for t in study.trials if t.state == optuna.trial.TrialState.WAITING]
    assert len(waiting) == 1  # the failed trial 1 stopped by no signal is not taken up
    assert waiting[0].user_attrs == {"continues_trial": 0, "run": "s/trials/0000"}
    assert waiting[0].system_attrs["fixed_params"] == {"lr": 1e-3}
