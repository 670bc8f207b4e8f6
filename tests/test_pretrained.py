"""Pretrained weights: export, load, sample, evaluate and serve them; and the shipped ones still
score what their records say."""

import json
import math

import pytest
import torch

from mnistgen.cli import main
from mnistgen.evaluation import evaluate
from mnistgen.pretrained import FOLDER_ENV, export_run, load_pretrained, pretrained_dir, pretrained_names
from mnistgen.sampling import load_trained_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory, mnist):
    root = tmp_path_factory.mktemp("pretrained")
    run = root / "run"
    assert main(["train", "gan", "--subset", "128", "--epochs", "1", "--set", "batch_size=32", "--out", str(run),
                 "--no-progress", "--device", "cpu"]) == 0
    export_run(run, "gan", root / "weights", {"name": "gan", "scores": {"acceptable": 0.0}})
    return run, root / "weights"


@pytest.fixture
def shipped_here(exported, monkeypatch):
    monkeypatch.setenv(FOLDER_ENV, str(exported[1]))
    return exported


def test_export_is_float16_safetensors_that_sample_like_the_run(shipped_here):
    run, folder = shipped_here
    assert pretrained_names() == ["gan"]
    assert (folder / "gan.safetensors").read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    record = json.loads((folder / "gan.json").read_text())
    assert record["storage"] == "float16" and record["config"]["preset"] == "gan"
    model, cfg = load_pretrained("gan")
    original, _ = load_trained_model(run)
    assert cfg.preset == "gan" and all(p.dtype == torch.float32 for p in model.parameters())
    a = model.sample(8, generator=torch.Generator().manual_seed(0))
    b = original.sample(8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, atol=0.02, rtol=0)  # float16 weights: close, not equal


def test_sample_evaluate_and_serve_take_pretrained_names(shipped_here, tmp_path, capsys):
    out = tmp_path / "digits.png"
    assert main(["sample", "gan", "--pretrained", "-n", "16", "--digit", "4", "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    result = evaluate("gan", n=40, pretrained=True)
    assert result["target"].startswith("pretrained gan (preset gan, 40 samples")
    from mnistgen.serve import load_models

    assert list(load_models([], pretrained=True)) == ["pretrained-gan"]


def test_unknown_or_damaged_pretrained_weights_are_one_line_errors(shipped_here, tmp_path, capsys, monkeypatch):
    assert main(["sample", "nope", "--pretrained", "--out", str(tmp_path / "x.png")]) == 2
    assert "no pretrained weights named 'nope'; pretrained: gan" in capsys.readouterr().err
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "gan.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    (damaged / "gan.json").write_text((shipped_here[1] / "gan.json").read_text())
    monkeypatch.setenv(FOLDER_ENV, str(damaged))
    assert main(["evaluate", "gan", "--pretrained", "-n", "20"]) == 2
    err = capsys.readouterr().err
    assert "gan.safetensors is damaged or does not fit 'fast_gan'" in err and err.count("\n") == 1
    monkeypatch.setenv(FOLDER_ENV, str(tmp_path / "empty"))
    assert main(["serve", "--pretrained"]) == 2
    assert "no pretrained weights are shipped in this installation" in capsys.readouterr().err


SHIPPED = pretrained_names() if not __import__("os").environ.get(FOLDER_ENV) else []


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_still_score_what_their_record_says(name, mnist):
    record = json.loads((pretrained_dir() / f"{name}.json").read_text())
    assert (pretrained_dir() / f"{name}.safetensors").stat().st_size < 5e6
    n = 1000
    scores = evaluate(name, n=n, seed=1, pretrained=True)["samples"]
    expected = record["scores"]["acceptable"]
    # Binomial noise of a share over n images, and the record's own spread: 4 standard deviations.
    noise = math.sqrt(expected * (1 - expected) / n + record["scores"]["spread"]["acceptable"] ** 2)
    assert abs(scores["acceptable"] - expected) <= 4 * noise + 0.005, (scores["acceptable"], expected)


@pytest.mark.parametrize("record, problem", [
    ('{"name": "gan", "config": {"preset": "gan", "fam', "cannot be read (JSONDecodeError"),  # cut short
    ('{"name": "gan", "scores": {}}', "holds no config of the run that made the weights"),
    ('["gan"]', "holds no config of the run that made the weights"),
    ('{"config": {"family": "gan", "model": "no_such_model"}}', "its config is not valid"),
    ('{"config": {"family": "gan", "model": "fast_gan", "model_args": [1, 2]}}', "its config is not valid"),
])
def test_a_damaged_pretrained_record_is_one_line_naming_the_file_and_the_remedy(record, problem, shipped_here,
                                                                                 tmp_path, capsys, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "gan.safetensors").write_bytes((shipped_here[1] / "gan.safetensors").read_bytes())
    (folder / "gan.json").write_text(record)
    monkeypatch.setenv(FOLDER_ENV, str(folder))
    for command in (["sample", "gan", "--pretrained", "-n", "4", "--out", str(tmp_path / "x.png")],
                    ["evaluate", "gan", "--pretrained", "-n", "20"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"mnistgen: error: {folder / 'gan.json'}") and problem in err, err
        assert "reinstall mnistgen, or for weights of your own" in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()
