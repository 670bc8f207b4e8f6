"""The one-step flow distilled from a trained flow (preset flow-1step, ``distill_from``): the teacher's
pairs, the warm start, what the student learns, one call a digit, exact resume without the teacher,
and every bad source or change refused in one line."""

from __future__ import annotations

import shutil

import pytest
import torch

from conftest import one_line_error, start_from_flow
from mnistgen.checkpoint import load_checkpoint
from mnistgen.cli import main

SUBSET = 64


def train(preset, out, *extra):
    return main(["train", preset, "--subset", str(SUBSET), "--set", "batch_size=32", "--out", str(out),
                 "--no-progress", "--device", "cpu", "--set", "model_args.width=8", *extra])


def distill(out, source, *extra):
    return train("flow-1step", out, "--set", f"distill_from={source}", *extra)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, mnist):
    """A tiny flow run (width 8, sampled in 2 Heun steps: 3 calls a digit) to distil."""
    out = tmp_path_factory.mktemp("teacher") / "run"
    assert train("flow", out, "--epochs", "1", "--set", "model_args.steps=2") == 0
    return out


@pytest.fixture(scope="module")
def student(teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("student") / "run"
    assert distill(out, teacher, "--epochs", "1") == 0
    return out


def test_the_pairs_are_the_teachers_digits_from_the_runs_noise(teacher, student):
    from safetensors.torch import load_file

    from mnistgen.data import load_dataset
    from mnistgen.sampling import load_trained_model
    from mnistgen.training.distill import NOISE_SEEDS, pair_noise, pairs_record, teacher_digits

    digits = load_file(str(student / "teacher.safetensors"))
    assert digits["train"].dtype == torch.uint8 and digits["train"].shape == (SUBSET, 28, 28)
    assert digits["validation"].shape == (SUBSET, 28, 28)  # the subset's test split is shorter than 1,000
    flow, _ = load_trained_model(teacher)
    labels = torch.as_tensor(load_dataset(None).y_train[:SUBSET], dtype=torch.long)
    again = teacher_digits(flow, pair_noise(SUBSET, 0 + NOISE_SEEDS["train"]), labels)
    assert torch.equal(again, digits["train"])
    record = pairs_record(student)
    assert record["teacher"] == str(teacher) and record["steps"] == "2" and float(record["seconds"]) >= 0


def test_the_student_starts_as_the_teacher(teacher, tmp_path):
    from mnistgen.training.distill import DistillTrainer

    trainer, _ = start_from_flow(tmp_path / "run", "flow-1step", "distill_from", teacher, subset=SUBSET)
    assert isinstance(trainer, DistillTrainer)
    assert trainer.x_train.shape == (SUBSET, 2, 28, 28)  # noise and the teacher's digit, sliced together


def test_distillation_loss_is_what_one_step_lands_on_and_it_learns():
    from mnistgen.models.flow_matching import FlowMatching
    from mnistgen.training.distill import distillation_loss

    torch.manual_seed(0)
    model = FlowMatching(width=8, patch=2, target="data", steps=1, sampler="euler")
    noise, labels = torch.randn(16, 1, 28, 28), torch.arange(16) % 10
    digits = torch.rand(16, 1, 28, 28) * 2 - 1
    pairs = torch.cat([noise, digits], dim=1)
    landed = model.decode_latents(noise.flatten(1), labels) * 2 - 1  # sampling's one step, in [-1, 1]
    expected = torch.nn.functional.mse_loss(landed.clamp(-1, 1), digits)
    assert distillation_loss(model, pairs, labels)["loss"].item() == pytest.approx(expected.item(), rel=1e-4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = distillation_loss(model, pairs, labels)["loss"].item()
    for _ in range(30):
        opt.zero_grad()
        distillation_loss(model, pairs, labels)["loss"].backward()
        opt.step()
    assert distillation_loss(model, pairs, labels)["loss"].item() < 0.7 * first


@pytest.mark.parametrize("target", ["data", "velocity"])
def test_a_pair_on_the_path_teaches_where_the_samplers_last_step_lands(target, monkeypatch):
    """At t = 0.5 on the straight line from the noise to the teacher's digit, the loss is the distance from
    the digit to where a 2-step Euler sampler's second step lands from there."""
    from mnistgen.models.flow_matching import FlowMatching
    from mnistgen.training import distill

    torch.manual_seed(0)
    model = FlowMatching(width=8, patch=2, target=target, steps=2, sampler="euler").eval()
    torch.nn.init.normal_(model.net.head[-1].weight, std=0.1)
    noise, digits, labels = torch.randn(8, 1, 28, 28), torch.rand(8, 1, 28, 28) * 2 - 1, torch.arange(8)
    monkeypatch.setattr(distill, "distillation_times", lambda n, share, device: torch.full((n,), share))
    halfway = (noise + digits) / 2
    landed = halfway + 0.5 * model.predict(halfway, 0.5, labels)
    expected = torch.nn.functional.mse_loss(landed, digits)
    got = distill.distillation_loss(model, torch.cat([noise, digits], dim=1), labels, path_share=0.5)["loss"]
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)


def test_the_path_share_decides_how_many_pairs_start_after_t_0():
    from mnistgen.training.distill import distillation_times

    torch.manual_seed(0)
    times = distillation_times(10_000, 0.3, torch.device("cpu"))
    assert 0.27 < (times > 0).float().mean().item() < 0.33 and times.max().item() < 1
    state = torch.get_rng_state()
    assert not distillation_times(16, 0.0, torch.device("cpu")).any()
    assert torch.equal(torch.get_rng_state(), state)  # share 0 draws nothing: older runs repeat exactly


def test_pseudo_huber_is_the_distance_of_each_digit_softened_near_zero():
    from mnistgen.training.distill import HUBER_C, digit_distance

    digit = torch.zeros(2, 1, 28, 28)
    landing = digit.clone()
    landing[0, 0, 0, :4] = 0.5  # image 0: error of norm 1; image 1: none
    loss = digit_distance(landing, digit, "pseudo-huber").item()
    assert loss == pytest.approx(((1 + HUBER_C ** 2) ** 0.5 - HUBER_C) / 2, rel=1e-5)
    assert digit_distance(digit, digit, "pseudo-huber").item() == pytest.approx(0, abs=1e-8)


def test_the_trainer_trains_and_validates_on_its_settings(teacher, tmp_path):
    trainer, _ = start_from_flow(tmp_path / "run", "flow-1step", "distill_from", teacher, subset=SUBSET,
                                 overrides=["train.distill_loss=pseudo-huber", "train.distill_path_share=0.5"])
    for loss in (trainer.loss_fn, trainer.loss_of(trainer.sampling_model())):
        assert loss.keywords == {"distance": "pseudo-huber", "path_share": 0.5}


@pytest.mark.parametrize("setting, message", [
    ("train.distill_loss=l1", "distill_loss must be one of mse, pseudo-huber"),
    ("distill_path_share=1", "distill_path_share=1"),
    ("distill_path_share=-0.1", "distill_path_share=-0.1"),
])
def test_bad_distillation_settings_are_one_line(setting, message, capsys):
    capsys.readouterr()
    assert main(["train", "flow-1step", "--dry-run", "--set", setting]) == 2
    assert message in one_line_error(capsys)


@pytest.mark.parametrize("setting", ["train.distill_loss=pseudo-huber", "train.distill_path_share=0.3"])
def test_distillation_settings_without_a_teacher_are_refused(setting, capsys):
    capsys.readouterr()
    assert main(["train", "flow", "--dry-run", "--set", setting]) == 2
    assert "applies to a distilled flow" in one_line_error(capsys)


def test_the_student_samples_in_one_network_call(student):
    from mnistgen.sampling import load_trained_model, sample_images

    model, _ = load_trained_model(student)
    calls = []
    model.net.register_forward_hook(lambda *_: calls.append(1))
    images = sample_images(model, 10, seed=0)
    assert images.shape == (10, 28, 28) and len(calls) == 1


def test_the_python_api_and_evaluate_take_a_distilled_run(student):
    import mnistgen
    from mnistgen.evaluation import evaluate

    x = mnistgen.load(student).generate(4, digit=3)
    assert x.shape == (4, 1, 28, 28) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert evaluate(student, n=20)["samples"]["fid"] >= 0


@pytest.mark.parametrize("preset, setting", [("flow-1step", "distill_from"), ("meanflow", "init_from")])
def test_resume_is_exact_and_does_not_read_the_flow_again(preset, setting, teacher, tmp_path):
    """Both one-step presets: the teacher's digits (distillation) or the warm start's weights (MeanFlow) are
    in the run, so a resume needs neither the flow nor its folder."""
    source = tmp_path / "flow"
    shutil.copytree(teacher, source)
    assert train(preset, tmp_path / "whole", "--epochs", "2", "--set", f"{setting}={source}") == 0
    assert train(preset, tmp_path / "halves", "--epochs", "1", "--set", f"{setting}={source}") == 0
    shutil.rmtree(source)
    assert main(["train", "--resume", str(tmp_path / "halves"), "--epochs", "2", "--no-progress"]) == 0
    whole = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    halves = load_checkpoint(tmp_path / "halves" / "checkpoints" / "last.pt")
    assert whole["global_step"] == halves["global_step"] == 4
    for weights, resumed in ((whole["model"], halves["model"]), (whole["family"]["ema"], halves["family"]["ema"])):
        for key, value in weights.items():
            assert torch.equal(value, resumed[key]), key


def test_a_resume_without_readable_pairs_is_one_line_and_changes_nothing(student, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(student, run)
    (run / "teacher.safetensors").write_bytes(b"not a safetensors file")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    assert "the teacher's digits of this run cannot be read" in one_line_error(capsys)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_the_teacher_cannot_change_on_resume(student, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(student, run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--set", "distill_from=pretrained:flow"]) == 2
    assert "distill_from cannot change on resume" in one_line_error(capsys)


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory, mnist):
    out = tmp_path_factory.mktemp("gan") / "run"
    assert main(["train", "gan", "--subset", str(SUBSET), "--epochs", "1", "--set", "batch_size=32", "--out", str(out),
                 "--no-progress", "--device", "cpu"]) == 0
    return out


@pytest.mark.parametrize("preset, setting", [("flow-1step", "distill_from"), ("meanflow", "init_from")])
@pytest.mark.parametrize("source, message", [
    ("GAN", "is a run of model 'fast_gan' (preset gan); it must be a flow_matching run"),
    ("MISSING", "does not exist"),
    ("pretrained:nothing", "no pretrained weights named 'nothing'"),
])
def test_a_flow_that_cannot_be_used_is_one_line_and_leaves_no_run(preset, setting, source, message, gan_run, tmp_path,
                                                                   capsys):
    """The same for both one-step presets: distillation's teacher and MeanFlow's warm start."""
    source = {"GAN": str(gan_run), "MISSING": str(tmp_path / "missing")}.get(source, source)
    capsys.readouterr()
    assert train(preset, tmp_path / "run", "--epochs", "1", "--set", f"{setting}={source}") == 2
    err = one_line_error(capsys)
    assert f"{setting} {source}" in err and message in err
    assert not (tmp_path / "run").exists()


def test_a_teacher_of_another_shape_is_refused(teacher, tmp_path, capsys):
    capsys.readouterr()
    assert distill(tmp_path / "run", teacher, "--epochs", "1", "--set", "model_args.width=16") == 2
    assert "(width 8 there, 16 here); set model_args to match it" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "vae", "--dry-run", "--set", "distill_from=runs/flow"], "distill_from applies to model flow_matching"),
    (["train", "meanflow", "--dry-run", "--set", "distill_from=runs/flow"], "model 'meanflow' would ignore it"),
    (["train", "flow-1step", "--dry-run", "--set", "distill_from=3"], "distill_from must be text"),
])
def test_distill_from_where_it_cannot_apply_is_refused_not_ignored(argv, message, capsys):
    capsys.readouterr()
    assert main(argv) == 2
    assert message in one_line_error(capsys)


