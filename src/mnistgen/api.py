"""The Python API: load a model, generate digits, show and score them, train and resume runs.

Everything here is re-exported from ``mnistgen`` itself::

    import mnistgen
    model = mnistgen.load("flow")          # shipped weights: "vae", "gan", "flow", "flow-1step"
    x = model.generate(16, digit=7)        # float tensor (16, 1, 28, 28) in [0, 1]
    mnistgen.show(x)                       # a grid, inline in Jupyter; .save("sevens.png")
    mnistgen.score(x)                      # FID, precision, recall, acceptable... as a table

The command line is a thin layer over these functions, so both give the same digits for the same
seed and raise the same one-line errors (:class:`mnistgen.errors.MnistgenError`).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Config, Rule, apply_settings, load_preset
from .errors import MnistgenError
from .models import VAE, model_name
from .models.base import DigitModel

MOST_SAMPLES = 1_000_000  # keeps a request from asking for more memory than a laptop has
DIGIT = Rule(int, low=0, high=9)
COUNT = Rule(int, low=1, high=MOST_SAMPLES)
SEED = Rule(int, low=0, high=2**32 - 1)
RECOMMENDED = ("vae", "gan", "flow")  # our defaults; the other presets reproduce the seed reports


def _device(device: str | torch.device) -> torch.device:
    from .training import resolve_device

    return torch.device(device) if isinstance(device, torch.device) else resolve_device(device)


# --------------------------------------------------------------------------- loading and sampling


class Model:
    """A trained model ready to draw digits: what :func:`load` and :meth:`Run.load` return.

    ``network`` is the torch module (a :class:`mnistgen.VAE`, :class:`mnistgen.GAN` or
    :class:`mnistgen.FlowModel`), ``config`` the resolved :class:`mnistgen.config.Config` it was
    trained with, ``family`` "vae", "gan" or "flow", ``conditional`` whether it takes a digit.

    Example::

        model = mnistgen.load("gan")
        sevens = model.generate(8, digit=7, seed=1)
    """

    def __init__(self, network: DigitModel, config: Config, name: str, device: torch.device):
        self.network = network
        self.config = config
        self.name = name
        self.device = device

    @property
    def family(self) -> str:
        return self.network.family

    @property
    def conditional(self) -> bool:
        return bool(self.network.num_classes)

    def __repr__(self) -> str:
        kind = "class-conditional" if self.conditional else "unconditional"
        return f"<mnistgen.Model {self.name}: {kind} {self.family} ({self.config.preset}) on {self.device}>"

    def _check_digit(self, digit: int | None) -> int | None:
        if digit is None:
            return None
        if not self.conditional:
            raise MnistgenError(f"digit: {self.name} is not class-conditional; leave digit out")
        return DIGIT.check("digit", digit)

    @contextlib.contextmanager
    def _sampling(self, options: dict[str, Any]) -> Iterator[None]:
        """Apply sampling options (temperature; flows: steps, sampler, guidance) for one call."""
        from .sampling import set_sampling

        before = {name: getattr(self.network, name) for name in options if hasattr(self.network, name)}
        try:
            set_sampling(self.network, self.config.preset, **options)
            yield
        finally:
            for name, value in before.items():
                setattr(self.network, name, value)

    def generate(self, n: int = 16, digit: int | None = None, seed: int = 0, **sampling: Any) -> torch.Tensor:
        """``n`` digits as a float tensor (n, 1, 28, 28) in [0, 1] on the model's device; only
        ``digit`` (0-9) if given, for class-conditional models. The same seed gives the same digits
        on every device and from the CLI. ``sampling``: ``temperature`` (any model; below 1: sharper,
        less varied), and for flows ``steps``, ``sampler`` ("euler", "heun") and ``guidance``.

        Example::

            x = mnistgen.load("flow").generate(10, digit=3, steps=8)
        """
        from .sampling import draw

        n = COUNT.check("n", n)
        digit = self._check_digit(digit)
        seed = SEED.check("seed", seed)
        with self._sampling(sampling):
            return draw(self.network, n, seed, digit)

    def interpolate(self, a: int = 0, b: int = 1, points: int = 10, digit: int | None = None) -> torch.Tensor:
        """``points`` digits (points, 1, 28, 28) walking from the first digit that seed ``a`` draws to
        the first that seed ``b`` draws; a conditional model blends the two digits on the way (or
        keeps ``digit`` when given).

        Example::

            mnistgen.show(mnistgen.load("vae").interpolate(a=0, b=5, points=12), nrow=12)
        """
        from .sampling import interpolation

        points = Rule(int, low=2, high=1000).check("points", points)
        return interpolation(self.network, SEED.check("a", a), SEED.check("b", b), points, self._check_digit(digit))

    # ----------------------------------------------------------------- VAEs only

    def _vae(self, what: str) -> VAE:
        if not isinstance(self.network, VAE):
            raise MnistgenError(f"{what}: {self.name} is a {self.family}; only VAEs have an encoder")
        return self.network

    def _labels(self, images: torch.Tensor, digit: int | Sequence[int] | torch.Tensor | None) -> torch.Tensor | None:
        if not self.conditional:
            return None
        if digit is None:  # the reference classifier says which digit each image is
            return classify(images).digits.clamp(max=9).to(self.device)
        if isinstance(digit, int):
            return torch.full((len(images),), DIGIT.check("digit", digit), dtype=torch.long, device=self.device)
        return torch.as_tensor(digit, dtype=torch.long, device=self.device)

    @torch.no_grad()
    def encode(self, images: Any, digit: int | Sequence[int] | None = None) -> torch.Tensor:
        """VAEs: the latent means (N, latent_dim) of ``images`` (any form :func:`score` takes). A
        conditional VAE needs each image's digit: given, or read by the reference classifier."""
        vae = self._vae("encode")
        x = as_images(images).to(self.device)
        mu, _ = vae.encode(x, self._labels(x, digit))
        return mu

    @torch.no_grad()
    def decode(self, z: torch.Tensor, digit: int | Sequence[int] | None = None) -> torch.Tensor:
        """VAEs: images (N, 1, 28, 28) in [0, 1] for latents ``z`` (N, latent_dim)."""
        vae = self._vae("decode")
        z = torch.as_tensor(z, dtype=torch.float32, device=self.device)
        labels = None
        if self.conditional:
            if digit is None:
                raise MnistgenError(f"decode: {self.name} is class-conditional; say which digit (digit=...)")
            labels = self._labels(torch.empty(len(z), 1, 28, 28), digit)
        return vae.decode_latents(z, labels)

    @torch.no_grad()
    def reconstruct(self, images: Any, digit: int | Sequence[int] | None = None) -> torch.Tensor:
        """VAEs: ``images`` encoded and decoded again (the latent means), (N, 1, 28, 28) in [0, 1]."""
        vae = self._vae("reconstruct")
        x = as_images(images).to(self.device)
        labels = self._labels(x, digit)
        mu, _ = vae.encode(x, labels)
        return vae.decode_latents(mu, labels)


