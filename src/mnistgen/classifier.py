"""The reference MNIST classifier behind every metric: acceptability, IS, FID, KID, precision/recall.

A small CNN with an 11th class, "not a digit". A plain 10-class softmax CNN is confidently
wrong on non-digits (it calls uniform noise a digit with p > 0.9), so during training every
batch is joined by synthetic non-digits made from it: uniform and sparse noise, smooth blobs,
blends of two different digits, pixel- and tile-shuffled digits, and inverted digits.
A sample is then "acceptable" only if the classifier picks a digit class, and is sure of it.
Real digits are also shown blurred and faded (as digits), so softness alone is not "not a digit".

Its 128-D penultimate layer is the feature space of FID, KID and precision/recall
(as TF-GAN's ``mnist_frechet_distance`` uses its MNIST classifier's activations).

Weights ship inside the package (``weights/classifier.safetensors``, under 2 MB) beside
``classifier.json``, which records the command that trained them and their test accuracy.
Evaluation only loads them; ``mnistgen classifier train`` makes new ones.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from torch import nn
from tqdm.auto import tqdm

from .data import TRAIN_PIXEL_MEAN, TRAIN_PIXEL_STD, InMemoryBatches, load_dataset, to_float_images
from .errors import MnistgenError
from .fileio import atomic_write

NOT_A_DIGIT = 10
NUM_CLASSES = 11
WEIGHTS_FILE = "classifier.safetensors"
RECORD_FILE = "classifier.json"


class MnistClassifier(nn.Module):
    """Input: float images in [0, 1], (N, 1, 28, 28). Output: 11 logits; ``features`` gives 128-D."""

    num_features = 128  # torchmetrics reads this instead of probing with a dummy image

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            # One conv at full resolution, then pool: the 28x28 convs dominate the cost, and
            # evaluation classifies 30,000 images per call (samples, test set, real ceiling).
            *block(1, 32), nn.MaxPool2d(2),
            *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, self.num_features, bias=False),
            nn.BatchNorm1d(self.num_features), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(self.num_features, NUM_CLASSES))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - TRAIN_PIXEL_MEAN) / TRAIN_PIXEL_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# --------------------------------------------------------------------------- non-digits


def _blobs(n: int, gen: torch.Generator) -> torch.Tensor:
    low = torch.rand(n, 1, 7, 7, generator=gen)
    smooth = F.interpolate(low, size=28, mode="bilinear", align_corners=False)
    return (smooth > torch.rand(n, 1, 1, 1, generator=gen) * 0.4 + 0.4).float()


def _tile_shuffle(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    tiles = x.unfold(2, 7, 7).unfold(3, 7, 7).reshape(len(x), 16, 7, 7)
    order = torch.argsort(torch.rand(len(x), 16, generator=gen), dim=1)
    tiles = tiles[torch.arange(len(x))[:, None], order]
    return tiles.reshape(len(x), 4, 4, 7, 7).permute(0, 1, 3, 2, 4).reshape(len(x), 1, 28, 28)


def make_non_digits(digits: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Images that are not digits, one per input digit, of seven kinds in equal shares."""
    n = len(digits)
    kind = torch.randint(0, 7, (n,), generator=gen)
    out = torch.empty_like(digits)
    partner = torch.randperm(n, generator=gen)
    shuffled = digits.flatten(1)[:, torch.randperm(784, generator=gen)].view_as(digits)
    candidates = [
        torch.rand(n, 1, 28, 28, generator=gen),  # uniform noise
        (torch.rand(n, 1, 28, 28, generator=gen) < torch.rand(n, 1, 1, 1, generator=gen) * 0.3).float(),
        _blobs(n, gen),
        # two different digits drawn over each other; same-class pairs become noise instead
        torch.where((labels != labels[partner])[:, None, None, None],
                    torch.maximum(digits, digits[partner].roll(int(torch.randint(-4, 5, (1,), generator=gen)), 3)),
                    torch.rand(n, 1, 28, 28, generator=gen)),
        shuffled,
        _tile_shuffle(digits, gen),
        1.0 - digits,
    ]
    for k, images in enumerate(candidates):
        out[kind == k] = images[kind == k]
    return out


