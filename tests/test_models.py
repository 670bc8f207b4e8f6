import pytest
import torch

from mnistgen.cli import main
from mnistgen.config import load_preset, preset_names
from mnistgen.modelinfo import count_keras_style, count_parameters, lines_of_code
from mnistgen.models import MODELS, build_model

SEED_PRESETS = {"conv-vae-seed000", "mlp-vae-2d-seed002", "lstm-vae-seed003", "lstm-vae-seed004",
                "dcgan-seed000", "gan-seed003-default", "gan-seed003-complex",
                "gan-seed003-default-wasserstein", "gan-seed003-complex-wasserstein", "gan-seed004", "wgan-gp"}


def test_every_seed_system_has_a_preset():
    assert SEED_PRESETS | {"vae", "gan"} <= set(preset_names())


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_trains_one_step(preset, mnist, capsys):
    assert main(["train", preset, "--dry-run", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "1 step(s)" in out and "checkpoints/last.pt" in out


def build(preset):
    cfg = load_preset(preset)
    return build_model(cfg.model, **cfg.model_args)


def test_seed002_parameter_count_matches_its_layers():
    assert count_parameters(build("mlp-vae-2d-seed002")) == 807_700


def test_seed003_generators_match_the_seed_counts():
    # The seed's figures are Keras counts (batch-norm moving statistics included).
    assert count_keras_style(build("gan-seed003-default").generator) == 98_832
    assert count_keras_style(build("gan-seed003-complex").generator) == 225_312


def test_seed004_gan_matches_its_summary():
    gan = build("gan-seed004")
    assert count_parameters(gan.generator) == 1_164_289
    assert count_parameters(gan.discriminator) == 40_705


def test_seed000_dcgan_layers_as_written():
    # The seed's prose says 6.6M; its layer list gives these (see the model's docstring).
    gan = build("dcgan-seed000")
    assert count_parameters(gan.generator) == 6_862_272
    assert count_parameters(gan.discriminator) == 80_769


def test_wgan_gp_critic_has_no_batch_norm():
    critic = build("wgan-gp").discriminator
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in critic.modules())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shapes_and_ranges(name):
    model = build_model(name, **({"width": 1} if name == "gan_seed003" else {})).eval()
    images = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert images.shape == (5, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1


def test_vae_loss_terms():
    model = build("vae")
    x = torch.rand(8, 1, 28, 28)
    terms = model.loss(x, beta=0.5, labels=torch.arange(8))
    assert set(terms) == {"loss", "recon", "kl"}
    assert torch.isclose(terms["loss"], terms["recon"] + 0.5 * terms["kl"])
    assert terms["kl"] >= 0


def test_lines_of_code_skips_comments_docstrings_and_blanks():
    source = '"""doc\nstring"""\n\n# comment\nx = 1\n\ndef f():\n    """doc"""\n    return x\n'
    assert lines_of_code(source) == 3


@pytest.mark.parametrize("preset", ["vae", "gan"])
def test_default_presets_are_class_conditional(preset):
    model = build(preset).eval()
    assert model.num_classes == 10
    z = torch.randn(4, model.latent_dim)
    threes, sevens = model.decode_latents(z, torch.full((4,), 3)), model.decode_latents(z, torch.full((4,), 7))
    assert threes.shape == (4, 1, 28, 28) and not torch.allclose(threes, sevens)
    # A one-hot float class vector is the same request as the int label; blends are allowed.
    torch.testing.assert_close(model.decode_latents(z, torch.eye(10)[[3] * 4]), threes)
    assert model.decode_latents(z, torch.full((4, 10), 0.1)).shape == (4, 1, 28, 28)
    with pytest.raises(ValueError, match="class-conditional"):
        model.decode_latents(z)


def test_conditional_sampling_draws_uniform_digits_from_the_seed():
    model = build("gan").eval()
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(8, model.latent_dim, generator=gen)
    digits = torch.randint(10, (8,), generator=gen)
    expected = model.decode_latents(z, digits)
    torch.testing.assert_close(model.sample(8, generator=torch.Generator().manual_seed(0)), expected)
    given = model.sample(8, generator=torch.Generator().manual_seed(0), labels=torch.full((8,), 4))
    torch.testing.assert_close(given, model.decode_latents(z, torch.full((8,), 4)))
