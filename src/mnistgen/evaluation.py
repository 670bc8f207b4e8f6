"""``mnistgen evaluate``: score a run, a checkpoint or a file of images, next to the real-data ceiling."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .classifier import WEIGHTS_FILE, MnistClassifier, load_classifier, shipped_weights_dir
from .data import MnistData, cache_dir, load_dataset, to_float_images
from .errors import MnistgenError
from .fileio import atomic_write
from .metrics import (
    DEFAULT_THRESHOLD,
    PR_K,
    SCORE_VERSION,
    ClassifierView,
    classify,
    load_image_file,
    score,
    spread_note,
    ten_class_acceptable,
)

IMAGE_SUFFIXES = (".npz", ".npy")
MIN_IMAGES = 2  # the fewest that FID, KID and a spread can be computed on; each metric's own minimum is in metrics


@dataclass(frozen=True)
class EvalOptions:
    """How to score: the same for every target of a report, a reproduction or a sweep, so kept together.

    ``n`` images are sampled with ``seed``; acceptable means a digit class at p >= ``threshold``; FID and
    friends are taken against the test images of ``data`` (default: the usual MNIST); models sample and
    the classifier runs on ``device``. ``ten_class_thresholds`` adds, under ``samples.ten_class_acceptable``,
    what a plain 10-class classifier would accept at each of them (the rule of the seed reports);
    ``sampling`` changes how a model samples (e.g. ``{"steps": 4}``; see
    :func:`mnistgen.sampling.set_sampling`)."""

    n: int = 10_000
    seed: int = 0
    threshold: float = DEFAULT_THRESHOLD
    data: str | None = None
    device: str = "cpu"
    ten_class_thresholds: tuple[float, ...] = ()
    sampling: dict | None = None


def target_images(target: str | os.PathLike, options: EvalOptions, name: str | None = None,
                  pretrained: bool = False) -> tuple[torch.Tensor, str]:
    """``options.n`` images in [0, 1] from a run folder / checkpoint / pretrained model's name (sampled
    with ``options.seed`` and ``options.sampling``) or an image file, and their description, naming the
    target ``name`` (default: its path as given)."""
    from .pretrained import load_pretrained  # keeps `evaluate FILE.npz` free of model imports
    from .sampling import load_trained_model, sample_float, set_sampling

    n, seed, sampling, device = options.n, options.seed, options.sampling, options.device
    path = Path(target)
    name = name or str(path)
    if pretrained:
        model, cfg = load_pretrained(str(target), device)
        name = f"pretrained {target}"
    elif not path.exists():
        raise MnistgenError(f"{path} does not exist")
    elif path.is_file() and path.suffix in IMAGE_SUFFIXES:
        if any(v is not None for v in (sampling or {}).values()):
            raise MnistgenError(f"{path} is a file of images: sampling options apply to a run folder or checkpoint")
        images = load_image_file(path)
        if len(images) < MIN_IMAGES:
            raise MnistgenError(f"{path} holds {len(images)} image; evaluate needs at least {MIN_IMAGES}")
        if len(images) < n:
            print(f"note: {path} holds {len(images)} images; evaluating all of them")
        return images[:n], f"{name} ({min(n, len(images))} images from file)"
    elif path.is_dir() or path.suffix == ".pt":
        model, cfg = load_trained_model(path, device)
    else:
        raise MnistgenError(f"{path}: evaluate takes a run folder, a .pt checkpoint, or an .npz/.npy of images")
    changed = set_sampling(model, cfg.preset, **(sampling or {}))
    return sample_float(model, n, seed), f"{name} (preset {cfg.preset}, {n} samples, seed {seed}{', ' * bool(changed)}{changed})"


def _weights_digest() -> str:
    return hashlib.sha256((shipped_weights_dir() / WEIGHTS_FILE).read_bytes()).hexdigest()[:16]


def _cached_view(path: Path, compute: Callable[[], ClassifierView]) -> ClassifierView:
    """The classification of a fixed image set, read from ``path`` or computed and written there."""
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            return ClassifierView(saved["probs"], saved["features"], {PR_K: saved["radii"]})
        except Exception:  # damaged or from another version: recompute
            pass
    view = compute()
    state = {"probs": view.probs, "features": view.features, "radii": view.knn_radii(PR_K)}
    atomic_write(path, lambda fh: torch.save(state, fh))
    return view


@functools.lru_cache(maxsize=4)
def reference_set(data: str | None, device: str = "cpu") -> tuple[MnistClassifier, dict, MnistData, ClassifierView]:
    """Classifier, data and the test set's classification. The classification (features and their
    nearest-neighbour radii) depends only on the classifier weights and the data, so it is kept in
    the cache folder: after the first time on a machine, scoring a handful of images takes seconds."""
    classifier, record = load_classifier()
    classifier.to(device)
    mnist = load_dataset(data)
    key = json.dumps([SCORE_VERSION, _weights_digest(), mnist.source, str(mnist.path), len(mnist.x_test)])
    path = cache_dir() / f"reference-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    return classifier, record, mnist, _cached_view(path, lambda: classify(classifier, to_float_images(mnist.x_test)))


def _ceiling(data: str | None, n: int, seed: int, threshold: float, device: str = "cpu") -> dict:
    """The metrics of ``n`` real training images: the same for every target, so cached on disk,
    keyed by everything it depends on (classifier weights, data, n, seed, threshold)."""
    classifier, record, mnist, reference = reference_set(data, device)
    key = json.dumps([SCORE_VERSION, _weights_digest(), mnist.source, str(mnist.path), n, seed, threshold])
    path = cache_dir() / f"ceiling-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass  # damaged: recompute
    pick = torch.randperm(len(mnist.x_train), generator=torch.Generator().manual_seed(seed))[:n]
    row = score(classify(classifier, to_float_images(mnist.x_train[pick.numpy()])), reference, threshold, seed)
    atomic_write(path, lambda fh: fh.write(json.dumps(row).encode()))
    return row


def check_options(n: int, threshold: float = DEFAULT_THRESHOLD) -> None:
    """Refuse an -n or --threshold that evaluate cannot use (a report calls this before training)."""
    if n < MIN_IMAGES:
        raise MnistgenError(f"-n must be at least {MIN_IMAGES}, not {n}")
    if not 0.0 < threshold <= 1.0:
        raise MnistgenError(f"--threshold must be in (0, 1], not {threshold:g}")


def evaluate(target: str | os.PathLike, options: EvalOptions | None = None, name: str | None = None,
             pretrained: bool = False, **changes: Any) -> dict:
    """Scores of ``options.n`` images of ``target`` and of as many real training images (see
    :class:`EvalOptions`); ``changes`` replace single options (``evaluate(run, n=500)``). ``name`` is how
    the result's description names the target (a report passes a path relative to itself); with
    ``pretrained``, ``target`` names shipped weights (e.g. ``gan``)."""
    options = dataclasses.replace(options or EvalOptions(), **changes)
    check_options(options.n, options.threshold)
    started = time.perf_counter()
    images, description = target_images(target, options, name, pretrained)
    return evaluate_images(images, description, options, started)


def evaluate_images(images: torch.Tensor, description: str, options: EvalOptions | None = None,
                    started: float | None = None) -> dict:
    """Scores of float ``images`` (N, 1, 28, 28) in [0, 1] beside as many real training images (see
    :func:`evaluate`; ``options.n`` and ``options.sampling`` do not apply: the images are given);
    ``seconds`` counts from ``started`` (default: now)."""
    started = time.perf_counter() if started is None else started
    options = options or EvalOptions()
    seed, threshold, data, device = options.seed, options.threshold, options.data, options.device
    ten_class_thresholds = options.ten_class_thresholds
    check_options(len(images), threshold)
    classifier, record, mnist, reference = reference_set(data, device)
    view = classify(classifier, images)
    result: dict[str, Any] = {
        "target": description,
        "threshold": threshold,
        "seed": seed,
        "reference": f"{len(mnist.x_test)} test images",
        "classifier": {k: record.get(k) for k in ("command", "test_accuracy", "uniform_noise_called_a_digit")},
        "samples": score(view, reference, threshold, seed),
        "real": _ceiling(data, len(images), seed, threshold, device),
    }
    if ten_class_thresholds:
        result["samples"]["ten_class_acceptable"] = {f"{t:g}": ten_class_acceptable(view.probs, t)
                                                     for t in ten_class_thresholds}
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


METRIC_NAMES = {"acceptable": "acceptable digits", "coverage": "class coverage", "inception_score": "Inception Score",
                "fid": "FID", "kid": "KID", "precision": "precision", "recall": "recall"}


def score_rows(result: dict) -> list[tuple[str, str, str]]:
    """(metric, samples, real images) cells of a result; a value's ± is its bootstrap spread."""
    def cell(row: dict, key: str) -> str:
        value = row.get(key)
        if value is None:
            return "-"
        text = f"{value:.5f}" if key == "kid" else f"{value:.3f}"
        spread = row.get("spread", {}).get(key)
        return text if spread is None else f"{text} ± {spread:.3f}"

    return [(label, cell(result["samples"], key), cell(result["real"], key)) for key, label in METRIC_NAMES.items()]


def format_table(result: dict) -> str:
    """The result as text: one row per metric, the samples beside as many real training images."""
    n = result["samples"]["n"]
    heads = ("", f"these {n:,} samples", f"{n:,} real images (ceiling)")
    rows = [heads, *score_rows(result)]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"target: {result['target']}"]
    lines += ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
              for row in rows]
    lines.append(f"± is {spread_note(n, result['seed'])}.")
    lines.append(f"acceptable digits: classified as a digit with p >= {result['threshold']:g}; FID, KID, precision "
                 f"and recall against {result['reference']} in the reference classifier's feature space.")
    lines.extend(dict.fromkeys(f"{METRIC_NAMES[key]} not computed: {why}"
                               for row in (result["samples"], result["real"]) for key, why in row["skipped"].items()))
    hist = " ".join(f"{d}:{share:.3f}" for d, share in enumerate(result["samples"]["class_histogram"]))
    lines.append(f"sample classes: {hist}")
    clf = result["classifier"]
    lines.append(f"reference classifier: test accuracy {clf['test_accuracy']}, trained by `{clf['command']}`")
    lines.append(f"evaluation took {result['seconds']:.1f} s")
    return "\n".join(lines)