def blur_and_fade(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Gaussian blur (sigma up to 1.3 px) and fainter strokes (peak 0.6-1.0) on a random 30%.

    Generated digits are often soft and grey (a VAE's always are). Without this the classifier
    learns "crisp = digit" and calls readable but blurry digits "not a digit".
    """
    sigma = float(torch.rand(1, generator=gen)) * 1.2 + 0.1
    taps = torch.arange(-3, 4, dtype=torch.float32)
    kernel = torch.exp(-taps**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    blurred = F.conv2d(x, kernel.view(1, 1, 1, 7), padding=(0, 3))
    blurred = F.conv2d(blurred, kernel.view(1, 1, 7, 1), padding=(3, 0))
    peak = blurred.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    fade = torch.rand(len(x), 1, 1, 1, generator=gen) * 0.4 + 0.6
    soft = blurred / peak * fade
    chosen = torch.rand(len(x), 1, 1, 1, generator=gen) < 0.3
    return torch.where(chosen, soft, x)


def random_shift(x: torch.Tensor, gen: torch.Generator, pixels: float = 2.0) -> torch.Tensor:
    """Translate each image by up to ``pixels`` in x and y (augmentation)."""
    n = len(x)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = (torch.rand(n, 2, generator=gen) * 2 - 1) * pixels * 2 / 28
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


# ------------------------------------------------------------------------------ training


@torch.no_grad()
def predict_logits(model: MnistClassifier, images: torch.Tensor, batch: int = 2000) -> torch.Tensor:
    model.eval()
    return torch.cat([model(chunk) for chunk in images.split(batch)])


def train_classifier(out_dir: str | Path, epochs: int = 8, seed: int = 0, batch_size: int = 128,
                     subset: int | None = None, data: str | None = None, progress: bool = True) -> dict:
    """Train the reference classifier and write its weights and record to ``out_dir``."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    mnist = load_dataset(data)
    x_train, y_train = mnist.x_train, mnist.y_train
    if subset:
        x_train, y_train = x_train[:subset], y_train[:subset]
    images = to_float_images(x_train)
    labels = torch.as_tensor(y_train)
    x_test, y_test = to_float_images(mnist.x_test), torch.as_tensor(mnist.y_test)
    # Shuffle images and labels together: batch over indices.
    batches = InMemoryBatches(torch.arange(len(images)), batch_size, seed=seed)
    model = MnistClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    total = epochs * len(batches)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=total, pct_start=0.15)
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        bar = tqdm(batches.epoch(epoch), total=len(batches), disable=not progress, leave=False,
                   desc=f"classifier epoch {epoch + 1}/{epochs}")
        for idx in bar:
            crisp, y = random_shift(images[idx], gen), labels[idx]
            extra = len(idx) // 4
            fakes = make_non_digits(crisp[:extra], y[:extra], gen)  # from crisp digits, before blurring
            x = blur_and_fade(crisp, gen)
            logits = model(torch.cat([x, fakes]))
            target = torch.cat([y, torch.full((extra,), NOT_A_DIGIT)])
            # No label smoothing: it caps confidence near 0.95 and real digits would fail the 0.9 threshold.
            loss = F.cross_entropy(logits, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    seconds = time.perf_counter() - started
    accuracy = float((predict_logits(model, x_test).argmax(1) == y_test).float().mean())
    noise = torch.rand(2000, 1, 28, 28, generator=gen)
    noise_as_digit = float((predict_logits(model, noise).argmax(1) != NOT_A_DIGIT).float().mean())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = save({k: v.contiguous() for k, v in model.state_dict().items()})
    atomic_write(out_dir / WEIGHTS_FILE, lambda fh: fh.write(weights))
    record = {
        "command": f"mnistgen classifier train --epochs {epochs} --seed {seed}"
                   + (f" --subset {subset}" if subset else ""),
        "test_accuracy": round(accuracy, 5),
        "test_images": len(y_test),
        "uniform_noise_called_a_digit": round(noise_as_digit, 5),
        "epochs": epochs, "seed": seed, "batch_size": batch_size,
        "training_seconds": round(seconds, 1),
        "torch": torch.__version__,
    }
    atomic_write(out_dir / RECORD_FILE, lambda fh: fh.write((json.dumps(record, indent=2) + "\n").encode()))
    return record


# ------------------------------------------------------------------------------- loading


def shipped_weights_dir() -> Path:
    return Path(str(resources.files("mnistgen") / "weights"))


def load_classifier(weights_dir: str | Path | None = None) -> tuple[MnistClassifier, dict]:
    """The shipped classifier (or one from ``weights_dir``), in eval mode, and its record."""
    folder = Path(weights_dir) if weights_dir else shipped_weights_dir()
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise MnistgenError(f"no classifier weights at {path}; run `mnistgen classifier train` to make them")
    model = MnistClassifier()
    try:
        model.load_state_dict(load_file(str(path)))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise MnistgenError(f"{path} is not a usable classifier ({exc.__class__.__name__})") from exc
    record_path = folder / RECORD_FILE
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    return model.eval(), record
