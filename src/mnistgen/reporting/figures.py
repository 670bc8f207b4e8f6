"""The figures of a report: a run's samples, losses, classifier view, latent space and interpolations,
and the training-length study that sets runs of one preset side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import torch

from .. import plots
from ..classifier import NOT_A_DIGIT
from ..data import to_float_images
from ..evaluation import reference_set
from ..images import save_grid
from ..metrics import classify
from ..models import VAE, FlowModel
from ..sampling import great_circle, load_trained_model
from ..training import read_metrics
from .results import METRIC_COLUMNS, ModelResult, format_number


def one_per_class(labels: torch.Tensor, count: int = 10) -> torch.Tensor:
    """Indices of the first item of each class 0..count-1, in class order; classes that never occur are
    filled with the first items not yet picked (they show what the model drew instead)."""
    first = [int(torch.nonzero(labels == c)[0]) for c in range(count) if bool((labels == c).any())]
    rest = [i for i in range(len(labels)) if i not in first]
    return torch.tensor(first + rest[:count - len(first)], dtype=torch.long)


@torch.no_grad()
def model_figures(result: ModelResult, figures: Path, data: str | None, seed: int) -> None:
    model, cfg = load_trained_model(result.run_dir)
    classifier, _, mnist, _ = reference_set(data)
    slug = result.label.replace(" ", "_").replace("(", "").replace(")", "")
    name = result.label
    fig = result.figures
    gen = torch.Generator().manual_seed(seed)
    # A conditional model's grid has one row per digit.
    labels = torch.arange(100) // 10
    samples = model.sample(100, generator=gen, labels=labels if model.num_classes else None)
    fig["samples"] = save_grid(samples, figures / f"{slug}_samples.png", ncols=10)
    records = read_metrics(result.run_dir / "metrics.jsonl")
    fig["losses"] = plots.loss_curves(records, cfg.family, f"{name}: training losses per epoch",
                                      figures / f"{slug}_losses.png")
    if any("eval_fid" in r for r in records):  # trained with eval_every
        fig["quality"] = plots.quality_curves(records, f"{name}: scores of {cfg.train.eval_n:,} samples during "
                                              f"training", figures / f"{slug}_quality.png")
    fig["progress"] = plots.training_progress(result.run_dir / "samples", f"{name}: the same 64 latents during training",
                                              figures / f"{slug}_progress.png")
    test = to_float_images(mnist.x_test)
    test_labels = torch.as_tensor(mnist.y_test, dtype=torch.long)
    # One image per digit in both rows: what a conditional model was asked for, what the classifier
    # calls an unconditional model's sample, the true label of a real one (random test images).
    sample_probs = classify(classifier, samples).probs
    asked = labels if model.num_classes else sample_probs.argmax(1)
    gen_pick = one_per_class(asked)
    shuffled = torch.randperm(len(test), generator=gen)
    real_pick = shuffled[one_per_class(test_labels[shuffled])]
    verb = "asked" if model.num_classes else "called"
    fig["classifier"] = plots.classifier_bars(
        [(samples[gen_pick], sample_probs[gen_pick],
          [f"{verb} {'X' if d == NOT_A_DIGIT else d}" for d in asked[gen_pick].tolist()]),
         (test[real_pick], classify(classifier, test[real_pick]).probs,
          [f"real {d}" for d in test_labels[real_pick].tolist()])],
        f"{name}: generated (top) vs real (bottom)", figures / f"{slug}_classifier.png")
    one_hot = torch.eye(10)
    if isinstance(model, VAE):
        mu, _ = model.encode(test, test_labels)
        # Given the digit, a conditional VAE's latent holds only the style: colours mix by design.
        given = " (each given its digit)" if model.num_classes else ""
        fig["latent"] = plots.latent_scatter(mu, mnist.y_test, f"{name}: latent means of test images{given}",
                                             figures / f"{slug}_latent.png")
        if model.latent_dim == 2 and not model.num_classes:
            axis = torch.linspace(-2.5, 2.5, 15)
            zz = torch.stack(torch.meshgrid(axis, axis.flip(0), indexing="xy"), -1).reshape(-1, 2)
            fig["manifold"] = plots.latent_manifold(model.decode_latents(zz), 2.5, name, figures / f"{slug}_manifold.png")
        ends = {}
        for a, b in ((0, 1), (3, 8), (4, 9)):
            ia, ib = int(np.flatnonzero(mnist.y_test == a)[0]), int(np.flatnonzero(mnist.y_test == b)[0])
            # A conditional VAE blends the two one-hot digits along with the latents.
            ends[f"encoded test {a} -> encoded test {b}"] = (mu[ia], mu[ib], one_hot[a], one_hot[b])
    else:
        noise = torch.randn(6, model.latent_dim, generator=gen)
        # A conditional GAN keeps one digit per row (2, 5, 8) while the noise moves.
        ends = {f"noise vector {2 * i + 1} -> noise vector {2 * i + 2}"
                + (f" (digit {3 * i + 2})" if model.num_classes else ""):
                (noise[2 * i], noise[2 * i + 1], one_hot[3 * i + 2], one_hot[3 * i + 2]) for i in range(3)}
    weights = torch.linspace(0, 1, 10)[:, None]

    def blend(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (1 - weights) * a + weights * b

    # A flow's "latent" is 784-D Gaussian noise: halfway along a straight line it has only 0.71 of
    # a noise's length, and the flow turns such faint noise into faint digits; a great circle
    # (slerp) keeps the length, so every point is noise the flow was trained on.
    path = great_circle if isinstance(model, FlowModel) else blend
    rows = {label: model.decode_latents(path(za, zb), blend(ya, yb) if model.num_classes else None)
            for label, (za, zb, ya, yb) in ends.items()}
    kind = "great circles between noises" if isinstance(model, FlowModel) else "straight lines in latent space"
    fig["interpolation"] = plots.interpolation_strip(rows, f"{name}: {kind}", figures / f"{slug}_interpolation.png")



def training_length_study(results: list[ModelResult], out: Path) -> list[tuple]:
    """Seed 002's question: how do the latent space and the digits change with more epochs?
    (Nothing, not even the heading, when no preset was trained for several lengths.)"""
    blocks: list[tuple] = []
    by_preset: dict[str, list[ModelResult]] = {}
    for r in results:
        by_preset.setdefault(r.cfg.preset, []).append(r)
    for preset, group in by_preset.items():
        if len(group) < 2:
            continue
        # Labels say what was asked and what was done (a time budget may stop a run early).
        labels = [f"{r.label}: {r.summary['epochs_completed']} epochs done" for r in group]
        for key, what in (("samples", "samples"), ("latent", "latent space"), ("manifold", "2-D latent manifold")):
            if all(key in r.figures for r in group):
                pictures = {label: mpimg.imread(r.figures[key]) for label, r in zip(labels, group)}
                path = plots.labelled_grids(pictures, f"{preset}: {what} after more training",
                                            out / "figures" / f"{preset}_study_{key}.png")
                blocks.append(("img", path, f"{preset}: {what} by training length"))
        rows = [[label, *[format_number(r.scores["samples"][key], fmt) for _, key, fmt in METRIC_COLUMNS]]
                for label, r in zip(labels, group)]
        blocks.append(("table", ["training", *[c[0] for c in METRIC_COLUMNS]], rows))
    return [("h2", "Training length")] + blocks if blocks else []

