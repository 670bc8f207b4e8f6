"""``mnistgen evaluate``: score a run, a checkpoint or a file of images, next to the real-data ceiling."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from pathlib import Path

import torch

from .classifier import WEIGHTS_FILE, MnistClassifier, load_classifier, shipped_weights_dir
from .data import MnistData, cache_dir, load_dataset, to_float_images
from .fileio import atomic_write
from .errors import MnistgenError
from .metrics import (DEFAULT_THRESHOLD, SCORE_VERSION, ClassifierView, classify, load_image_file, score, spread_note,
                      ten_class_acceptable)

IMAGE_SUFFIXES = (".npz", ".npy")
MIN_IMAGES = 2  # the fewest that FID, KID and a spread can be computed on; each metric's own minimum is in metrics


def target_images(target: str | os.PathLike, n: int, seed: int, name: str | None = None,
                  sampling: dict | None = None, pretrained: bool = False) -> tuple[torch.Tensor, str]:
    """``n`` images in [0, 1] from a run folder / checkpoint / pretrained model's name (sampled with
    ``seed``, and the ``sampling`` options of :func:`mnistgen.sampling.set_sampling`) or an image
    file, and their description, naming the target ``name`` (default: its path as given)."""
    from .pretrained import load_pretrained  # keeps `evaluate FILE.npz` free of model imports
    from .sampling import load_trained_model, sample_float, set_sampling

    path = Path(target)
    name = name or str(path)
    if pretrained:
        model, cfg = load_pretrained(str(target))
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
        model, cfg = load_trained_model(path)
    else:
        raise MnistgenError(f"{path}: evaluate takes a run folder, a .pt checkpoint, or an .npz/.npy of images")
    changed = set_sampling(model, cfg.preset, **(sampling or {}))
    return sample_float(model, n, seed), f"{name} (preset {cfg.preset}, {n} samples, seed {seed}{', ' * bool(changed)}{changed})"


@functools.lru_cache(maxsize=2)
def reference_set(data: str | None) -> tuple[MnistClassifier, dict, MnistData, ClassifierView]:
    """Classifier, data and the test set's classification, computed once per process
    (a report evaluates several models against the same reference)."""
    classifier, record = load_classifier()
    mnist = load_dataset(data)
    return classifier, record, mnist, classify(classifier, to_float_images(mnist.x_test))


def _ceiling(data: str | None, n: int, seed: int, threshold: float) -> dict:
    """The metrics of ``n`` real training images: the same for every target, so cached on disk,
    keyed by everything it depends on (classifier weights, data, n, seed, threshold)."""
    classifier, record, mnist, reference = reference_set(data)
    weights = hashlib.sha256((shipped_weights_dir() / WEIGHTS_FILE).read_bytes()).hexdigest()[:16]
    key = json.dumps([SCORE_VERSION, weights, mnist.source, mnist.path, n, seed, threshold])
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


def evaluate(target: str | os.PathLike, n: int = 10_000, seed: int = 0, threshold: float = DEFAULT_THRESHOLD,
             data: str | None = None, name: str | None = None, ten_class_thresholds: tuple[float, ...] = (),
             sampling: dict | None = None, pretrained: bool = False) -> dict:
    """Scores of ``n`` images of ``target`` and of as many real training images; ``name`` is how the
    result's description names the target (a report passes a path relative to itself).
    ``ten_class_thresholds`` adds, under ``samples.ten_class_acceptable``, what a plain 10-class
    classifier would accept at each of them (the rule of the seed reports). ``sampling`` changes how a
    model samples (e.g. ``{"steps": 4}``; see :func:`mnistgen.sampling.set_sampling`); with ``pretrained``,
    ``target`` names shipped weights (e.g. ``gan``)."""
    check_options(n, threshold)
    started = time.perf_counter()
    images, description = target_images(target, n, seed, name, sampling, pretrained)
    classifier, record, mnist, reference = reference_set(data)
    view = classify(classifier, images)
    result = {
        "target": description,
        "threshold": threshold,
        "seed": seed,
        "reference": f"{len(mnist.x_test)} test images",
        "classifier": {k: record.get(k) for k in ("command", "test_accuracy", "uniform_noise_called_a_digit")},
        "samples": score(view, reference, threshold, seed),
        "real": _ceiling(data, len(images), seed, threshold),
    }
    if ten_class_thresholds:
        result["samples"]["ten_class_acceptable"] = {f"{t:g}": ten_class_acceptable(view.probs, t)
                                                     for t in ten_class_thresholds}
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def _cell(row: dict, key: str, width: int, fmt: str) -> str:
    value = row[key]
    return f"{'-' if value is None else format(value, fmt):>{width}s}"


def format_table(result: dict) -> str:
    head = f"{'':14s}{'n':>7s}{'accept':>8s}{'cover':>7s}{'IS':>14s}{'FID':>9s}{'KID':>17s}{'prec':>7s}{'recall':>8s}"
    lines = [f"target: {result['target']}",
             f"acceptable = classified as a digit with p >= {result['threshold']:g}; "
             f"FID/KID/precision/recall against {result['reference']} in the classifier's feature space",
             head]
    rows = (("samples", result["samples"]), ("real (ceiling)", result["real"]))
    for label, row in rows:
        lines.append(
            f"{label:14s}{row['n']:7d}{_cell(row, 'acceptable', 8, '.3f')}{_cell(row, 'coverage', 7, '.3f')}"
            f"{_cell(row, 'inception_score', 8, '.3f')} ±{_cell(row, 'inception_score_std', 5, '.3f')}"
            f"{_cell(row, 'fid', 9, '.3f')}{_cell(row, 'kid', 9, '.5f')} ±{_cell(row, 'kid_std', 6, '.5f')}"
            f"{_cell(row, 'precision', 7, '.3f')}{_cell(row, 'recall', 8, '.3f')}")
    spread = result["samples"]["spread"]
    lines.append(f"spread of the samples' scores ({spread_note(result['samples']['n'], result['seed'])}): "
                 + ", ".join(f"{key} {value:.3g}" for key, value in spread.items()))
    # The ceiling row has as many images as the samples: its notes are mostly the same ones.
    lines.extend(dict.fromkeys(f"{key} not computed: {why}" for _, row in rows for key, why in row["skipped"].items()))
    hist = " ".join(f"{d}:{share:.3f}" for d, share in enumerate(result["samples"]["class_histogram"]))
    lines.append(f"sample classes: {hist}")
    clf = result["classifier"]
    lines.append(f"classifier: test accuracy {clf['test_accuracy']}, trained by `{clf['command']}`; "
                 f"{result['seconds']:.1f} s")
    return "\n".join(lines)
