"""Sample-quality metrics, all computed with the reference classifier (``mnistgen.classifier``).

- acceptable: share of samples the classifier calls a digit (not its "not a digit" class)
  with top probability >= threshold;
- class histogram of the samples called digits, and coverage = smallest class share x 10;
- Inception Score over the 10 digit probabilities (renormalised), mean +- std over 10 splits;
- FID and KID (torchmetrics) and precision/recall (Kynkaanniemi et al. 2019, k = 3) in the
  classifier's 128-D penultimate feature space, against the 10,000 test images.

Every evaluation also scores real training images the same way: the ceiling row.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from .classifier import NOT_A_DIGIT, MnistClassifier
from .errors import MnistgenError

DEFAULT_THRESHOLD = 0.9
IS_SPLITS = 10
PR_K = 3


@dataclass
class ClassifierView:
    """What the classifier makes of a set of images: 11-class probabilities and 128-D features."""

    probs: torch.Tensor
    features: torch.Tensor


@torch.no_grad()
def classify(model: MnistClassifier, images: torch.Tensor, batch: int = 1000) -> ClassifierView:
    model.eval()
    probs, feats = [], []
    for chunk in images.split(batch):
        f = model.features(chunk)
        feats.append(f)
        probs.append(model.head(f).softmax(1))
    return ClassifierView(torch.cat(probs).double(), torch.cat(feats).double())


def acceptable_share(probs: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> float:
    top, label = probs.max(1)
    return float(((label != NOT_A_DIGIT) & (top >= threshold)).double().mean())


def class_histogram(probs: torch.Tensor) -> list[float]:
    """Shares of digits 0-9 among the samples whose top class is a digit."""
    label = probs.argmax(1)
    digits = label[label != NOT_A_DIGIT]
    if len(digits) == 0:
        return [0.0] * 10
    return (torch.bincount(digits, minlength=10).double() / len(digits)).tolist()


def inception_score(probs: torch.Tensor, splits: int = IS_SPLITS) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) over the digit classes, mean and std over ``splits`` parts."""
    p = probs[:, :NOT_A_DIGIT]
    p = p / p.sum(1, keepdim=True).clamp_min(1e-12)
    scores = []
    for part in p.chunk(splits):
        marginal = part.mean(0, keepdim=True)
        kl = (part * (part.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(1)
        scores.append(float(kl.mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))


class _Precomputed(nn.Module):
    """Feature 'extractor' for torchmetrics that passes through features we computed once."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def fid_kid(real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> dict[str, float]:
    fid = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    fid.update(real, real=True)
    fid.update(fake, real=False)
    subset = min(1000, len(real), len(fake))
    with warnings.catch_warnings():  # it warns that it keeps all features: 2 x 10,000 x 128 here, fine
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        kid = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=100, subset_size=subset)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    torch.manual_seed(seed)  # KID draws random subsets
    kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}


def _kth_neighbour_radius(x: torch.Tensor, k: int, chunk: int = 2000) -> torch.Tensor:
    radii = []
    for part in x.split(chunk):
        d = torch.cdist(part, x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # +1: the point itself is at distance 0
    return torch.cat(radii)


def _inside_any_ball(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 2000) -> float:
    inside = []
    for part in points.split(chunk):
        inside.append((torch.cdist(part, centres) <= radii[None, :]).any(1))
    return float(torch.cat(inside).double().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = PR_K) -> tuple[float, float]:
    """Kynkaanniemi et al. 2019: precision = fakes inside a real k-NN ball; recall = the reverse."""
    real, fake = real.float(), fake.float()
    precision = _inside_any_ball(fake, real, _kth_neighbour_radius(real, k))
    recall = _inside_any_ball(real, fake, _kth_neighbour_radius(fake, k))
    return precision, recall


def score(view: ClassifierView, reference: ClassifierView, threshold: float = DEFAULT_THRESHOLD,
          seed: int = 0) -> dict:
    """All metrics of one set of images against the reference (test) images."""
    histogram = class_histogram(view.probs)
    is_mean, is_std = inception_score(view.probs)
    precision, recall = precision_recall(reference.features, view.features)
    return {
        "n": len(view.probs),
        "acceptable": acceptable_share(view.probs, threshold),
        "coverage": min(histogram) * 10,
        "class_histogram": histogram,
        "inception_score": is_mean,
        "inception_score_std": is_std,
        **fid_kid(reference.features, view.features, seed=seed),
        "precision": precision,
        "recall": recall,
    }


# --------------------------------------------------------------------------- image input


def images_to_unit_float(array: np.ndarray, origin: str) -> torch.Tensor:
    """uint8 0..255, float 0..1 or float -1..1; (N, 28, 28) or (N, 1, 28, 28) -> float (N, 1, 28, 28) in [0, 1]."""
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[1:] != (1, 28, 28) or len(array) == 0:
        raise MnistgenError(f"{origin}: images must have shape N x 28 x 28 or N x 1 x 28 x 28, got {array.shape}")
    if array.dtype == np.uint8:
        return torch.from_numpy(array.astype(np.float32) / 255.0)
    if not np.issubdtype(array.dtype, np.floating):
        raise MnistgenError(f"{origin}: images must be uint8 or float, got {array.dtype}")
    if not np.isfinite(array).all():
        raise MnistgenError(f"{origin}: images contain NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    x = torch.from_numpy(array.astype(np.float32))
    if low >= 0.0 and high <= 1.0:
        return x
    if low >= -1.0 and high <= 1.0:
        return (x + 1) / 2
    raise MnistgenError(f"{origin}: float images must lie in [0, 1] or [-1, 1], found [{low:.3g}, {high:.3g}]")


def load_image_file(path: str | os.PathLike) -> torch.Tensor:
    """Images from an .npy, or an .npz's ``images`` array (or its only array)."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as npz:
                if "images" in npz.files:
                    array = npz["images"]
                elif len(npz.files) == 1:
                    array = npz[npz.files[0]]
                else:
                    raise MnistgenError(f"{path} holds {', '.join(npz.files)}: name the images array 'images'")
    except MnistgenError:
        raise
    except Exception as exc:
        raise MnistgenError(f"{path} is not a readable {path.suffix} file ({exc.__class__.__name__})") from exc
    return images_to_unit_float(np.asarray(array), str(path))
