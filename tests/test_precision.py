"""``amp: auto``: bfloat16 autocast on a CPU only where it executes bf16 natively and the model
measures faster under it; off on every other device."""

import json

import pytest
import torch

from mnistgen.cli import main
from mnistgen.config import load_preset
from mnistgen.models import build_model
from mnistgen.training import precision


@pytest.fixture
def small_gan():
    cfg = load_preset("gan")
    return build_model(cfg.model, **cfg.model_args)


@pytest.mark.parametrize("capabilities, native", [
    ({"avx512_bf16": True, "avx2": True}, True),
    ({"amx_bf16": True}, True),
    ({"bf16": True}, True),  # Arm's name
    ({"avx512_bf16": False, "amx_bf16": False, "avx2": True}, False),
    ({}, False),
])
def test_native_bf16_is_read_from_the_cpu_capabilities(monkeypatch, capabilities, native):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert precision.cpu_has_native_bf16() is native


@pytest.mark.parametrize("native, faster, expected", [(True, True, True), (True, False, False), (False, True, False)])
def test_auto_on_a_cpu_needs_native_bf16_that_measures_faster(monkeypatch, small_gan, tmp_path, native, faster,
                                                               expected):
    probed = []
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(precision, "bf16_is_faster", lambda model: probed.append(model) or faster)
    assert precision.remembered_auto(small_gan, torch.device("cpu"), tmp_path) is expected
    assert len(probed) == (1 if native else 0)  # no timing where the CPU cannot run bf16 natively


def test_auto_stays_off_on_cuda_and_other_devices(monkeypatch, small_gan, tmp_path):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "bf16_is_faster", lambda model: True)
    for device in ("cuda", "mps", "meta"):
        assert precision.remembered_auto(small_gan, torch.device(device), tmp_path) is False


def test_the_probe_times_both_ways_and_leaves_the_random_stream_alone(monkeypatch, small_gan):
    clock = iter(range(100))  # every perf_counter call one second later: both ways take 1 s a draw
    monkeypatch.setattr(precision.time, "perf_counter", lambda: next(clock))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    assert precision.bf16_is_faster(small_gan) is False  # a tie is not faster
    assert torch.equal(torch.rand(3), expected)


def test_best_seconds_is_the_fastest_repeat_after_a_warm_up(monkeypatch):
    times = iter([0.0, 5.0, 10.0, 12.0, 20.0, 21.0])  # repeats of 5, 2 and 1 s
    monkeypatch.setattr(precision.time, "perf_counter", lambda: next(times))
    calls = []
    assert precision.best_seconds(lambda: calls.append(1), repeats=3) == 1.0
    assert len(calls) == 4


def test_auto_is_the_default_and_a_bad_value_is_one_line(tmp_path, capsys):
    assert load_preset("flow").train.amp == "auto"
    assert main(["train", "vae", "--set", "amp=sometimes", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "amp" in err and "auto" in err and "sometimes" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("native, expected", [(True, True), (False, False)])
def test_a_run_records_what_auto_chose(tmp_path, mnist, monkeypatch, native, expected):
    monkeypatch.setattr("mnistgen.training.family.cache_dir", lambda: tmp_path)  # the faked decision stays here
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(precision, "bf16_is_faster", lambda model: True)
    out = tmp_path / "run"
    assert main(["train", "vae", "--subset", "64", "--epochs", "1", "--set", "batch_size=32", "--out", str(out),
                 "--no-progress", "--device", "cpu"]) == 0
    assert json.loads((out / "summary.json").read_text())["mixed_precision"] is expected


def test_the_decision_is_measured_once_per_model_shape_and_remembered(monkeypatch, small_gan, tmp_path):
    probed = []
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "bf16_is_faster", lambda model: probed.append(model) or len(probed) == 1)
    cpu = torch.device("cpu")
    assert precision.remembered_auto(small_gan, cpu, tmp_path) is True
    assert precision.remembered_auto(small_gan, cpu, tmp_path) is True  # remembered, though a probe now says no
    assert len(probed) == 1
    cfg = load_preset("gan")
    wider = build_model(cfg.model, **{**cfg.model_args, "g_width": 2 * cfg.model_args["g_width"]})
    assert precision.remembered_auto(wider, cpu, tmp_path) is False  # another shape is measured for itself
    assert len(probed) == 2 and len(json.loads((tmp_path / precision.DECISIONS_FILE).read_text())) == 2
    (tmp_path / precision.DECISIONS_FILE).write_text("{damaged")
    precision.remembered_auto(small_gan, cpu, tmp_path)  # measured again
    assert len(probed) == 3


def test_nothing_is_measured_or_remembered_without_native_bf16_or_off_the_cpu(monkeypatch, small_gan, tmp_path):
    monkeypatch.setattr(precision, "bf16_is_faster", lambda model: pytest.fail("no timing expected"))
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.remembered_auto(small_gan, torch.device("cpu"), tmp_path) is False
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.remembered_auto(small_gan, torch.device("meta"), tmp_path) is False
    assert not (tmp_path / precision.DECISIONS_FILE).exists()


def test_a_resumed_run_keeps_the_precision_it_started_with(tmp_path, mnist, monkeypatch):
    monkeypatch.setattr("mnistgen.training.family.cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "bf16_is_faster", lambda model: True)
    out = tmp_path / "run"
    args = ["--subset", "64", "--set", "batch_size=32", "--no-progress", "--device", "cpu"]
    assert main(["train", "vae", "--epochs", "1", "--out", str(out), *args]) == 0
    (tmp_path / "cache" / precision.DECISIONS_FILE).unlink()  # the next start here would measure anew ...
    monkeypatch.setattr(precision, "bf16_is_faster", lambda model: False)  # ... and decide otherwise
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((out / "summary.json").read_text())["mixed_precision"] is True


def test_the_probe_leaves_the_models_weights_and_batchnorm_statistics_alone(small_gan):
    small_gan.train()  # BatchNorm updates its running statistics when it draws in training mode
    before = {k: v.clone() for k, v in small_gan.state_dict().items()}
    precision.bf16_is_faster(small_gan)
    assert all(torch.equal(before[k], v) for k, v in small_gan.state_dict().items())
