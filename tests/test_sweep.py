"""`mnistgen sweep`: an Optuna study of tiny trials, continued, shared by two processes, pruned; bad specs."""

import json
import subprocess
import sys

import optuna
import pytest
import yaml

from mnistgen.cli import main
from mnistgen.config import load_preset
from mnistgen.sweep import Sweep, parse_param

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
    sweep = Sweep(cfg, [parse_param("lr=log:1e-4:1e-2", cfg)], tmp_path, "fid", minutes=0.05, n=50, prune_n=30,
                  seed=0, subset=128, data=None, device="cpu")

    class Trial:
        number, params, reported = 7, {}, []

        def suggest_float(self, name, low, high, log=False):
            return 1e-3

        def set_user_attr(self, key, value):
            pass

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
