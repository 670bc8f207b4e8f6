"""Known answers for the metrics, with the shipped classifier (n = 2000 to stay fast)."""

import json

import numpy as np
import pytest
import torch

from mnistgen.classifier import load_classifier, shipped_weights_dir
from mnistgen.cli import main
from mnistgen.errors import MnistgenError
from mnistgen.evaluation import evaluate
from mnistgen.metrics import MIN_IMAGES, images_to_unit_float, inception_score, precision_recall

N = 1000


@pytest.fixture(scope="module")
def files(tmp_path_factory, mnist):
    """Image files of known character: real digits, noise, only ones, shuffled pixels."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    real = mnist.x_train[rng.permutation(60000)[:N]]
    ones = mnist.x_train[mnist.y_train == 1][:N]
    shuffled = real.reshape(N, -1)[:, rng.permutation(784)].reshape(N, 28, 28)
    paths = {}
    for name, array in {"real": real, "ones": ones, "shuffled": shuffled,
                        "noise": rng.random((N, 28, 28)).astype(np.float32)}.items():
        paths[name] = folder / f"{name}.npz"
        np.savez(paths[name], images=array)
    return paths


@pytest.fixture(scope="module")
def results(files):
    return {name: evaluate(path, n=N) for name, path in files.items()}


def test_shipped_classifier_is_small_accurate_and_recorded():
    model, record = load_classifier()
    weights = shipped_weights_dir() / "classifier.safetensors"
    assert weights.stat().st_size < 5_000_000
    assert record["test_accuracy"] >= 0.993 and record["command"].startswith("mnistgen classifier train")


def test_real_digits_score_like_the_ceiling(results):
    sample, ceiling = results["real"]["samples"], results["real"]["real"]
    assert sample["acceptable"] > 0.95 and sample["coverage"] > 0.8 and sample["inception_score"] > 9
    # Two independent sets of 2000 real digits: FID differs only by sampling noise (measured below 1 at n = 1000).
    assert sample["fid"] < 1.5 and abs(sample["fid"] - ceiling["fid"]) < 1.0
    assert sample["precision"] > 0.6 and sample["recall"] > 0.6


def test_uniform_noise_is_rejected_and_far(results):
    noise, real = results["noise"]["samples"], results["real"]["samples"]
    assert noise["acceptable"] < 0.01
    assert noise["fid"] > 100 * max(real["fid"], 0.1) and noise["precision"] < 0.01


def test_a_generator_of_ones_has_no_coverage(results):
    ones = results["ones"]["samples"]
    assert ones["acceptable"] > 0.9  # each one is a good 1 ...
    assert ones["coverage"] < 0.05 and ones["inception_score"] < 1.5  # ... but there is nothing else


def test_shuffled_pixels_are_not_digits(results):
    assert results["shuffled"]["samples"]["acceptable"] < 0.05


def test_inception_score_bounds():
    certain = torch.eye(11, dtype=torch.float64)[torch.arange(1000) % 10]
    assert inception_score(certain)[0] == pytest.approx(10, rel=1e-6)
    uniform = torch.full((1000, 11), 1 / 11, dtype=torch.float64)
    assert inception_score(uniform)[0] == pytest.approx(1, rel=1e-6)


def test_precision_recall_of_disjoint_sets():
    a = torch.randn(500, 8)
    assert precision_recall(a, a + 100) == (0.0, 0.0)
    assert precision_recall(a, a) == (1.0, 1.0)


@pytest.mark.parametrize("array,expected", [
    (np.full((2, 28, 28), 255, np.uint8), 1.0),
    (np.full((2, 1, 28, 28), 0.5, np.float32), 0.5),
    (np.full((2, 28, 28), -1.0, np.float64), 0.0),
])
def test_image_ranges_are_normalised(array, expected):
    x = images_to_unit_float(array, "x")
    assert x.shape == (2, 1, 28, 28) and float(x.max()) == pytest.approx(expected)


@pytest.mark.parametrize("array,message", [
    (np.zeros((2, 32, 32), np.uint8), "shape"),
    (np.zeros((2, 28, 28), np.int32), "uint8 or float"),
    (np.full((2, 28, 28), 3.0, np.float32), "lie in"),
    (np.full((2, 28, 28), np.nan, np.float32), "NaN"),
])
def test_bad_images_are_refused(array, message):
    with pytest.raises(MnistgenError, match=message):
        images_to_unit_float(array, "x")


def test_cli_json_and_table(files, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert main(["evaluate", str(files["real"]), "-n", "500", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "real images (ceiling)" in table and "p >= 0.9" in table and "± is the standard deviation" in table
    result = json.loads(out.read_text())
    for row in ("samples", "real"):
        assert {"n", "acceptable", "coverage", "class_histogram", "inception_score", "inception_score_std",
                "fid", "kid", "kid_std", "precision", "recall"} <= set(result[row])
        assert result[row]["n"] == 500
    assert result["threshold"] == 0.9 and result["classifier"]["test_accuracy"] >= 0.993


def test_cli_bad_targets_exit_2(tmp_path, capsys):
    two = tmp_path / "two.npz"
    np.savez(two, a=np.zeros((3, 28, 28), np.uint8), b=np.zeros(3))
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not numpy")
    text = tmp_path / "x.txt"
    text.write_text("hi")
    for target, message in ((two, "name the images array"), (junk, "not a readable"),
                            (text, "run folder"), (tmp_path / "missing.npz", "does not exist")):
        assert main(["evaluate", str(target), "-n", "10"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


def test_evaluate_a_run_folder(tmp_path, mnist, capsys):
    run = tmp_path / "run"
    assert main(["train", "vae", "--subset", "256", "--epochs", "1", "--out", str(run), "--no-progress"]) == 0
    assert main(["evaluate", str(run), "-n", "300"]) == 0
    assert "preset vae, 300 samples" in capsys.readouterr().out
    for n in ("2", "3"):  # fewer than the nearest-neighbour metrics need: those are skipped, with a note
        assert main(["evaluate", str(run), "-n", n]) == 0
        assert "recall not computed: needs at least 4 images" in capsys.readouterr().out


def test_classifier_train_command(tmp_path, mnist, capsys):
    out = tmp_path / "clf"
    assert main(["classifier", "train", "--epochs", "1", "--subset", "512", "--out", str(out), "--no-progress"]) == 0
    model, record = load_classifier(out)
    assert record["command"] == "mnistgen classifier train --epochs 1 --seed 0 --subset 512"
    assert 0 <= record["test_accuracy"] <= 1


def test_spread_is_the_bootstrap_standard_error(results):
    """The spread of a share is the binomial standard error sqrt(p (1 - p) / n), within bootstrap noise."""
    row = results["real"]["samples"]
    assert set(row["spread"]) == {"acceptable", "coverage", "inception_score", "fid", "precision", "recall"}
    for key in ("acceptable", "precision"):
        p = row[key]
        assert row["spread"][key] == pytest.approx((p * (1 - p) / N) ** 0.5, rel=0.4), key
    assert 0 < row["spread"]["fid"] < row["fid"] and 0 < row["spread"]["recall"] < 0.05


@pytest.mark.parametrize("count", [2, 3, 10])
def test_evaluate_a_few_images(count, mnist, tmp_path, capsys):
    """Too few images for a metric: that metric is null with the reason, the rest is scored."""
    path = tmp_path / "few.npz"
    np.savez(path, images=mnist.x_test[:count])
    assert main(["evaluate", str(path), "--json", str(tmp_path / "s.json")]) == 0
    table = capsys.readouterr().out
    row = json.loads((tmp_path / "s.json").read_text())["samples"]
    assert row["n"] == count and row["acceptable"] == 1.0 and row["fid"] is not None
    assert row["inception_score"] is None and "Inception Score not computed: needs at least 100 images" in table
    assert (row["recall"] is None) == (count < 4) and (row["coverage"] is None) == (count < 10)
    assert set(row["skipped"]) == {key for key in MIN_IMAGES if row[key] is None}  # every gap has its reason


def test_evaluate_refuses_a_single_image(tmp_path, capsys):
    path = tmp_path / "one.npz"
    np.savez(path, images=np.zeros((1, 28, 28), np.uint8))
    assert main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "holds 1 image; evaluate needs at least 2" in err and err.count("\n") == 1