def load(source: str | os.PathLike, device: str = "auto") -> Model:
    """A trained model: ``source`` names shipped weights (``"vae"``, ``"gan"``, ``"flow"``; see
    :func:`presets`), a run folder, or a ``.pt`` checkpoint. ``device``: "auto" (a GPU when there
    is one), "cpu" or "cuda".

    Example::

        model = mnistgen.load("runs/gan-20261202-101500", device="cpu")
    """
    from .pretrained import load_pretrained, pretrained_names
    from .sampling import load_trained_model

    where = _device(device)
    path = Path(source)
    if path.is_dir() or path.suffix == ".pt":
        network, cfg = load_trained_model(path, where)
        return Model(network, cfg, str(source), where)
    if isinstance(source, str) and source in pretrained_names():
        network, cfg = load_pretrained(source, where)
        return Model(network, cfg, f"pretrained {source}", where)
    if path.exists():
        raise MnistgenError(f"{source} is a file; load takes a run folder or a .pt checkpoint")
    shipped = ", ".join(pretrained_names()) or "none in this installation"
    raise MnistgenError(f"{source} is neither a run folder, a .pt checkpoint nor shipped weights ({shipped})")


# --------------------------------------------------------------------------- images in, images out


def as_images(images: Any) -> torch.Tensor:
    """Float (N, 1, 28, 28) in [0, 1] on the CPU from a tensor or array (N x 28 x 28 or N x 1 x 28 x 28,
    or one 28 x 28 image; uint8 0..255 or float in [0, 1] or [-1, 1]) or an .npz/.npy path."""
    from .metrics import images_to_unit_float, load_image_file

    if isinstance(images, (str, os.PathLike)):
        return load_image_file(images)
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise MnistgenError(f"images must be a tensor, an array or an .npz/.npy path, not {type(images).__name__}")
    return images_to_unit_float(images[None] if images.ndim == 2 else images, "images")  # one drawing, say


