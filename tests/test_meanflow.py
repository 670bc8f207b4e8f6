"""MeanFlow (preset meanflow): the forward-mode derivatives it trains on, checked against finite
differences; its objective (the MeanFlow identity, flow matching's loss at r = t, guidance folded in,
the adaptive weight); sampling in 1, 2 and 4 steps; the warm start from a flow run and exact resume;
and the commands (train, sample, evaluate, serve, the Python API) on a tiny run."""

import json
import math

import numpy as np
import pytest
import torch

from conftest import start_from_flow
from mnistgen.cli import main
from mnistgen.models.flow_matching import FlowMatching
from mnistgen.models.meanflow import ADAPTIVE_C, MeanFlow, meanflow_target
from mnistgen.models.unet import Attention, DigitUNet, ResBlock, time_features


# ---------------------------------------------------------------- JVPs against finite differences
def central_difference(f, primals, tangents, eps):
    """(f(p + eps * v) - f(p - eps * v)) / (2 eps): the directional derivative to second order in eps."""
    plus = f(*[p + eps * v for p, v in zip(primals, tangents)])
    minus = f(*[p - eps * v for p, v in zip(primals, tangents)])
    return (plus - minus) / (2 * eps)


@torch.no_grad()  # forward mode needs no graph
def assert_jvp_matches_differences(f, primals, tangents, eps=1e-6):
    primals = tuple(p.double() for p in primals)
    tangents = tuple(v.double() for v in tangents)
    out, derivative = torch.func.jvp(f, primals, tangents)
    torch.testing.assert_close(out, f(*primals))
    expected = central_difference(f, primals, tangents, eps)
    torch.testing.assert_close(derivative, expected, rtol=1e-5, atol=1e-7 * float(expected.abs().max()))
    assert float(derivative.abs().max()) > 0  # a derivative that is really there


def randomise(module: torch.nn.Module) -> torch.nn.Module:
    """Float64, with the layers that start at zero (output head, interval embedding) given weights."""
    gen = torch.Generator().manual_seed(0)
    for p in module.parameters():
        if not p.abs().sum():
            p.data.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return module.double()


def test_time_features_derivative():
    t = torch.tensor([0.0, 0.3, 0.999])
    assert_jvp_matches_differences(lambda t: time_features(t, 32), (t,), (torch.ones(3),), eps=1e-8)
    # float32 times still give float32 features (and the same ones as before float64 was allowed)
    assert time_features(t, 32).dtype == torch.float32


def test_resblock_derivative_in_image_and_embedding():
    block = randomise(ResBlock(8, 16, emb_dim=12))
    gen = torch.Generator().manual_seed(1)
    x, emb = torch.randn(2, 8, 7, 7, generator=gen), torch.randn(2, 12, generator=gen)
    assert_jvp_matches_differences(block, (x, emb), (torch.randn(x.shape, generator=gen), torch.randn(emb.shape, generator=gen)))


def test_attention_derivative():
    attention = randomise(Attention(64))
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 64, 7, 7, generator=gen)
    assert_jvp_matches_differences(attention, (x,), (torch.randn(x.shape, generator=gen),))


@pytest.mark.parametrize("patch, attention", [(1, True), (2, False)])
def test_whole_network_derivative_in_image_time_and_interval(patch, attention):
    net = randomise(DigitUNet(width=8, patch=patch, attention=attention, interval=True))
    gen = torch.Generator().manual_seed(3)
    z, t = torch.randn(2, 1, 28, 28, generator=gen), torch.tensor([0.2, 0.6])
    h, labels = torch.tensor([0.5, 0.1]), torch.tensor([3, 10])
    f = lambda z, t, h: net(z, t, labels, h)  # noqa: E731
    no_move, move = torch.zeros_like(t), torch.ones_like(t)
    v = torch.randn(z.shape, generator=gen)
    # The time features turn at up to 1,000 radians per unit of time: small steps keep the error small.
    assert_jvp_matches_differences(f, (z, t, h), (v, no_move, no_move))
    assert_jvp_matches_differences(f, (z, t, h), (torch.zeros_like(z), move, no_move), eps=1e-7)
    assert_jvp_matches_differences(f, (z, t, h), (torch.zeros_like(z), no_move, move), eps=1e-7)
    # MeanFlow's tangent: the path moves with v, t with it, r stays (so the interval r - t shrinks).
    assert_jvp_matches_differences(f, (z, t, h), (v, move, -move), eps=1e-7)


