"""Sample-quality metrics, all computed with the reference classifier (``mnistgen.classifier``).

- acceptable: share of samples the classifier calls a digit (not its "not a digit" class)
  with top probability >= threshold;
- class histogram of the samples called digits, and coverage = smallest class share x 10;
- Inception Score over the 10 digit probabilities (renormalised), mean +- std over 10 splits;
- FID and KID (torchmetrics) and precision/recall (Kynkaanniemi et al. 2019, k = 3) in the
  classifier's 128-D penultimate feature space, against the 10,000 test images.

Every metric also gets a spread (see ``score``), and a metric that cannot be computed on so few
images is None with the reason under ``skipped``. Every evaluation also scores real training
images the same way: the ceiling row.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
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
SPREAD_RESAMPLES = 30
SCORE_VERSION = 2  # bump when ``score`` changes what it returns: it keys the cached ceiling rows
# The fewest images each metric means something on. Below it the metric is None, not a misleading number.
MIN_IMAGES = {
    "coverage": 10,  # the smallest of 10 class shares is 0 by construction below 10 images
    "inception_score": 10 * IS_SPLITS,  # a split of m images caps IS at m: each split must be able to reach 10
    "fid": 2, "kid": 2,  # a covariance, an unbiased MMD: both need two images in each set
    "precision": PR_K + 1, "recall": PR_K + 1,  # the k-th nearest other point must exist in each set
}
USES_REFERENCE = ("fid", "kid", "precision", "recall")
RESAMPLED = ("acceptable", "coverage", "inception_score", "fid", "precision", "recall")  # the metrics with a spread


@dataclass
class ClassifierView:
    """What the classifier makes of a set of images: 11-class probabilities and 128-D features."""

    probs: torch.Tensor
    features: torch.Tensor
    _radii: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def knn_radii(self, k: int = PR_K) -> torch.Tensor:
        """Each image's feature distance to its k-th nearest other image; computed once, since the
        reference set's radii serve every evaluation (and its ceiling row) in a process."""
        if k not in self._radii:
            self._radii[k] = _kth_neighbour_radius(self.features.float(), k)
        return self._radii[k]


@torch.no_grad()
def classify(model: MnistClassifier, images: torch.Tensor, batch: int = 1000) -> ClassifierView:
    model.eval()
    device = next(model.parameters()).device
    probs, feats = [], []
    for chunk in images.split(batch):
        f = model.features(chunk.to(device))
        feats.append(f.cpu())
        probs.append(model.head(f).softmax(1).cpu())
    return ClassifierView(torch.cat(probs).double(), torch.cat(feats).double())


def acceptable_share(probs: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> float:
    top, label = probs.max(1)
    return float(((label != NOT_A_DIGIT) & (top >= threshold)).double().mean())


def ten_class_acceptable(probs: torch.Tensor, threshold: float) -> float:
    """The share a plain 10-class softmax classifier would accept at ``threshold``: the digit
    probabilities renormalised, so that, like the seeds' classifiers, it has no "not a digit" answer
    and must call even noise some digit."""
    digits = probs[:, :NOT_A_DIGIT]
    top = digits.max(1).values / digits.sum(1).clamp_min(1e-12)
    return float((top >= threshold).double().mean())


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


def fid_values(real: torch.Tensor, fake: torch.Tensor, draws: torch.Tensor) -> list[float]:
    """FID of ``fake``, then of each resample ``fake[draws[i]]``, against the same ``real``."""
    fid = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]), reset_real_features=False)
    fid.update(real, real=True)
    values = []
    for subset in (fake, *(fake[d] for d in draws)):
        fid.reset()  # keeps the real statistics
        fid.update(subset, real=False)
        values.append(float(fid.compute()))
    return values


def kid(real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> tuple[float, float]:
    """KID mean and std over 100 random subsets (of 1000, or of all images if fewer)."""
    subset = min(1000, len(real), len(fake))
    with warnings.catch_warnings():  # it warns that it keeps all features: 2 x 10,000 x 128 here, fine
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=100, subset_size=subset)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    torch.manual_seed(seed)  # KID draws random subsets
    mean, std = metric.compute()
    return float(mean), float(std)


