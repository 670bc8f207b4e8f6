"""The flow family's learning-rate decay (``lr_decay``) over the planned epochs or the time budget,
and gradient clipping (``grad_clip``) in every family's backward step."""

import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from mnistgen.checkpoint import load_checkpoint
from mnistgen.cli import main
from mnistgen.config import TrainSettings
from mnistgen.training.distributed import World
from mnistgen.training.family import FamilyTrainer
from mnistgen.training.flow import FlowTrainer, decay_factor
from mnistgen.training.stopping import KILL_ENV


@pytest.mark.parametrize("shape, progress, share", [
    ("none", 0.7, 1.0), ("linear", 0.0, 1.0), ("linear", 0.25, 0.75), ("linear", 1.0, 0.0), ("linear", 1.5, 0.0),
    ("cosine", 0.0, 1.0), ("cosine", 0.5, 0.5), ("cosine", 1.0, 0.0), ("linear", -1.0, 1.0),
])
def test_decay_factor(shape, progress, share):
    assert decay_factor(shape, progress) == pytest.approx(share, abs=1e-12)


def test_a_time_budget_is_turned_into_steps_at_the_speed_so_far():
    run = SimpleNamespace(time_budget=100.0, elapsed=25.0, global_step=50, world=World(), estimated_steps=math.inf)
    FlowTrainer.estimate_steps(run)
    assert run.estimated_steps == pytest.approx(200)  # 50 steps in 25 s, 75 s left: 150 more
    unbounded = SimpleNamespace(time_budget=math.inf, elapsed=25.0, global_step=50, world=World(), estimated_steps=math.inf)
    FlowTrainer.estimate_steps(unbounded)
    assert unbounded.estimated_steps == math.inf


def train_args(out, *extra):
    # A narrow network (width 8): the schedule and the resume do not depend on the width, the time does.
    return ["train", "flow", "--subset", "256", "--epochs", "2", "--set", "batch_size=32", "--set", "warmup_steps=0",
            "--set", "model_args.width=8",
            "--set", "lr_decay=linear", "--set", "grad_clip=0.5", "--set", "checkpoint_every=3",
            "--out", str(out), "--no-progress", "--device", "cpu", *extra]


def test_the_learning_rate_falls_linearly_over_the_planned_steps(tmp_path, mnist):
    assert main(train_args(tmp_path / "run")) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # 8 steps an epoch, 16 planned: the last step of epoch 1 is step 7 (of 0..15), of epoch 2 step 15
    assert [r["lr"] for r in records] == pytest.approx([1e-3 * (1 - 7 / 16), 1e-3 * (1 - 15 / 16)])


def test_resume_with_decay_and_clipping_is_exact(tmp_path, mnist):
    assert main(train_args(tmp_path / "reference")) == 0
    env = dict(os.environ, **{KILL_ENV: "11"})
    killed = subprocess.run([sys.executable, "-m", "mnistgen", *train_args(tmp_path / "killed")], env=env,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9
    assert main(["train", "--resume", str(tmp_path / "killed"), "--no-progress"]) == 0
    a = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert a["global_step"] == b["global_step"] == 16
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key


def test_a_run_that_fills_its_time_budget_stores_its_step_estimate(tmp_path, mnist):
    out = tmp_path / "run"
    assert main(["train", "flow", "--subset", "128", "--minutes", "0.1", "--set", "batch_size=32",
                 "--set", "lr_decay=cosine", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["epoch"] >= 1
    estimate = state["family"]["estimated_steps"]
    assert math.isfinite(estimate) and estimate >= state["global_step"] * 0.5


class RecordingSGD(torch.optim.SGD):
    norms: list[float]

    def step(self, closure=None):
        self.norms.append(float(torch.cat([p.grad.flatten() for p in self.param_groups[0]["params"]]).norm()))
        return super().step(closure)


@pytest.mark.parametrize("clip, clipped", [(0.5, True), (0.0, False)])
def test_grad_clip_bounds_the_gradient_norm_the_optimizer_sees(clip, clipped):
    family = FamilyTrainer()
    family.t = TrainSettings(grad_clip=clip)
    family.world = World()
    family.scaler = torch.amp.GradScaler("cuda", enabled=False)
    layer = torch.nn.Linear(4, 4)
    opt = RecordingSGD(layer.parameters(), lr=0.1)
    opt.norms = []
    family.backward_step((layer(torch.full((8, 4), 10.0)) ** 2).sum(), opt)
    assert (opt.norms[0] <= 0.5 + 1e-6) is clipped


def test_bad_schedule_values_are_one_line_errors(tmp_path, capsys):
    for setting, allowed in (("lr_decay=steep", "cosine"), ("grad_clip=-1", ">= 0")):
        assert main(["train", "flow", "--set", setting, "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and setting.split("=")[0] in err and allowed in err, err
    assert not (tmp_path / "r").exists()