def test_meanflow_model_derivative_through_the_data_target():
    model = MeanFlow(width=8, patch=2, target="data")
    randomise(model.net)
    gen = torch.Generator().manual_seed(4)
    z, t, r = torch.randn(2, 1, 28, 28, generator=gen), torch.tensor([0.1, 0.7]), torch.tensor([0.9, 0.7])
    f = lambda z, t, r: model.average_velocity(z, t, r, torch.tensor([1, 2]))  # noqa: E731
    assert_jvp_matches_differences(f, (z, t, r), (torch.randn(z.shape, generator=gen), torch.ones(2), torch.zeros(2)),
                                   eps=1e-7)


# ------------------------------------------------------------------------------ the objective
def test_the_target_is_the_average_velocity_of_a_known_flow():
    # dz/dt = a z moves z_t to z_r = z_t * exp(a (r - t)): the average velocity over [t, r] is
    # z (exp(a (r - t)) - 1) / (r - t). The MeanFlow identity must give it back as the target.
    a = 0.8
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(3, 1, 28, 28, generator=gen, dtype=torch.float64)
    t, r = torch.tensor([0.0, 0.2, 0.5], dtype=torch.float64), torch.tensor([1.0, 0.6, 0.5], dtype=torch.float64)

    def exact(z, t, r):
        h = (r - t)[:, None, None, None]
        safe = torch.where(h == 0, torch.ones_like(h), h)
        return torch.where(h == 0, a * z, z * torch.expm1(a * safe) / safe)

    u, target = meanflow_target(exact, z, t, r, a * z)
    torch.testing.assert_close(target, u)
    torch.testing.assert_close(z[0] + u[0], z[0] * math.exp(a))  # one step of length 1 lands on the flow
    # The wrong sign of the correction would not do: (r - t) * du/dt is not zero here.
    _, du_dt = torch.func.jvp(exact, (z, t, r), (a * z, torch.ones(3, dtype=z.dtype), torch.zeros(3, dtype=z.dtype)))
    assert float(du_dt[0].abs().max()) > 0.01


def test_at_r_equal_t_the_target_is_the_velocity_whatever_the_network():
    net = randomise(DigitUNet(width=8, patch=2, interval=True)).float()
    z, v, t = torch.randn(2, 1, 28, 28), torch.randn(2, 1, 28, 28), torch.tensor([0.3, 0.8])
    _, target = meanflow_target(lambda z, t, r: net(z, t, None, r - t), z, t, t, v)
    torch.testing.assert_close(target, v)


