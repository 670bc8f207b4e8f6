"""The CUDA path: each family trains with --device cuda --amp (some with --compile), resumes there, and
its checkpoint samples on the CPU; two data-parallel ranks train on CUDA tensors.

These run only where PyTorch sees a GPU (the device machine, `pytest tests/test_cuda.py`); elsewhere the
module skips with the reason. Nothing else in the suite depends on a GPU.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mnistgen.checkpoint import load_checkpoint
from mnistgen.cli import main
from mnistgen.training.distributed import BACKEND_ENV

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device here; these tests run on a GPU machine")


@pytest.fixture
def tiny_npz(tmp_path):
    """Digits of bars: each class a bar at its own height, on faint noise. The CUDA path is under test,
    not quality, and no MNIST source is needed. (On pure noise the VAE's encoder collapses, its
    gradients are rounding noise, and Adam blows that up: no probe for equal weights.)"""
    rng = np.random.default_rng(0)

    def bars(n):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for image, digit in zip(images, labels):
            row, col = 4 + 2 * digit + rng.integers(-1, 2), rng.integers(2, 10)
            image[row:row + 2, col:col + 14] = 255
            image[4:24, col + rng.integers(0, 14)] = 200
        return images, labels

    path = tmp_path / "bars.npz"
    (x_train, y_train), (x_test, y_test) = bars(256), bars(64)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def finite(state):
    return all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


@pytest.mark.parametrize("preset, extra", [
    ("vae", ["--compile"]), ("gan", ["--compile"]), ("flow", ["--compile"]), ("diffusion", []),
    ("dcgan-seed000", []), ("lstm-vae-seed004", []), ("gan-seed004-wasserstein", []), ("wgan-gp", []),
])
def test_trains_on_cuda_with_amp_resumes_and_samples_on_cpu(preset, extra, tmp_path, tiny_npz):
    out = tmp_path / "run"
    args = ["train", preset, "--data", str(tiny_npz), "--epochs", "1", "--set", "batch_size=32", "--no-progress",
            "--device", "cuda", "--amp", *extra, "--out", str(out)]
    assert main(args) == 0
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["complete"] and state["global_step"] == 8 and finite(state)
    assert (out / "samples" / "epoch_0001.png").is_file()

    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and state["global_step"] == 16 and finite(state)
    assert '"device": "cuda' in (out / "summary.json").read_text()
    assert main(["sample", str(out), "-n", "8", "--out", str(tmp_path / "digits.npz")]) == 0  # on the CPU
    assert np.load(tmp_path / "digits.npz")["images"].shape == (8, 28, 28)


def test_two_ranks_train_on_cuda_tensors_and_the_checkpoint_loads_in_one_process(tmp_path, tiny_npz):
    # nccl refuses two ranks on one GPU, so the ranks talk through gloo here; DDP's buckets and our own
    # collectives still hold CUDA tensors. (Several GPUs with nccl: not tested here.)
    # Not asserted: equal weights. On CPU two ranks give one process's weights to 1e-7
    # (test_distributed.py); on an H100 (TF32 off, 16 steps) this run's VAE differed by up to 1.8% per
    # tensor (to_stats.weight), with the cause not established (cuDNN's non-deterministic kernels
    # amplified by Adam, or gloo's CUDA all-reduce).
    common = ["train", "vae", "--data", str(tiny_npz), "--epochs", "2", "--set", "batch_size=32", "--no-progress",
              "--device", "cuda", "--out", str(tmp_path / "two")]
    env = {**os.environ, BACKEND_ENV: "gloo"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          "-m", "mnistgen", *common], capture_output=True, text=True, timeout=300, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    state = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")
    assert state["global_step"] == 16 and state["run"]["world_size"] == 2 and finite(state)
    assert main(["sample", str(tmp_path / "two"), "-n", "8", "--out", str(tmp_path / "digits.npz")]) == 0
