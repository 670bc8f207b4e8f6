import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import make_tiny_trainer
from mnistgen.checkpoint import load_checkpoint
from mnistgen.cli import main
from mnistgen.errors import CheckpointError
from mnistgen.training.stopping import KILL_ENV

# The flow's UNet at width 8: what these tests check does not depend on its width, their time does.
NARROW = {"flow": ("--set", "model_args.width=8")}


def tiny_run(out, preset="vae", *extra):
    return ["train", preset, "--subset", "256", "--epochs", "2", "--set", "batch_size=32",
            "--set", "checkpoint_every=3", "--out", str(out), "--no-progress", "--device", "cpu",
            *NARROW.get(preset, ()), *extra]


def cli(args, env_extra=None):
    import os

    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "mnistgen", *args], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.mark.parametrize("preset", ["vae", "gan", "flow"])
def test_resume_after_sigkill_matches_uninterrupted_run(preset, tmp_path, mnist):
    assert main(tiny_run(tmp_path / "reference", preset)) == 0

    # 8 steps per epoch; checkpoints at steps 3, 6, 8 (epoch end), 9; killed after step 11.
    killed = cli(tiny_run(tmp_path / "killed", preset), {KILL_ENV: "11"})
    assert killed.returncode == -9
    state = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"], state["complete"]) == (1, 1, False)

    assert main(["train", "--resume", str(tmp_path / "killed"), "--no-progress"]) == 0

    a = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert a["global_step"] == b["global_step"] == 16 and b["complete"]
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    lines_a = [json.loads(line) for line in (tmp_path / "reference" / "metrics.jsonl").read_text().splitlines()]
    lines_b = [json.loads(line) for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines_b] == [1, 2]
    drop = {"seconds"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in lines_a] == \
           [{k: v for k, v in r.items() if k not in drop} for r in lines_b]


def test_run_folder_contents(tmp_path, mnist):
    out = tmp_path / "run"
    assert main(tiny_run(out, "gan", "--set", "epochs=1")) == 0
    for rel in ("config.yaml", "model_info.json", "metrics.jsonl", "summary.json", "checkpoints/last.pt",
                "samples/epoch_0001.png", "samples/final.png"):
        assert (out / rel).is_file(), rel
    assert list((out / "tensorboard").iterdir())
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert {"d_loss", "g_loss", "lr_g", "lr_d", "seconds"} <= set(record)
    info = json.loads((out / "model_info.json").read_text())
    assert info["parameters"] > 0 and info["model_lines_of_code"] > 5 and info["trainer_lines_of_code"] > 50


