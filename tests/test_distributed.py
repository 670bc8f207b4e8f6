"""Data-parallel training with torchrun (gloo on CPU): two processes give the weights one process gives
with the same global batch, only rank 0 writes, and the checkpoint loads and resumes anywhere."""

import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

from mnistgen.checkpoint import load_checkpoint
from mnistgen.cli import main

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]


def run(command, **kw):
    return subprocess.run(command, capture_output=True, text=True, timeout=300, **kw)


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, mnist):
    # The VAE's only random numbers are its latent noise; with the mean instead of a draw, a step is a
    # function of the batch alone, so the two runs can be compared weight for weight.
    script = tmp_path / "deterministic_vae.py"
    script.write_text(textwrap.dedent("""
        import sys
        from mnistgen.cli import main
        from mnistgen.models.base import VAE
        VAE.reparameterize = lambda self, mu, logvar: mu
        sys.exit(main(sys.argv[1:]))
    """))
    # Float32 (amp off): under bf16 the two runs' sums round differently (0.017 apart after 16 steps), and
    # amp: auto may choose bf16 on a CPU with bf16 instructions.
    common = ["train", "vae", "--subset", "256", "--epochs", "2", "--set", "batch_size=32", "--no-progress",
              "--device", "cpu", "--set", "amp=off"]
    one = run([sys.executable, str(script), *common, "--out", str(tmp_path / "one")])
    two = run([*TORCHRUN, str(script), *common, "--out", str(tmp_path / "two")])
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    a = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")
    assert a["global_step"] == b["global_step"] == 16
    for key, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][key], tensor, rtol=1e-4, atol=1e-5, msg=key)
    assert two.stdout.count("run folder:") == 1  # rank 0 alone prints and writes
    stored = yaml.safe_load((tmp_path / "two" / "config.yaml").read_text())
    assert stored["run"]["world_size"] == 2 and stored["train"]["batch_size"] == 32


def test_nproc_flow_run_loads_in_one_process_and_resumes_distributed(tmp_path, mnist, capsys):
    out = tmp_path / "flow"
    args = ["train", "flow", "--subset", "128", "--epochs", "1", "--set", "batch_size=32", "--set", "model_args.width=8",
            "--no-progress", "--device", "cpu", "--out", str(out)]
    first = run([sys.executable, "-m", "mnistgen", *args, "--nproc", "2"])
    assert first.returncode == 0, first.stderr[-2000:]
    assert "launching 2 processes: torchrun --standalone --nproc-per-node=2" in first.stdout
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == ["checkpoints", "config.yaml", "metrics.jsonl", "model_info.json",
                                                     "samples", "summary.json", "tensorboard"]
    assert main(["sample", str(out), "-n", "4", "--out", str(tmp_path / "s.npz")]) == 0
    again = run([sys.executable, "-m", "mnistgen", "train", "--resume", str(out), "--epochs", "2", "--nproc", "2",
                 "--no-progress"])
    assert again.returncode == 0, again.stderr[-2000:]
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and state["run"]["world_size"] == 2
    assert [r["epoch"] for r in map(yaml.safe_load, (out / "metrics.jsonl").read_text().splitlines())] == [1, 2]
    # Each rank's random numbers depend on (seed, rank, step) only: stopped and resumed is the same as straight through.
    straight = tmp_path / "straight"
    args[args.index("--epochs") + 1] = "2"
    args[args.index("--out") + 1] = str(straight)
    assert run([sys.executable, "-m", "mnistgen", *args, "--nproc", "2"]).returncode == 0
    reference = load_checkpoint(straight / "checkpoints" / "last.pt")
    for key, tensor in reference["model"].items():
        assert torch.equal(tensor, state["model"][key]), key


def test_two_processes_train_a_gan_like_one_process_with_the_same_global_batch(tmp_path, mnist):
    # A GAN's step cannot go through DDP, so its gradients are averaged by hand: the same step as one
    # process, given the same noise. Here every rank takes its share of one global draw, and BatchNorm
    # (which normalises over each rank's share, by design) is swapped for the identity.
    script = tmp_path / "comparable_gan.py"
    script.write_text(textwrap.dedent("""
        import sys
        import torch
        torch.nn.BatchNorm1d = torch.nn.BatchNorm2d = lambda n, **kw: torch.nn.Identity()
        from mnistgen.cli import main
        from mnistgen.training.adversarial import AdversarialTrainer

        def global_noise_share(self, n):
            g = torch.Generator().manual_seed(self.global_step)
            z = torch.randn(n * self.world.size, self.model.latent_dim, generator=g)
            return z.chunk(self.world.size)[self.world.rank]

        AdversarialTrainer.draw_noise = global_noise_share
        sys.exit(main(sys.argv[1:]))
    """))
    # 8 steps: a GAN's game amplifies float rounding fast (after 16 steps on 256 digits, 1% apart).
    common = ["train", "gan", "--subset", "128", "--epochs", "2", "--set", "batch_size=32", "--set", "ema_decay=0",
              "--no-progress", "--device", "cpu", "--set", "amp=off"]  # float32, as above
    one = run([sys.executable, str(script), *common, "--out", str(tmp_path / "one")])
    two = run([*TORCHRUN, str(script), *common, "--out", str(tmp_path / "two")])
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    a = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")
    assert a["global_step"] == b["global_step"] == 8 and b["run"]["world_size"] == 2
    for key, tensor in a["model"].items():  # relative distance per tensor (about 6e-7 measured)
        assert (b["model"][key] - tensor).norm() <= 1e-5 * tensor.norm(), key


def test_wgan_gp_trains_in_two_processes_and_resumes_in_one(tmp_path, mnist):
    # WGAN-GP differentiates through the critic twice (its penalty): what DDP's hooks cannot take.
    out = tmp_path / "wgan"
    args = ["train", "wgan-gp", "--subset", "128", "--epochs", "1", "--set", "batch_size=32", "--no-progress",
            "--device", "cpu", "--out", str(out)]
    first = run([sys.executable, "-m", "mnistgen", *args, "--nproc", "2"])
    assert first.returncode == 0, first.stderr[-2000:]
    assert load_checkpoint(out / "checkpoints" / "last.pt")["run"]["world_size"] == 2
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and all(torch.isfinite(t).all() for t in state["model"].values()
                                       if t.is_floating_point())


@pytest.mark.parametrize("extra, message", [
    (["vae", "--set", "batch_size=33"], "--nproc 2: batch_size 33 does not divide among 2 processes"),
    (["vae", "--dry-run"], "--dry-run runs one process; leave out --nproc"),
])
def test_what_cannot_run_distributed_is_refused_before_launching(extra, message, capsys):
    assert main(["train", *extra, "--nproc", "2"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_nproc_must_be_a_positive_whole_number(capsys):
    assert main(["train", "vae", "--nproc", "0"]) == 2
    assert "--nproc: must be a whole number in [1, 1024], not '0'" in capsys.readouterr().err
