"""Sample quality during training: every ``eval_every`` epochs, ``eval_n`` samples scored by the
reference classifier (FID, acceptable share, precision, recall), as ``mnistgen evaluate`` scores them.

The samples come from the same latents at every evaluation (seed ``EVAL_SEED``, which is also
``mnistgen evaluate``'s default seed), so the curve shows the model changing, not the draw. The
evaluation runs with the random state forked: a run trains the same with it on or off, and a
resumed run the same as an uninterrupted one.
"""

from __future__ import annotations

import time

import torch

from ..config import TrainSettings
from ..errors import ConfigError
from ..models.base import DigitModel

EVAL_SEED = 0
QUALITY_KEYS = ("fid", "acceptable", "precision", "recall")  # logged as eval_fid, eval_acceptable, ...
# The record key that keep_best compares (lower is better for both).
BEST_KEYS = {"val_loss": "val_loss", "fid": "eval_fid", "none": None}


def check_quality_settings(t: TrainSettings) -> None:
    """Refuse a best.pt by FID in a run that never measures FID."""
    if t.keep_best == "fid" and not t.eval_every:
        raise ConfigError("keep_best fid needs eval_every > 0 (--eval-every N): FID is measured only every "
                          "eval_every epochs")


class QualityProbe:
    """Scores ``n`` samples of a model every ``every`` epochs; the classifier runs on ``device``."""

    def __init__(self, every: int, n: int, data: str | None, device: torch.device):
        self.every, self.n, self.data, self.device = every, n, data, device

    def due(self, epochs_done: int) -> bool:
        return bool(self.every) and epochs_done % self.every == 0

    def measure(self, model: DigitModel) -> dict[str, float]:
        """``eval_*`` scores of ``model``'s samples and ``eval_seconds``, the time they took (sampling
        and scoring; the test set's features are computed once per machine and kept in the cache)."""
        from ..evaluation import reference_set  # the classifier and metrics load only when asked for
        from ..metrics import DEFAULT_THRESHOLD, classify, score
        from ..sampling import sample_float

        was_training = model.training
        model.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        # Building the classifier draws initial weights and KID reseeds: both from the global generator.
        with torch.random.fork_rng(devices=devices):
            classifier, _, _, reference = reference_set(self.data, str(self.device))
            started = time.perf_counter()
            try:
                images = sample_float(model, self.n, EVAL_SEED)
                scores = score(classify(classifier, images), reference, DEFAULT_THRESHOLD, EVAL_SEED)
            finally:
                model.train(was_training)
        # A metric that cannot be computed on so few samples is left out (metrics.MIN_IMAGES).
        record = {f"eval_{key}": scores[key] for key in QUALITY_KEYS if scores[key] is not None}
        record["eval_seconds"] = round(time.perf_counter() - started, 3)
        return record