def test_existing_run_folder_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert main(["train", "vae", "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep me"


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory, mnist):
    out = tmp_path_factory.mktemp("vae") / "run"
    assert main(tiny_run(out, "vae", "--set", "epochs=1")) == 0
    return out


def test_sample_npz_and_png(trained_vae, tmp_path):
    assert main(["sample", str(trained_vae), "-n", "7", "--out", str(tmp_path / "s.npz"), "--seed", "1"]) == 0
    images = np.load(tmp_path / "s.npz")["images"]
    assert images.shape == (7, 28, 28) and images.dtype == np.uint8 and images.max() > 0
    assert main(["sample", str(trained_vae / "checkpoints" / "last.pt"), "-n", "7",
                 "--out", str(tmp_path / "again.npz"), "--seed", "1"]) == 0
    np.testing.assert_array_equal(images, np.load(tmp_path / "again.npz")["images"])
    assert main(["sample", str(trained_vae), "-n", "16", "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"


def test_sample_one_digit(trained_vae, tmp_path, capsys):
    assert main(["sample", str(trained_vae), "-n", "5", "--digit", "3", "--out", str(tmp_path / "3.npz")]) == 0
    assert "(digit 3)" in capsys.readouterr().out
    assert main(["sample", str(trained_vae), "-n", "5", "--digit", "8", "--out", str(tmp_path / "8.npz")]) == 0
    threes, eights = (np.load(tmp_path / f"{d}.npz")["images"] for d in (3, 8))
    assert threes.shape == (5, 28, 28) and not np.array_equal(threes, eights)  # same seed, other digit
    assert main(["sample", str(trained_vae), "--digit", "10", "--out", str(tmp_path / "x.png")]) == 2


def test_sample_temperature(trained_vae, tmp_path, capsys):
    def draw(*extra):
        out = tmp_path / f"s{len(list(tmp_path.iterdir()))}.npz"
        assert main(["sample", str(trained_vae), "-n", "50", "--out", str(out), *extra]) == 0
        return np.load(out)["images"].astype(float)

    # The preset samples at 1; temperature 0 is refused, and a colder prior varies less.
    np.testing.assert_array_equal(draw(), draw("--temperature", "1"))
    assert draw("--temperature", "0.1").std(0).mean() < draw("--temperature", "2").std(0).mean()
    assert main(["sample", str(trained_vae), "--temperature", "0", "--out", str(tmp_path / "x.png")]) == 2
    assert "argument --temperature: must be a finite number > 0" in capsys.readouterr().err


def test_digit_on_an_unconditional_model_is_a_clear_error(tmp_path, capsys, mnist):
    run = tmp_path / "uncond"
    assert main(tiny_run(run, "vae", "--set", "epochs=1", "--set", "model_args.num_classes=0")) == 0
    assert main(["sample", str(run), "--out", str(tmp_path / "s.png")]) == 0
    assert main(["sample", str(run), "--digit", "3", "--out", str(tmp_path / "x.png")]) == 2
    assert "not" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


def test_sample_bad_output_suffix(trained_vae, tmp_path, capsys):
    assert main(["sample", str(trained_vae), "--out", str(tmp_path / "x.jpg")]) == 2
    assert ".png or .npz" in capsys.readouterr().err


def test_truncated_checkpoint_is_a_clear_error(trained_vae, tmp_path, capsys):
    broken = tmp_path / "broken.pt"
    blob = (trained_vae / "checkpoints" / "last.pt").read_bytes()
    broken.write_bytes(blob[: len(blob) // 3])
    assert main(["sample", str(broken), "--out", str(tmp_path / "x.png")]) == 2
    assert "truncated" in capsys.readouterr().err


def test_checkpoint_of_another_preset_is_refused(trained_vae, tmp_path, capsys):
    with pytest.raises(CheckpointError, match="belongs to preset 'vae', not 'gan'"):
        load_checkpoint(trained_vae / "checkpoints" / "last.pt", expect_preset="gan")
    assert main(["train", "gan", "--resume", str(trained_vae)]) == 2
    assert "is a run of 'vae'" in capsys.readouterr().err


def test_checkpoint_never_unpickles_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"config": {}, "model": Evil(), "format": 1}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_kl_weight_anneals_linearly(tmp_path, mnist):
    trainer = make_tiny_trainer(tmp_path / "run", kl_warmup_epochs=2)
    assert trainer.kl_weight() == 0.0
    trainer.epoch, trainer.step_in_epoch = 1, len(trainer.batches) // 2
    assert math.isclose(trainer.kl_weight(), 0.75)


def test_time_snapshots_are_saved_once_each(tmp_path, mnist):
    trainer = make_tiny_trainer(tmp_path / "run", epochs=2)
    trainer.opts.snapshot_minutes = (1e-7, 1e-6, 1e3)
    trainer.run()
    saved = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("minute_*.pt"))
    assert saved == ["minute_1e-06.pt", "minute_1e-07.pt"]  # 1e3 minutes never reached
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "minute_1e-07.pt")["global_step"] == 1


def test_generator_ema_forgets_its_random_start_quickly():
    """A fixed 0.999 decay would still hold 0.999^50 = 95% of the initial weights after 50 updates."""
    from torch.optim.swa_utils import AveragedModel

    from mnistgen.training.loop import warmup_ema

    model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    ema = AveragedModel(model, multi_avg_fn=warmup_ema(0.999), use_buffers=True)
    with torch.no_grad():
        model[0].weight.fill_(0.0)
        ema.update_parameters(model)  # first update copies
        model[0].weight.fill_(1.0)
        model[1].num_batches_tracked.fill_(7)
        for _ in range(50):
            ema.update_parameters(model)
    assert float(ema.module[0].weight.detach()) > 0.99
    assert int(ema.module[1].num_batches_tracked) == 7


def test_step_hooks_run_after_each_whole_step(tmp_path, mnist):
    trainer = make_tiny_trainer(tmp_path / "run")
    seen = []
    trainer.step_hooks.append(lambda t: seen.append((t.global_step, t.step_in_epoch)))
    trainer.run()
    assert seen == [(1, 1), (2, 2), (3, 3), (4, 4)]


def test_the_kill_switch_is_a_step_hook_installed_only_when_asked(tmp_path, mnist, monkeypatch):
    from types import SimpleNamespace

    assert make_tiny_trainer(tmp_path / "plain").step_hooks == []
    monkeypatch.setenv(KILL_ENV, "3")
    (kill,) = make_tiny_trainer(tmp_path / "killed").step_hooks
    kill(SimpleNamespace(global_step=2))  # any step but the third passes
