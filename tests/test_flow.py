"""The flow family: the flow-matching process, its samplers and guidance, its trainer, and the
sampling options of `sample` and `evaluate` (exact resume after kill -9 is in test_training)."""

import json

import numpy as np
import pytest
import torch

from mnistgen.cli import main
from mnistgen.models import build_model
from mnistgen.models.flow_matching import FlowMatching
from mnistgen.sampling import great_circle, network_calls
from mnistgen.training.flow import FlowTrainer


class CountingNet(torch.nn.Module):
    """Stands in for the UNet: a known velocity field, and a record of every call."""

    def __init__(self, velocity):
        super().__init__()
        self.velocity, self.calls = velocity, []

    def forward(self, x, t, labels=None):
        self.calls.append((float(t[0]), None if labels is None else labels.clone()))
        return self.velocity(x, t, labels)


def with_net(model: FlowMatching, velocity) -> FlowMatching:
    model.net = CountingNet(velocity)
    return model


def tiny_flow(**kw) -> FlowMatching:
    return FlowMatching(width=8, patch=2, **kw).eval()


def test_constant_velocity_is_integrated_exactly_by_both_samplers():
    target = torch.full((3, 1, 28, 28), 0.5)
    for sampler in ("euler", "heun"):
        model = with_net(tiny_flow(sampler=sampler, steps=4), lambda x, t, y: torch.ones_like(x))
        torch.testing.assert_close(model.generate(target - 1), target)
        calls_per_step = 1 if sampler == "euler" else 2
        assert len(model.net.calls) == 4 * calls_per_step
        assert model.net.calls[0][0] == 0.0 and model.net.calls[-1][0] == (0.75 if sampler == "euler" else 1.0)


def test_heun_is_exact_for_a_velocity_linear_in_time_where_euler_is_not():
    # dx/dt = 2t from x(0) = 0 gives x(1) = 1; Euler with 2 steps gives 0 + 0.5 * 0 + 0.5 * 1 = 0.5.
    velocity = lambda x, t, y: 2 * t[:, None, None, None].expand_as(x)  # noqa: E731
    start = torch.zeros(2, 1, 28, 28)
    heun = with_net(tiny_flow(sampler="heun", steps=2), velocity).generate(start)
    euler = with_net(tiny_flow(sampler="euler", steps=2), velocity).generate(start)
    torch.testing.assert_close(heun, torch.ones_like(start))
    torch.testing.assert_close(euler, torch.full_like(start, 0.5))


def test_samples_are_generated_in_small_batches_with_the_same_result():
    model = tiny_flow(steps=2, guidance=1.0)
    model.net.head[-1].weight.data.normal_()  # a net that does not output zeros
    whole = model.sample(21, generator=torch.Generator().manual_seed(0))
    sizes = []
    generate = model.generate
    model.generate = lambda noise, labels=None: sizes.append(len(noise)) or generate(noise, labels)
    model.generation_batch = 8
    parts = model.sample(21, generator=torch.Generator().manual_seed(0))
    assert sizes == [8, 8, 5]
    torch.testing.assert_close(parts, whole, atol=1e-5, rtol=0)


def test_guidance_mixes_in_the_unconditional_velocity_only_when_asked():
    digit = torch.full((2,), 3)
    velocity = lambda x, t, y: torch.full_like(x, 1.0 if y is None else 2.0)  # noqa: E731
    plain = with_net(tiny_flow(sampler="euler", steps=1), velocity)
    torch.testing.assert_close(plain.generate(torch.zeros(2, 1, 28, 28), digit), torch.full((2, 1, 28, 28), 2.0))
    assert [labels is None for _, labels in plain.net.calls] == [False]
    guided = with_net(tiny_flow(sampler="euler", steps=1, guidance=2.0), velocity)
    # conditional + w * (conditional - unconditional) = 2 + 2 * (2 - 1)
    torch.testing.assert_close(guided.generate(torch.zeros(2, 1, 28, 28), digit), torch.full((2, 1, 28, 28), 4.0))
    assert sorted(labels is None for _, labels in guided.net.calls) == [False, True]
    # Nothing to guide towards without a digit: one call a step.
    unconditional = with_net(tiny_flow(sampler="euler", steps=1, guidance=2.0), velocity)
    unconditional.generate(torch.zeros(2, 1, 28, 28))
    assert len(unconditional.net.calls) == 1