@dataclass
class Grid:
    """A picture of digits in a grid: shows inline in Jupyter, ``save(path)`` writes a PNG."""

    images: np.ndarray  # uint8 (N, 28, 28)
    nrow: int
    scale: int = 3

    def png(self) -> bytes:
        from .images import grid_png

        return grid_png(self.images, self.nrow, self.scale)

    def _repr_png_(self) -> bytes:
        return self.png()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the grid as a PNG file (atomically); returns its path."""
        from .fileio import atomic_write

        if Path(path).suffix.lower() != ".png":
            raise MnistgenError(f"save: the grid is a PNG; name a .png file, not {Path(path).name!r}")
        return atomic_write(path, lambda fh: fh.write(self.png()))


def show(images: Any, nrow: int = 10, scale: int = 3) -> Grid:
    """A grid of ``images`` (any form :func:`score` takes), ``nrow`` digits per row, each pixel
    ``scale`` times enlarged. In Jupyter it displays inline.

    Example::

        mnistgen.show(model.generate(20), nrow=10).save("digits.png")
    """
    from .images import to_uint8

    nrow = Rule(int, low=1, high=1000).check("nrow", nrow)
    scale = Rule(int, low=1, high=16).check("scale", scale)
    return Grid(to_uint8(as_images(images)), nrow, scale)


@dataclass
class Classification:
    """What the reference classifier makes of some images: ``digits`` (N,) with 10 meaning "not a
    digit", ``confidence`` (N,) the probability of that answer, ``probs`` (N, 11)."""

    digits: torch.Tensor
    confidence: torch.Tensor
    probs: torch.Tensor

    def __repr__(self) -> str:
        said = [("not a digit" if d == 10 else str(int(d))) + f" ({float(c):.2f})"
                for d, c in zip(self.digits[:10], self.confidence[:10])]
        more = f", ... ({len(self.digits)} in all)" if len(self.digits) > 10 else ""
        return f"Classification({', '.join(said)}{more})"


def classify(images: Any, device: str = "cpu") -> Classification:
    """The shipped reference classifier's verdict on ``images`` (any form :func:`score` takes): the
    classifier behind every score, trained on MNIST plus a class of non-digits (blobs, noise,
    scrambled digits).

    Example::

        mnistgen.classify(drawing).digits   # drawing: a 28 x 28 array, white on black
    """
    from .classifier import load_classifier
    from .metrics import classify as run_classifier

    classifier, _ = load_classifier()
    x = as_images(images)
    probs = run_classifier(classifier.to(_device(device)), x).probs.float()
    confidence, digits = probs.max(1)
    return Classification(digits, confidence, probs)


# --------------------------------------------------------------------------- scores

class Scores:
    """The scores of some digits beside those of as many real MNIST images (the ceiling). Shows as a
    table in Jupyter; ``scores["fid"]`` reads one number; ``to_dict()`` gives everything (what
    ``mnistgen evaluate --json`` writes)."""

    def __init__(self, result: dict):
        self.result = result

    def __getitem__(self, key: str) -> Any:
        return self.result["samples"][key]

    def to_dict(self) -> dict:
        return json.loads(json.dumps(self.result))

    def __repr__(self) -> str:
        from .evaluation import format_table

        return format_table(self.result)

    def _repr_html_(self) -> str:
        from .evaluation import score_rows

        cells = "".join(f"<tr><td>{html.escape(m)}</td><td>{s}</td><td>{r}</td></tr>"
                        for m, s, r in score_rows(self.result))
        n = self.result["samples"]["n"]
        return (f"<p>{html.escape(self.result['target'])}</p><table><tr><th>metric</th><th>these {n:,}</th>"
                f"<th>{n:,} real images</th></tr>{cells}</table><p>± is the spread over bootstrap resamples of "
                f"the scored images. Acceptable: classified as a digit with p &ge; {self.result['threshold']:g}.</p>")


