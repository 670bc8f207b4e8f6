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
def test_auto_on_a_cpu_needs_native_bf16_that_measures_faster(monkeypatch, small_gan, native, faster, expected):
    probed = []
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(precision, "bf16_is_faster", lambda model: probed.append(model) or faster)
    assert precision.auto_mixed_precision(small_gan, torch.device("cpu")) is expected
    assert len(probed) == (1 if native else 0)  # no timing where the CPU cannot run bf16 natively


def test_auto_stays_off_on_cuda_and_other_devices(monkeypatch, small_gan):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "bf16_is_faster", lambda model: True)
    for device in ("cuda", "mps", "meta"):
        assert precision.auto_mixed_precision(small_gan, torch.device(device)) is False


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
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(precision, "bf16_is_faster", lambda model: True)
    out = tmp_path / "run"
    assert main(["train", "vae", "--subset", "64", "--epochs", "1", "--set", "batch_size=32", "--out", str(out),
                 "--no-progress", "--device", "cpu"]) == 0
    assert json.loads((out / "summary.json").read_text())["mixed_precision"] is expected