def test_loss_targets_the_straight_path_velocity_and_drops_labels_only_in_training():
    model = with_net(tiny_flow(label_dropout=0.5), lambda x, t, y: torch.zeros_like(x))
    x = torch.rand(400, 1, 28, 28) * 2 - 1
    labels = torch.arange(400) % 10
    torch.manual_seed(0)
    terms = model.loss(x, labels)
    # With velocity 0 predicted, the loss is E[(x - noise)^2] = E[x^2] + 1.
    assert abs(float(terms["loss"]) - float((x ** 2).mean() + 1)) < 0.02
    assert not (model.net.calls[-1][1] == 10).any()  # eval mode: every digit kept
    model.train()
    model.loss(x, labels)
    dropped = float((model.net.calls[-1][1] == 10).float().mean())
    assert 0.4 < dropped < 0.6


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_a_data_predicting_flow_lands_on_its_prediction_and_never_asks_at_t_1(sampler):
    digit = torch.rand(2, 1, 28, 28) * 2 - 1
    model = with_net(tiny_flow(sampler=sampler, steps=3, target="data"), lambda x, t, y: digit.clone())
    torch.testing.assert_close(model.generate(torch.randn(2, 1, 28, 28)), digit)
    assert max(t for t, _ in model.net.calls) < 1.0  # the step onto t = 1 is an Euler step
    # Its loss compares the network's output with the digit itself, not with a velocity.
    model = with_net(tiny_flow(target="data"), lambda x, t, y: torch.zeros_like(x))
    assert abs(float(model.loss(digit)["loss"]) - float((digit ** 2).mean())) < 1e-6
    with pytest.raises(ValueError, match="target"):
        FlowMatching(target="noise")


@pytest.mark.parametrize(("sampler", "steps", "guidance", "calls"),
                         [("euler", 1, 0.0, 1), ("euler", 4, 0.0, 4), ("heun", 5, 0.0, 9), ("heun", 5, 0.2, 18)])
def test_network_calls_counts_each_call_of_the_drawing_network(sampler, steps, guidance, calls):
    # Heun's last step onto t = 1 is an Euler step, and guidance asks again without the label.
    model = tiny_flow(sampler=sampler, steps=steps, guidance=guidance, target="data", num_classes=10)
    assert network_calls(model) == calls
    assert network_calls(build_model("fast_gan").eval()) == 1
    assert network_calls(build_model("fast_vae").eval()) == 1


@pytest.mark.parametrize("patch", [1, 2])
def test_unet_keeps_the_image_shape_and_starts_at_zero_output(patch):
    model = FlowMatching(width=8, patch=patch)
    x = torch.randn(3, 1, 28, 28)
    out = model.net(x, torch.rand(3), torch.tensor([1, 2, 10]))  # 10: the "no digit" row
    assert out.shape == x.shape and torch.count_nonzero(out) == 0
    torch.nn.init.normal_(model.net.head[-1].weight)
    blended = model.net(x, torch.rand(3), torch.full((3, 10), 0.1))
    assert blended.shape == x.shape and torch.isfinite(blended).all()


def test_bad_flow_arguments_are_refused():
    with pytest.raises(ValueError, match="sampler"):
        FlowMatching(sampler="rk4")
    with pytest.raises(ValueError, match="steps"):
        FlowMatching(steps=0)
    with pytest.raises(ValueError, match="guidance"):
        FlowMatching(guidance=-1.0)
    with pytest.raises(ValueError, match="patch"):
        FlowMatching(patch=3)


def test_great_circle_keeps_the_noise_length_and_its_ends():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(784, generator=gen), torch.randn(784, generator=gen)
    path = great_circle(a, b)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    norms = path.norm(dim=1)
    assert float(norms.min()) > 0.95 * min(float(a.norm()), float(b.norm()))
    assert float(((a + b) / 2).norm()) < 0.8 * float(a.norm())  # what a straight line would give


def test_validation_uses_fixed_noise_and_leaves_the_training_stream_alone(tmp_path, mnist):
    from mnistgen.config import apply_overrides, load_preset
    from mnistgen.training import RunOptions, make_trainer

    cfg = apply_overrides(load_preset("flow"), ["epochs=1", "batch_size=16", "model_args.width=8"])
    trainer = make_trainer(cfg, RunOptions(out=str(tmp_path / "run"), subset=64, device="cpu", progress=False))
    assert isinstance(trainer, FlowTrainer)
    torch.manual_seed(5)
    first = trainer.end_epoch()
    after = torch.rand(1)
    torch.manual_seed(5)
    assert trainer.end_epoch() == first
    assert torch.equal(torch.rand(1), after)
    assert set(first) == {"val_loss"} and first["val_loss"] > 0