def score(images: Any, n: int = 10_000, seed: int = 0, threshold: float = 0.9, data: str | None = None,
          device: str = "auto") -> Scores:
    """Score digits with the reference classifier: acceptable share, class coverage, Inception
    Score, FID, KID, precision and recall against the MNIST test set, beside the same metrics of as
    many real training images. ``images``: a tensor or array (N x 28 x 28 or N x 1 x 28 x 28, uint8
    or float in [0, 1]), an .npz/.npy path, or a :class:`Model` (then ``n`` digits are drawn with
    ``seed``). The test set's features and the real-image rows are cached on disk, so after the
    first call on a machine a few hundred images score in seconds.

    Example::

        scores = mnistgen.score(mnistgen.load("gan"), n=1000)
        scores["fid"], scores.to_dict()["real"]["fid"]
    """
    from .evaluation import EvalOptions, check_options, evaluate_images

    started = time.perf_counter()
    where = str(_device(device))
    if isinstance(images, Model):
        n = COUNT.check("n", n)
        check_options(n, threshold)
        x = images.generate(n, seed=seed).cpu().float()
        description = f"{images.name} (preset {images.config.preset}, {n} samples, seed {seed})"
    else:
        x = as_images(images)
        description = f"{len(x)} images"
    return Scores(evaluate_images(x, description, EvalOptions(seed=seed, threshold=threshold, data=data, device=where),
                                  started))


# --------------------------------------------------------------------------- presets and training


@dataclass(frozen=True)
class PresetInfo:
    """One preset: ``kind`` is "recommended" (our defaults), "reproduction" (a system of a seed
    report) or "extra"; ``pretrained`` says whether weights of it ship in the package."""

    name: str
    family: str
    conditional: bool
    pretrained: bool
    kind: str
    description: str


def presets() -> list[PresetInfo]:
    """Every preset, our recommended defaults first.

    Example::

        [p.name for p in mnistgen.presets() if p.kind == "recommended"]
    """
    from .config import preset_records
    from .pretrained import pretrained_names

    shipped = set(pretrained_names())
    infos = [PresetInfo(name, record["family"], bool((record.get("model_args") or {}).get("num_classes")),
                        name in shipped, preset_kind(name), record.get("description", ""))
             for name, record in preset_records().items()]
    return sorted(infos, key=lambda p: (("recommended", "reproduction", "extra").index(p.kind),
                                        RECOMMENDED.index(p.name) if p.name in RECOMMENDED else 0, p.name))


def preset_kind(name: str) -> str:
    return "recommended" if name in RECOMMENDED else "reproduction" if "seed" in name else "extra"


def config_of_model(network: DigitModel) -> Config:
    """The config of a model instance (built-in or the user's own class): its class and constructor
    arguments, trained with the settings of its family's recommended preset."""
    if not isinstance(network, DigitModel) or not hasattr(network, "constructor_args"):
        raise MnistgenError(f"train takes a preset name, a preset .yaml, a Config or a model that subclasses "
                            f"mnistgen.VAE, GAN or FlowModel, not {type(network).__name__}")
    if "<locals>" in type(network).__qualname__:
        raise MnistgenError(f"{type(network).__qualname__}: define the class at the top level of a module or "
                            f"notebook, so that a resume can find it again")
    family_preset = load_preset(network.family)
    name = model_name(type(network))
    cfg = Config(preset=type(network).__name__, family=network.family, model=name,
                 model_args=dict(network.constructor_args), train=family_preset.train,
                 description=f"{name}, trained with the {network.family} preset's settings")
    return Config.from_dict(cfg.to_dict())


