"""The Python API (mnistgen.load / generate / show / score / classify / train / resume / presets),
a model class of one's own trained, resumed, scored and reported, and the CLI's start-up without torch."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import mnistgen
from mnistgen.cli import main
from mnistgen.errors import MnistgenError


class TinyVAE(mnistgen.VAE):
    """A user's own VAE, as the docs show one: an MLP encoder and decoder."""

    def __init__(self, latent_dim: int = 4, width: int = 16):
        super().__init__(latent_dim)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, width), nn.ReLU())
        self.to_stats = nn.Linear(width, 2 * latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, width), nn.ReLU(), nn.Linear(width, 28 * 28))

    def encode(self, x, labels=None):
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar

    def decode_logits(self, z, labels=None):
        return self.decoder(z).view(-1, 1, 28, 28)


class WithALayer(TinyVAE):
    def __init__(self, latent_dim: int = 3, activation: object = None):
        super().__init__(latent_dim)


TINY = dict(subset=64, progress=False, batch_size=32)


def test_import_mnistgen_needs_no_torch():
    code = ("import sys, mnistgen; assert mnistgen.__version__; "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["presets"], ["train", "--help"], ["sample", "--n", "3"],
                                  ["train", "vae", "--minutes", "0"]])
def test_cli_start_up_imports_neither_torch_nor_matplotlib(argv):
    code = (f"import sys\nfrom mnistgen.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules), file=sys.stderr)")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stderr
    assert err.strip().splitlines()[-1] == "[]"


def test_load_generate_show_score_classify_the_shipped_gan(tmp_path):
    model = mnistgen.load("gan", device="cpu")
    assert (model.family, model.conditional, str(model.device)) == ("gan", True, "cpu")
    x = model.generate(16, digit=7)
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x, model.generate(16, digit=7))  # the same seed, the same digits
    assert not torch.equal(x, model.generate(16, digit=7, seed=1))
    grid = mnistgen.show(x, nrow=8)
    assert grid._repr_png_().startswith(b"\x89PNG") and grid.save(tmp_path / "g.png").stat().st_size > 0
    scores = mnistgen.score(x)
    assert scores["n"] == 16 and "FID" in repr(scores) and "<table>" in scores._repr_html_()
    assert json.dumps(scores.to_dict())
    assert (mnistgen.classify(x).digits == 7).float().mean() > 0.8
    assert model.interpolate(0, 1, points=5).shape == (5, 1, 28, 28)


def test_cli_sample_draws_what_the_api_generates(tmp_path):
    out = tmp_path / "d.npz"
    assert main(["sample", "gan", "--pretrained", "--num", "8", "--digit", "2", "--seed", "3", "--out", str(out)]) == 0
    from mnistgen.images import to_uint8
    api = to_uint8(mnistgen.load("gan", device="cpu").generate(8, digit=2, seed=3))
    assert np.array_equal(np.load(out)["images"], api)


def test_score_takes_arrays_uint8_and_paths(tmp_path):
    x = (np.random.default_rng(0).random((20, 28, 28)) * 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    a, b = mnistgen.score(x), mnistgen.score(tmp_path / "x.npy")
    assert a["fid"] == b["fid"] and a["acceptable"] < 0.5  # noise is not digits


def test_vae_encode_decode_reconstruct():
    vae = mnistgen.load("vae", device="cpu")
    x = vae.generate(6, digit=4)
    z = vae.encode(x, digit=4)
    assert z.shape == (6, 16) and vae.decode(z, digit=4).shape == (6, 1, 28, 28)
    assert vae.reconstruct(x).shape == (6, 1, 28, 28)
    one = x[0, 0].numpy()  # a single 28 x 28 drawing, as classify takes it
    assert vae.reconstruct(one).shape == (1, 1, 28, 28) and mnistgen.classify(one).digits.shape == (1,)


def local_model() -> mnistgen.VAE:
    class Hidden(TinyVAE):
        pass

    return Hidden()


@pytest.mark.parametrize("call,message", [
    (lambda m: m.generate(0), "n must be a whole number in [1, 1e+06]"),
    (lambda m: m.generate(4, digit=12), "digit must be a whole number in [0, 9]"),
    (lambda m: m.generate(4, steps=3), "applies to flow models"),
    (lambda m: m.generate(4, colour=1), "unknown sampling option"),
    (lambda m: m.encode(torch.zeros(2, 1, 28, 28)), "only VAEs have an encoder"),
    (lambda m: m.interpolate(points=1), "points must be a whole number"),
    (lambda m: mnistgen.show(np.zeros((3, 32, 32))), "N x 28 x 28"),
    (lambda m: mnistgen.show(torch.zeros(3, 28, 28), nrow=0), "nrow must be"),
    (lambda m: mnistgen.show(torch.zeros(3, 28, 28)).save("x.jpg"), "name a .png file"),
    (lambda m: mnistgen.score(np.full((4, 28, 28), np.nan, np.float32)), "NaN"),
    (lambda m: mnistgen.score([1, 2, 3]), "must be a tensor, an array or an .npz/.npy path"),
    (lambda m: mnistgen.score(torch.zeros(1, 28, 28)), "at least 2"),
    (lambda m: mnistgen.load("no-such-thing"), "neither a run folder"),
    (lambda m: mnistgen.train(3), "train takes a preset name"),
    (lambda m: mnistgen.train("vae", lr="fast", out="never"), "lr must be a finite number"),
    (lambda m: mnistgen.train("vea"), "did you mean vae?"),
    (lambda m: mnistgen.train(local_model()), "at the top level of a module"),
])
def test_bad_input_is_a_one_line_error(call, message):
    model = mnistgen.load("gan", device="cpu")
    with pytest.raises(MnistgenError) as info:
        call(model)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_load_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "x.png").write_bytes(b"png")
    with pytest.raises(MnistgenError, match="run folder or a .pt checkpoint"):
        mnistgen.load(tmp_path / "x.png")