def _kth_neighbour_radius(x: torch.Tensor, k: int, chunk: int = 2000) -> torch.Tensor:
    radii = []
    for part in x.split(chunk):
        d = torch.cdist(part, x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # +1: the point itself is at distance 0
    return torch.cat(radii)


def _ball_counts(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, weights: torch.Tensor,
                 chunk: int = 2000) -> torch.Tensor:
    """(len(points), weights.shape[1]): per point, the summed weight of the centres whose ball holds it."""
    counts = []
    for part in points.split(chunk):
        counts.append((torch.cdist(part, centres) <= radii[None, :]).float() @ weights)
    return torch.cat(counts)


def _weighted_precision_recall(real: torch.Tensor, fake: torch.Tensor, weights: torch.Tensor, k: int = PR_K,
                               real_radii: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision and recall once per column of ``weights`` (len(fake) x C, how often each fake counts).

    The k-NN radii are measured once on all fakes: a resample only drops or repeats balls, since
    radii measured among repeated points would shrink to 0."""
    real, fake, weights = real.float(), fake.float(), weights.double()
    if real_radii is None:
        real_radii = _kth_neighbour_radius(real, k)
    in_real_ball = _ball_counts(fake, real, real_radii, torch.ones(len(real), 1)) > 0
    precision = (weights * in_real_ball).sum(0) / weights.sum(0)
    recall = (_ball_counts(real, fake, _kth_neighbour_radius(fake, k), weights.float()) > 0).double().mean(0)
    return precision, recall


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = PR_K) -> tuple[float, float]:
    """Kynkaanniemi et al. 2019: precision = fakes inside a real k-NN ball; recall = the reverse."""
    precision, recall = _weighted_precision_recall(real, fake, torch.ones(len(fake), 1), k)
    return float(precision[0]), float(recall[0])


def too_few(key: str, n: int, n_reference: int) -> str | None:
    """Why ``key`` cannot be computed on ``n`` images (against ``n_reference``), or None if it can."""
    need = MIN_IMAGES.get(key, 1)
    if n >= need and (n_reference >= need or key not in USES_REFERENCE):
        return None
    if key in USES_REFERENCE:
        return f"needs at least {need} images in the scored and in the reference set, got {n} and {n_reference}"
    return f"needs at least {need} images, got {n}"


def spread_note(n: int, seed: int) -> str:
    """What the ``spread`` of a score is, in one sentence (for tables and reports)."""
    return (f"the standard deviation over {SPREAD_RESAMPLES} bootstrap resamples of the {n:,} scored images "
            f"(seed {seed}): the evaluation's sampling noise, not the variation between training runs")


def score(view: ClassifierView, reference: ClassifierView, threshold: float = DEFAULT_THRESHOLD,
          seed: int = 0) -> dict:
    """All metrics of one set of images against the reference (test) images.

    ``spread`` holds each metric's standard deviation over SPREAD_RESAMPLES bootstrap resamples
    (draw n of the n scored images with replacement, recompute). It measures how much the number
    would move with another set of n samples from the same generator, at the cost of re-scoring
    features already computed (about 1-2 s at n = 10,000), where re-sampling the model with other
    seeds would cost a full evaluation each. It does not include the variation between training
    runs with other seeds, which only retraining measures. KID keeps its own ``kid_std``
    (over its 100 subsets) instead: resampling it would cost 100 kernel subsets per resample.
    """
    n, n_ref = len(view.probs), len(reference.probs)
    skipped = {key: why for key in MIN_IMAGES if (why := too_few(key, n, n_ref))}
    draws = torch.randint(n, (SPREAD_RESAMPLES, n), generator=torch.Generator().manual_seed(seed))

    def on_probs(metric: Callable[[torch.Tensor], float]) -> list[float]:
        return [metric(view.probs)] + [metric(view.probs[d]) for d in draws]

    # Per metric: its value on the scored images, then on each resample.
    values = {"acceptable": on_probs(lambda p: acceptable_share(p, threshold)),
              "coverage": on_probs(lambda p: min(class_histogram(p)) * 10),
              "inception_score": on_probs(lambda p: inception_score(p)[0])}
    if "fid" not in skipped:
        values["fid"] = fid_values(reference.features, view.features, draws)
    if "precision" not in skipped:
        weights = torch.stack([torch.ones(n, dtype=torch.long)] + [torch.bincount(d, minlength=n) for d in draws], 1)
        precision, recall = _weighted_precision_recall(reference.features, view.features, weights, PR_K,
                                                       reference.knn_radii(PR_K))
        values["precision"], values["recall"] = precision.tolist(), recall.tolist()
    values = {key: v for key, v in values.items() if key not in skipped}
    row = {key: values[key][0] if key in values else None for key in RESAMPLED}
    kid_mean, kid_std = kid(reference.features, view.features, seed) if "kid" not in skipped else (None, None)
    return {
        "n": n, **row,
        "class_histogram": class_histogram(view.probs),
        "inception_score_std": inception_score(view.probs)[1] if "inception_score" in values else None,
        "kid": kid_mean, "kid_std": kid_std,
        "spread": {key: float(np.std(v[1:], ddof=1)) for key, v in values.items()},
        "skipped": skipped,
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