def new_run_folder(preset: str = "", parent: str = "runs") -> Path:
    """``runs/PRESET-YYYYmmdd-HHMMSS``: where a run goes when no folder is named (a sweep's and a report's
    folders are named the same way under ``parent``; a report's has no preset: ``reports/YYYYmmdd-HHMMSS``)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(parent) / (f"{preset}-{stamp}" if preset else stamp)


class Run:
    """A run folder: ``folder``, ``config``, ``summary`` (summary.json, once training ended),
    ``metrics`` (one dict per epoch from metrics.jsonl) and :meth:`load` for its model."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if not (self.folder / "config.yaml").is_file():
            raise MnistgenError(f"{self.folder} is not a run folder (no config.yaml)")

    def __repr__(self) -> str:
        summary = self.summary
        said = (f"{summary['epochs_completed']} epochs, {summary['training_seconds']:.0f} s, stopped by "
                f"{summary['stop_reason']}" if summary else "not finished")
        return f"<mnistgen.Run {self.folder}: {self.config.preset}, {said}>"

    @property
    def config(self) -> Config:
        import yaml

        stored = yaml.safe_load((self.folder / "config.yaml").read_text())
        stored.pop("run", None)
        return Config.from_dict(stored)

    @property
    def summary(self) -> dict | None:
        path = self.folder / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else None

    @property
    def metrics(self) -> list[dict]:
        from .training import read_metrics

        path = self.folder / "metrics.jsonl"
        return read_metrics(path) if path.is_file() else []

    def load(self, device: str = "auto") -> Model:
        """The run's model (sampling weights: the EMA where the run keeps one)."""
        return load(self.folder, device)


def _config(what: str | Config | DigitModel) -> Config:
    if isinstance(what, Config):
        return Config.from_dict(what.to_dict())
    if isinstance(what, (str, os.PathLike)):
        return load_preset(str(what))
    return config_of_model(what)


def train(what: str | Config | DigitModel, *, minutes: float | None = None, epochs: int | None = None,
          out: str | os.PathLike | None = None, data: str | None = None, seed: int = 0, device: str = "auto",
          subset: int | None = None, progress: bool = True, **settings: Any) -> Run:
    """Train a preset (a name such as ``"gan"``, a preset .yaml, a :class:`mnistgen.config.Config`)
    or a model of your own (an instance of a :class:`mnistgen.VAE`, :class:`mnistgen.GAN` or
    :class:`mnistgen.FlowModel` subclass, rebuilt from its constructor arguments under ``seed``)
    into ``out`` (default ``runs/PRESET-TIMESTAMP``) and return the :class:`Run`. ``minutes`` caps
    the training time (our defaults then train until it is up), ``epochs`` sets the epoch count;
    ``settings`` override preset settings, e.g. ``lr=1e-3`` or ``model_args={"latent_dim": 8}``.
    Ctrl-C stops it cleanly after saving; :func:`resume` continues.

    Example::

        run = mnistgen.train("vae", minutes=2)
        mnistgen.show(run.load().generate(20))
    """
    from .training import RunOptions, start_run

    cfg = _config(what)
    if epochs is not None:
        settings["epochs"] = epochs
    cfg = apply_settings(cfg, settings) if settings else cfg
    if minutes is not None:
        minutes = Rule(float, low=0, low_open=True).check("minutes", minutes)
    folder = Path(out) if out is not None else new_run_folder(cfg.preset)
    start_run(cfg, RunOptions(out=str(folder), seed=SEED.check("seed", seed), device=device, subset=subset,
                              data=data, max_minutes=minutes, progress=progress))
    return Run(folder)


def resume(run: Run | str | os.PathLike, *, minutes: float | None = None, epochs: int | None = None,
           device: str | None = None, progress: bool = True) -> Run:
    """Continue a stopped run exactly where it stopped (same batches, same random numbers);
    ``epochs`` raises its epoch count, ``minutes`` caps this sitting.

    Example::

        run = mnistgen.resume("runs/vae-20261202-101500", epochs=30)
    """
    from .training import resume_run

    folder = run.folder if isinstance(run, Run) else Path(run)
    overrides = [] if epochs is None else [f"epochs={int(epochs)}"]
    resume_run(folder, max_minutes=minutes, progress=progress, overrides=overrides,
               device=None if device in (None, "auto") else device)
    return Run(folder)


__all__ = ["load", "Model", "show", "Grid", "classify", "Classification", "score", "Scores", "presets",
           "PresetInfo", "train", "resume", "Run", "as_images", "new_run_folder", "config_of_model"]