@pytest.mark.parametrize("target", ["velocity", "data"])
def test_loss_at_r_equal_t_is_flow_matchings_loss(target):
    flow = FlowMatching(width=8, patch=2, target=target, time_distribution="uniform").eval()
    torch.nn.init.normal_(flow.net.head[-1].weight, std=0.1)
    model = MeanFlow(width=8, patch=2, target=target, time_distribution="uniform", interval_share=0.0,
                     adaptive_power=0.0).eval()
    model.net.load_state_dict({**model.net.state_dict(), **flow.net.state_dict()})
    x, labels = torch.rand(32, 1, 28, 28) * 2 - 1, torch.arange(32) % 10
    torch.manual_seed(0)
    expected = flow.loss(x, labels)["loss"]
    torch.manual_seed(0)
    terms = model.loss(x, labels)
    torch.testing.assert_close(terms["loss"], expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(terms["mse"], expected, rtol=1e-5, atol=0)


def test_times_come_in_pairs_r_at_least_t_and_differ_in_the_asked_share():
    model = MeanFlow(width=8, interval_share=0.25)
    torch.manual_seed(0)
    t, r = model.draw_intervals(20_000, torch.device("cpu"))
    assert bool((r >= t).all()) and float(t.min()) >= 0 and float(r.max()) <= 1
    assert abs(float((r > t).float().mean()) - 0.25) < 0.02
    flow = FlowMatching(width=8, time_distribution="logit-normal")
    torch.manual_seed(0)
    flow_t = flow.draw_times(20_000, torch.device("cpu"))
    same = r == t
    torch.testing.assert_close(t[same], flow_t[same])  # r = t draws are flow matching's own times


class StubNet(torch.nn.Module):
    """Stands in for the UNet: ``velocity(z, t, labels, r)`` and a record of every call's times and labels."""

    def __init__(self, velocity):
        super().__init__()
        self.velocity, self.calls = velocity, []

    def forward(self, z, t, labels=None, interval=None):
        self.calls.append((t.clone(), (t + interval).clone(), labels))
        return self.velocity(z, t, labels, t + interval)


def with_stub(model, velocity):
    model.net = StubNet(velocity)
    return model


def test_guidance_folded_into_training_mixes_in_the_unconditional_velocity_for_digits_only():
    velocity = lambda z, t, y, r: torch.full_like(z, 1.0 if y is None else 2.0)  # noqa: E731
    model = with_stub(MeanFlow(width=8, train_guidance=0.5).eval(), velocity)
    z, v, t = torch.zeros(2, 1, 28, 28), torch.full((2, 1, 28, 28), 3.0), torch.tensor([0.2, 0.4])
    guided = model.guided_velocity(z, t, v, torch.tensor([7, 10]))  # 10: the digit was dropped
    torch.testing.assert_close(guided[0], torch.full((1, 28, 28), 3.0 + 0.5 * (3.0 - 1.0)))  # w v + (1 - w) u
    torch.testing.assert_close(guided[1], v[1])
    (t_asked, r_asked, labels), = model.net.calls
    assert labels is None and torch.equal(t_asked, t) and torch.equal(r_asked, t)  # u(z, t, t | no digit)
    assert torch.equal(MeanFlow(width=8).guided_velocity(z, t, v, torch.tensor([7, 10])), v)  # no guidance: v


def test_adaptive_weight_divides_each_samples_error_by_its_size():
    error = torch.stack([torch.full((1, 28, 28), 0.1), torch.full((1, 28, 28), 1.0)]).requires_grad_()
    e = torch.tensor([0.01, 1.0])
    for power in (0.0, 0.5, 1.0):
        terms = MeanFlow(width=8, adaptive_power=power).weighted_error(error)
        torch.testing.assert_close(terms["loss"], (e / (e + ADAPTIVE_C) ** power).mean())
        torch.testing.assert_close(terms["mse"], e.mean())
    terms["loss"].backward()  # power 1: each sample's gradient is its error's, scaled by 1 / (e + c)
    scale = 2 / 784 / 2 / (e + ADAPTIVE_C)
    torch.testing.assert_close(error.grad.flatten(1)[:, 0], scale * torch.tensor([0.1, 1.0]))


def test_training_loss_backpropagates_with_guidance_dropout_and_intervals():
    model = MeanFlow(width=8, patch=2, train_guidance=0.3, interval_share=0.5, target="data").train()
    randomise(model.net).float()
    terms = model.loss(torch.rand(16, 1, 28, 28) * 2 - 1, torch.arange(16) % 10)
    terms["loss"].backward()
    assert set(terms) == {"loss", "mse"} and math.isfinite(terms["loss"].item())
    assert model.net.interval_mlp[0].weight.grad.abs().sum() > 0  # the interval input is learned


def test_bad_arguments_are_refused():
    for kwargs, word in [({"interval_share": 1.5}, "interval_share"), ({"adaptive_power": -1.0}, "adaptive_power"),
                         ({"train_guidance": -0.5}, "train_guidance"), ({"target": "noise"}, "target"),
                         ({"time_distribution": "beta"}, "time_distribution"), ({"steps": 0}, "steps")]:
        with pytest.raises(ValueError, match=word):
            MeanFlow(width=8, **kwargs)
    with pytest.raises(ValueError, match="no interval"):
        DigitUNet(width=8)(torch.zeros(1, 1, 28, 28), torch.zeros(1), None, torch.zeros(1))


def test_the_interval_input_leaves_the_flow_network_as_it_was():
    torch.manual_seed(0)
    plain = DigitUNet(width=8, patch=2, attention=True)
    torch.manual_seed(0)
    with_interval = DigitUNet(width=8, patch=2, attention=True, interval=True)
    extra = set(with_interval.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("interval_mlp.") for k in extra)
    for key, value in plain.state_dict().items():  # the same initial weights, drawn in the same order
        assert torch.equal(value, with_interval.state_dict()[key]), key


# ---------------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("steps", [1, 2, 4])
def test_steps_walk_from_noise_to_data_in_equal_intervals(steps):
    digit = torch.rand(2, 1, 28, 28) * 2 - 1
    # A network that knows the digit: the velocity model's u from z_t at t to the digit at t = 1.
    model = with_stub(MeanFlow(width=8, steps=steps).eval(), lambda z, t, y, r: (digit - z) / (1 - t[:, None, None, None]))
    torch.testing.assert_close(model.generate(torch.randn(2, 1, 28, 28)), digit)
    grid = [k / steps for k in range(steps + 1)]
    asked = [float(time) for t, r, _ in model.net.calls for time in (t, r)]
    assert asked == pytest.approx([time for pair in zip(grid[:-1], grid[1:]) for time in pair])
    assert all(t.shape == (1,) for t, _, _ in model.net.calls)  # one time embedding for the whole batch


def test_a_data_target_lands_on_the_network_output_in_one_step():
    digit = torch.rand(3, 1, 28, 28) * 2 - 1
    model = with_stub(MeanFlow(width=8, target="data").eval(), lambda z, t, y, r: digit.clone())
    torch.testing.assert_close(model.generate(torch.randn(3, 1, 28, 28)), digit)


def test_sampling_guidance_costs_a_second_call_per_step_and_mixes_as_flows_do():
    velocity = lambda z, t, y, r: torch.full_like(z, 1.0 if y is None else 2.0)  # noqa: E731
    model = with_stub(MeanFlow(width=8, steps=2, guidance=2.0).eval(), velocity)
    out = model.generate(torch.zeros(2, 1, 28, 28), torch.full((2,), 3))
    torch.testing.assert_close(out, torch.full((2, 1, 28, 28), 2.0 + 2.0 * (2.0 - 1.0)))
    assert len(model.net.calls) == 4


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_samples_have_the_shape_and_follow_the_seed(steps):
    model = MeanFlow(width=8, patch=2, steps=steps).eval()
    randomise(model.net).float()
    first = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert first.shape == (5, 1, 28, 28) and 0 <= float(first.min()) and float(first.max()) <= 1
    torch.testing.assert_close(model.sample(5, generator=torch.Generator().manual_seed(0)), first, rtol=0, atol=0)
    assert not torch.equal(model.sample(5, generator=torch.Generator().manual_seed(1)), first)
    model.generation_batch = 2  # drawn in batches of 2: the same digits
    torch.testing.assert_close(model.sample(5, generator=torch.Generator().manual_seed(0)), first, atol=1e-5, rtol=0)


def test_steps_change_the_draw():
    model = MeanFlow(width=8, patch=2).eval()
    randomise(model.net).float()
    draws = []
    for steps in (1, 2, 4):
        model.steps = steps
        draws.append(model.sample(3, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])


def test_a_warm_started_network_predicts_the_flows_velocity_for_every_interval():
    for target in ("velocity", "data"):
        flow = FlowMatching(width=8, patch=2, target=target).eval()
        randomise(flow.net).float()
        model = MeanFlow(width=8, patch=2, target=target).eval()
        model.net.load_state_dict({**model.net.state_dict(), **flow.net.state_dict()})
        z, labels = torch.randn(3, 1, 28, 28), torch.tensor([1, 5, 10])
        for r in (0.3, 0.6, 1.0):
            u = model.average_velocity(z, torch.full((3,), 0.3), torch.full((3,), r), labels)
            torch.testing.assert_close(u, flow.predict(z, 0.3, labels))


# ------------------------------------------------------------------- warm start, runs, commands
def train(preset, out, *extra):
    return main(["train", preset, "--subset", "64", "--set", "batch_size=32", "--out", str(out), "--no-progress",
                 "--device", "cpu", "--set", "model_args.width=8", *extra])


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory, mnist):
    out = tmp_path_factory.mktemp("flow") / "run"
    assert train("flow", out, "--epochs", "1") == 0
    return out