# ------------------------------------------------------------------- sampling in bf16
def one_step_model(bf16_sampling):
    from mnistgen.models.flow_matching import FlowMatching

    torch.manual_seed(0)
    model = FlowMatching(width=8, patch=2, target="data", steps=1, sampler="euler", bf16_sampling=bf16_sampling)
    torch.nn.init.normal_(model.net.head[-1].weight, std=0.1)  # a head at zero would draw the same grey everywhere
    return model.eval()


def test_bf16_sampling_runs_the_network_in_bf16_only_where_the_cpu_has_it(monkeypatch):
    import mnistgen.training.precision as precision

    z, labels = torch.randn(8, 784), torch.arange(8)
    plain, model = one_step_model(False), one_step_model(True)
    dtypes = []
    model.net.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    fast = model.decode_latents(z, labels)
    reference = plain.decode_latents(z, labels)
    assert dtypes == [torch.bfloat16] and fast.dtype == torch.float32
    assert (fast - reference).abs().mean() < 0.02 and not torch.equal(fast, reference)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)  # emulated bf16 is slower: float32
    assert torch.equal(model.decode_latents(z, labels), reference) and dtypes[-1] == torch.float32


def test_sampling_without_bf16_leaves_a_callers_autocast_on():
    """amp's probe times sampling under its own autocast: a model that does not ask for bf16 must not switch it off."""
    model = one_step_model(False)
    dtypes = []
    model.net.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.decode_latents(torch.randn(4, 784), torch.arange(4))
    assert dtypes == [torch.bfloat16]


def test_bf16_sampling_takes_only_a_boolean(capsys):
    capsys.readouterr()
    assert main(["train", "flow-1step", "--dry-run", "--set", "model_args.bf16_sampling=maybe"]) == 2
    assert "model_args.bf16_sampling" in one_line_error(capsys)