@pytest.fixture(scope="module")
def trained_flow(tmp_path_factory, mnist):
    out = tmp_path_factory.mktemp("flow") / "run"
    # Velocity target: its UNet starts at zero output, and after 4 warm-up steps a data-predicting one
    # still draws one grey image whatever the noise, steps or guidance (these tests compare draws).
    # No learning-rate warm-up: at its 4 / 200 of the rate the velocity stays so small that Euler and
    # Heun draws round to the same uint8 images.
    assert main(["train", "flow", "--subset", "128", "--epochs", "1", "--set", "batch_size=32", "--set",
                 "model_args.width=8", "--set", "model_args.target=velocity", "--set", "warmup_steps=0",
                 "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    return out


def test_sample_flow_with_steps_sampler_guidance_and_digit(trained_flow, tmp_path, capsys):
    def draw(name, *extra):
        assert main(["sample", str(trained_flow), "-n", "6", "--out", str(tmp_path / name), *extra]) == 0
        return np.load(tmp_path / name)["images"]

    default = draw("a.npz")
    assert default.shape == (6, 28, 28)
    np.testing.assert_array_equal(default, draw("b.npz"))  # same seed, same digits
    assert not np.array_equal(default, draw("c.npz", "--steps", "2"))
    assert not np.array_equal(default, draw("d.npz", "--sampler", "euler"))
    sevens = draw("e.npz", "--digit", "7")
    assert not np.array_equal(sevens, draw("f.npz", "--digit", "7", "--guidance", "3"))


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "--steps: must be a whole number in [1, 1000], not '0'"),
    (["--guidance", "nan"], "--guidance: must be a finite number in [0, 20], not 'nan'"),
    (["--sampler", "rk4"], "--sampler: invalid choice: 'rk4'"),
])
def test_bad_sampling_options_are_one_line_errors(trained_flow, tmp_path, capsys, extra, message):
    assert main(["sample", str(trained_flow), "--out", str(tmp_path / "x.png"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()


def test_flow_options_on_another_family_are_refused(tmp_path, capsys, mnist):
    run = tmp_path / "vae"
    assert main(["train", "vae", "--subset", "64", "--epochs", "1", "--set", "batch_size=32", "--out", str(run),
                 "--no-progress", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--steps", "4", "--out", str(tmp_path / "x.png")]) == 2
    assert "--steps applies to flow models (e.g. the flow preset); preset vae is a vae" in capsys.readouterr().err
    assert main(["evaluate", str(run), "-n", "20", "--guidance", "1"]) == 2
    assert "--guidance applies to flow models" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_evaluate_flow_with_fewer_steps_says_so(trained_flow, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert main(["evaluate", str(trained_flow), "-n", "30", "--steps", "1", "--sampler", "euler",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["target"].endswith("seed 0, steps 1, sampler euler)")
    assert result["samples"]["n"] == 30


def test_report_draws_a_flow_run(trained_flow, tmp_path, monkeypatch):
    from mnistgen import plots

    titles, strip = [], plots.interpolation_strip

    def spy(rows, title, path):
        titles.append(title)
        return strip(rows, title, path)

    monkeypatch.setattr(plots, "interpolation_strip", spy)
    out = tmp_path / "report"
    assert main(["report", str(trained_flow), "-n", "50", "--out", str(out)]) == 0
    assert titles == ["run: great circles between noises"]
    figures = {p.name for p in (out / "figures").iterdir()}
    for kind in ("samples", "losses", "progress", "classifier", "interpolation"):
        assert any(kind in name for name in figures), kind
    assert not any("latent" in name for name in figures)  # a flow has no latent space to scatter


def test_ddim_with_a_perfect_noise_prediction_lands_on_the_digit():
    from mnistgen.models.diffusion import DDPM, alpha_bar

    assert abs(float(alpha_bar(torch.tensor(0.0))) - 1) < 1e-6 and float(alpha_bar(torch.tensor(1.0))) < 1e-3
    digit = torch.rand(2, 1, 28, 28) * 2 - 1

    def oracle(x, tau, labels):  # the noise that x holds on top of the known digit
        a = alpha_bar(tau)[:, None, None, None]
        return (x - a.sqrt() * digit) / (1 - a).sqrt()

    for steps in (1, 3):
        model = with_net(DDPM(width=8, patch=2, steps=steps).eval(), oracle)
        torch.testing.assert_close(model.generate(torch.randn(2, 1, 28, 28)), digit, atol=1e-4, rtol=1e-4)
        assert len(model.net.calls) == steps


def test_ddpm_loss_predicts_the_noise_and_has_no_sampler_option():
    from mnistgen.errors import MnistgenError
    from mnistgen.models.diffusion import DDPM
    from mnistgen.sampling import set_sampling

    model = with_net(DDPM(width=8, patch=2).eval(), lambda x, t, y: torch.zeros_like(x))
    torch.manual_seed(0)
    assert abs(float(model.loss(torch.zeros(200, 1, 28, 28), torch.arange(200) % 10)["loss"]) - 1) < 0.02
    assert set_sampling(model, "diffusion", steps=4, guidance=1.5) == "steps 4, guidance 1.5"
    with pytest.raises(MnistgenError, match="--sampler does not apply to preset diffusion"):
        set_sampling(model, "diffusion", sampler="heun")