def test_presets_are_data_with_the_defaults_first():
    infos = mnistgen.presets()
    assert [p.name for p in infos[:3]] == ["vae", "gan", "flow"]
    assert all(p.kind == "recommended" and p.conditional and p.pretrained for p in infos[:3])
    assert {p.kind for p in infos} == {"recommended", "reproduction", "extra"}
    from mnistgen.config import load_preset
    for p in infos:  # the torch-free listing says what the built config says
        assert p.conditional == bool(load_preset(p.name).model_args.get("num_classes"))


def test_own_model_trains_resumes_exactly_is_scored_and_reported(tmp_path):
    straight = mnistgen.train(TinyVAE(latent_dim=3), epochs=2, out=tmp_path / "straight", **TINY)
    assert straight.config.model == f"{__name__}:TinyVAE" and straight.config.model_args["latent_dim"] == 3
    assert [r["epoch"] for r in straight.metrics] == [1, 2] and straight.summary["epochs_completed"] == 2

    halves = mnistgen.train(TinyVAE(latent_dim=3), epochs=1, out=tmp_path / "halves", **TINY)
    halves = mnistgen.resume(halves, epochs=2, progress=False)
    a, b = straight.load("cpu").network.state_dict(), halves.load("cpu").network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # resumed bit for bit

    assert mnistgen.score(halves.load("cpu"), n=50)["n"] == 50
    out = tmp_path / "report"
    assert main(["report", str(halves.folder), "-n", "50", "--out", str(out), "--device", "cpu"]) == 0
    assert "TinyVAE" in (out / "report.md").read_text()


def test_own_model_from_a_preset_yaml_on_the_cli(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "from torch import nn\nimport mnistgen\n\n\nclass Small(mnistgen.VAE):\n"
        "    def __init__(self, latent_dim: int = 2):\n        super().__init__(latent_dim)\n"
        "        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(784, 2 * latent_dim))\n"
        "        self.decoder = nn.Linear(latent_dim, 784)\n\n"
        "    def encode(self, x, labels=None):\n        return self.enc(x).chunk(2, dim=1)\n\n"
        "    def decode_logits(self, z, labels=None):\n        return self.decoder(z).view(-1, 1, 28, 28)\n")
    (tmp_path / "small.yaml").write_text("family: vae\nmodel: my_models:Small\nmodel_args: {latent_dim: 2}\n"
                                         "train: {epochs: 1, batch_size: 32}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "small.yaml", "--subset", "64", "--out", "run", "--no-progress"]) == 0
    assert main(["sample", "run", "-n", "4", "--out", "s.png"]) == 0
    (tmp_path / "bad.yaml").write_text("family: vae\nmodel: my_models:Nope\n")
    assert main(["train", "bad.yaml", "--dry-run"]) == 2
    (tmp_path / "worse.yaml").write_text("family: vae\nmodel: no_such_module:Small\n")
    assert main(["train", "worse.yaml", "--dry-run"]) == 2


def test_own_model_arguments_must_be_plain_values():
    with pytest.raises(MnistgenError, match="activation of .* must be a number, string, boolean"):
        mnistgen.train(WithALayer(activation=nn.ReLU()), epochs=1)