def test_a_new_run_starts_from_the_flows_sampling_weights(flow_run, tmp_path):
    from mnistgen.training.meanflow import MeanFlowTrainer

    trainer, state = start_from_flow(tmp_path / "run", "meanflow", "init_from", flow_run)
    assert isinstance(trainer, MeanFlowTrainer)
    assert not state["model"]["net.interval_mlp.2.weight"].any()


def test_a_flow_of_another_shape_or_target_is_refused(flow_run, tmp_path, capsys):
    assert train("meanflow", tmp_path / "a", "--epochs", "1", "--set", f"init_from={flow_run}",
                 "--set", "model_args.width=16") == 2
    assert "(width 8 there, 16 here); set model_args to match it" in capsys.readouterr().err
    assert train("meanflow", tmp_path / "b", "--epochs", "1", "--set", f"init_from={flow_run}",
                 "--set", "model_args.target=velocity") == 2
    assert "target 'data' there, 'velocity' here" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("setting, message", [
    ("model_args.interval_share=1.5", "model_args.interval_share must be a finite number in [0, 1]"),
    ("model_args.adaptive_power=-1", "model_args.adaptive_power must be a finite number in [0, 2]"),
    ("model_args.train_guidance=abc", "model_args.train_guidance must be a finite number in [0, 20]"),
    ("init_from=3", "init_from must be text"),
])
def test_bad_settings_are_one_line_errors(setting, message, tmp_path, capsys):
    assert main(["train", "meanflow", "--set", setting, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def one_step_run(tmp_path_factory, mnist):
    """The preset as it ships, one epoch on 64 digits."""
    out = tmp_path_factory.mktemp("meanflow") / "run"
    assert main(["train", "meanflow", "--subset", "64", "--epochs", "1", "--out", str(out), "--no-progress",
                 "--device", "cpu"]) == 0
    return out


def test_train_then_sample_and_evaluate_in_one_and_two_steps(one_step_run, tmp_path, capsys):
    record = json.loads((one_step_run / "metrics.jsonl").read_text().splitlines()[0])
    assert {"loss", "mse", "val_loss", "val_mse"} <= set(record)
    for steps in ("1", "2"):
        out = tmp_path / f"s{steps}.npz"
        assert main(["sample", str(one_step_run), "-n", "6", "--steps", steps, "--out", str(out)]) == 0
        assert np.load(out)["images"].shape == (6, 28, 28)
        scores = tmp_path / f"e{steps}.json"
        assert main(["evaluate", str(one_step_run), "-n", "30", "--steps", steps, "--json", str(scores)]) == 0
        result = json.loads(scores.read_text())
        assert result["samples"]["n"] == 30 and result["target"].endswith(f"steps {steps})")
    capsys.readouterr()
    assert main(["sample", str(one_step_run), "--sampler", "euler", "--out", str(tmp_path / "x.png")]) == 2
    assert "--sampler does not apply to preset meanflow (MeanFlow)" in capsys.readouterr().err


def test_python_api_and_serve_sample_with_steps(one_step_run):
    import mnistgen
    from mnistgen.serve import Explorer, create_app, load_models

    model = mnistgen.load(one_step_run, device="cpu")
    for steps in (1, 2, 4):
        assert model.generate(4, digit=3, steps=steps).shape == (4, 1, 28, 28)
    assert model.network.steps == 1  # the option held for that call only
    explorer = Explorer(load_models([one_step_run]))
    try:
        client = create_app(explorer).test_client()
        answer = client.get(f"/api/sample?model={one_step_run.name}&n=4&steps=2")
        assert answer.status_code == 200 and answer.mimetype == "image/png"
    finally:
        explorer.stop_finding_directions()


def test_init_from_on_another_model_is_refused_not_ignored(capsys):
    from mnistgen.cli import main

    assert main(["train", "vae", "--dry-run", "--set", "init_from=runs/flow"]) == 2
    assert "init_from applies to MeanFlow" in capsys.readouterr().err


def test_it_trains_under_bf16_autocast(capsys):
    """Forward-mode derivatives fail under autocast's casts; the JVP runs in float32 and the step works."""
    assert main(["train", "meanflow", "--dry-run", "--device", "cpu", "--set", "amp=on",
                 "--set", "model_args.width=8"]) == 0
