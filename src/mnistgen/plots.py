"""Every figure of the report, as PNG files. Each function takes data, writes one file, returns its path."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import matplotlib.image as mpimg
import numpy as np
import torch
from matplotlib.figure import Figure

from .fileio import atomic_write
from .images import grid, to_uint8

# Figures are made with matplotlib's Figure class, not pyplot: nothing global changes (a notebook keeps
# its inline backend) and no screen is needed.

# Loss terms worth a curve, per family, in display order (others in metrics.jsonl are ignored).
LOSS_TERMS: dict[str, list[tuple[str, str | None, str]]] = {
    "vae": [("loss", "val_loss", "total (negative ELBO)"), ("recon", "val_recon", "reconstruction (BCE)"),
            ("kl", "val_kl", "KL divergence")],
    "gan": [("d_loss", None, "discriminator / critic"), ("g_loss", None, "generator"),
            ("wasserstein", None, "Wasserstein estimate"), ("gp", None, "gradient penalty")],
    "flow": [("loss", "val_loss", "velocity error (MSE)")],
}


def subplots(*grid: int, figsize: tuple[float, float], layout: Literal["constrained"] | None = None, **kw: Any) -> tuple[Figure, Any]:
    """``pyplot.subplots`` without pyplot: a new Figure and its axes."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*grid, **kw)


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG atomically (a reader never finds half a figure)."""
    return atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=100, bbox_inches="tight"))


def loss_curves(records: list[dict], family: str, title: str, path: str | os.PathLike) -> Path:
    """One panel per loss term against epochs (validation too, for VAEs)."""
    terms = [t for t in LOSS_TERMS[family] if any(t[0] in r for r in records)]
    fig, axes = subplots(1, max(1, len(terms)), figsize=(4.2 * max(1, len(terms)), 3.2), squeeze=False)
    for ax, (key, val_key, label) in zip(axes[0], terms):
        rows = [r for r in records if key in r]
        epochs = [r["epoch"] for r in rows]  # a partial last epoch is already fractional
        ax.plot(epochs, [r[key] for r in rows], marker="o", label="train")
        if val_key and any(val_key in r for r in rows):
            val = [(r["epoch"], r[val_key]) for r in rows if val_key in r]
            ax.plot(*zip(*val), marker="s", label="validation")
            ax.legend()
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def quality_curves(records: list[dict], title: str, path: str | os.PathLike) -> Path:
    """One panel per score measured during training (the ``eval_*`` keys of metrics.jsonl) against epochs."""
    panels = [(key, label) for key, label in QUALITY_PANELS if any(f"eval_{key}" in r for r in records)]
    fig, axes = subplots(1, max(1, len(panels)), figsize=(3.6 * max(1, len(panels)), 3.2), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        points = [(r["epoch"], r[f"eval_{key}"]) for r in records if f"eval_{key}" in r]
        ax.plot(*zip(*points), marker="o")
        if key == "fid":
            ax.set_yscale("log")
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def training_progress(sample_dir: str | os.PathLike, title: str, path: str | os.PathLike, most: int = 5) -> Path:
    """The fixed-noise grids of up to ``most`` epochs, evenly spaced, side by side."""
    files = sorted(Path(sample_dir).glob("epoch_*.png"))
    if len(files) > most:
        files = [files[round(i)] for i in np.linspace(0, len(files) - 1, most)]
    final = Path(sample_dir) / "final.png"
    if final.is_file() and (not files or files[-1].read_bytes() != final.read_bytes()):
        files = files[-(most - 1):] + [final] if len(files) >= most else files + [final]
    fig, axes = subplots(1, max(1, len(files)), figsize=(3.2 * max(1, len(files)), 3.6), squeeze=False)
    for ax, file in zip(axes[0], files):
        ax.imshow(mpimg.imread(file), cmap="gray")
        match = re.search(r"epoch_(\d+)", file.name)
        ax.set_title(f"after epoch {int(match.group(1))}" if match else "end of training")
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


BarRow = tuple[torch.Tensor, torch.Tensor, list[str]]  # images, their class probabilities, their captions


def classifier_bars(rows: list[BarRow], title: str, path: str | os.PathLike) -> Path:
    """Seed 000's figure: per row of images (e.g. generated, then real test digits), each image
    with its caption over the reference classifier's class probabilities.

    Each row is two axes (a strip of images over one grouped bar chart), not two axes per image:
    forty small axes took about 5 s to lay out and save, this takes a fraction of that."""
    group = 12  # 11 bars (0-9, X) and a gap per image
    columns = max(len(images) for images, _, _ in rows)
    fig, axes = subplots(2 * len(rows), 1, figsize=(1.5 * columns, 3.0 * len(rows)), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 1.2] * len(rows)})
    labels = ([str(d) for d in range(10)] + ["X"]) * columns
    for row, (images, probs, captions) in enumerate(rows):
        ax_img, ax_bar = axes[2 * row, 0], axes[2 * row + 1, 0]
        for i, picture in enumerate(to_uint8(images)):
            left = i * group
            ax_img.imshow(picture, cmap="gray", vmin=0, vmax=255, extent=(left + 1.5, left + 8.5, 0, 7))
            ax_img.text(left + 5, 7.6, captions[i], ha="center", fontsize=8)
        ax_img.set_xlim(-1, columns * group - 1)
        ax_img.set_ylim(0, 8.5)
        ax_img.axis("off")
        x = [i * group + k for i in range(len(images)) for k in range(11)]
        colours = (["tab:blue"] * 10 + ["tab:red"]) * len(images)
        ax_bar.bar(x, probs.float().flatten().numpy(), color=colours)
        ax_bar.set_xlim(-1, columns * group - 1)
        ax_bar.set_ylim(0, 1)
        ax_bar.set_xticks(x, labels[:len(x)], fontsize=5)
        ax_bar.tick_params(axis="y", labelsize=6)
    fig.suptitle(f"{title}\nclass probabilities of the reference classifier (X = not a digit)")
    fig.subplots_adjust(left=0.03, right=0.99, top=0.88, bottom=0.05, hspace=0.25)
    return _save(fig, path)


def pca_2d(z: torch.Tensor) -> tuple[torch.Tensor, tuple[float, float]]:
    """Project onto the first two principal components; also return their explained variance shares."""
    centred = z - z.mean(0, keepdim=True)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    share = (s**2 / (s**2).sum()).tolist()
    return centred @ v[:2].T, (share[0], share[1])


def latent_scatter(z: torch.Tensor, labels: np.ndarray, title: str, path: str | os.PathLike) -> Path:
    """Test images' latent means coloured by digit: directly if 2-D, a jittered strip if 1-D, else PCA."""
    z = z.float()
    fig, ax = subplots(figsize=(6.4, 5.4))
    if z.shape[1] == 1:
        xy = torch.cat([z, torch.as_tensor(labels, dtype=torch.float32)[:, None]
                        + torch.rand(len(z), 1, generator=torch.Generator().manual_seed(0)) * 0.6 - 0.3], 1)
        xlabel, ylabel, how = "z", "digit (jittered)", "1-D latent"
    elif z.shape[1] == 2:
        xy, xlabel, ylabel, how = z, "z[0]", "z[1]", "2-D latent, no projection"
    else:
        xy, share = pca_2d(z)
        xlabel, ylabel = f"PC 1 ({share[0]:.0%} of variance)", f"PC 2 ({share[1]:.0%})"
        how = f"PCA projection of the {z.shape[1]}-D latent"
    points = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=3, alpha=0.7, vmin=-0.5, vmax=9.5)
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n{how}, {len(z):,} test images")
    return _save(fig, path)


def latent_manifold(decoded: torch.Tensor, span: float, title: str, path: str | os.PathLike) -> Path:
    """A square grid of images decoded from an evenly spaced 2-D latent grid."""
    side = int(round(len(decoded) ** 0.5))
    fig, ax = subplots(figsize=(7, 7))
    ax.imshow(grid(to_uint8(decoded), ncols=side, pad=0), cmap="gray", extent=(-span, span, -span, span))
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(f"{title}\ndecoded from a {side}x{side} grid of the 2-D latent space")
    return _save(fig, path)


def interpolation_strip(rows: dict[str, torch.Tensor], title: str, path: str | os.PathLike) -> Path:
    """Each row: images along a straight line in latent space, left end to right end."""
    fig, axes = subplots(len(rows), 1, figsize=(11, 1.5 * len(rows) + 0.6), squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows.items()):
        ax.imshow(grid(to_uint8(images), ncols=len(images)), cmap="gray", vmin=0, vmax=255)
        ax.set_title(label, fontsize=9, loc="left")
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def labelled_grids(pictures: dict[str, np.ndarray], title: str, path: str | os.PathLike) -> Path:
    """Several pictures (e.g. PNGs read back with matplotlib) side by side, each with its label."""
    # constrained layout keeps the suptitle clear of the panel titles (tight_layout does not)
    fig, axes = subplots(1, len(pictures), figsize=(5 * len(pictures), 5.6), squeeze=False, layout="constrained")
    for ax, (label, picture) in zip(axes[0], pictures.items()):
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        ax.set_title(label)
        ax.axis("off")
    fig.suptitle(title)
    return _save(fig, path)


# Two rows: how digit-like the samples are, then how close to real handwriting (FID) and how much of
# its variety they cover (recall) without leaving it (precision).
QUALITY_PANELS = (("acceptable", "acceptable (p >= 0.9)"), ("coverage", "coverage"),
                  ("inception_score", "Inception Score"), ("fid", "FID (lower is better)"),
                  ("precision", "precision"), ("recall", "recall"))


def quality_vs_time(curves: dict[str, list[tuple[float, dict]]], ceiling: dict, title: str,
                    path: str | os.PathLike, x_label: str = "training minutes", speed_key: str | None = None) -> Path:
    """One panel per metric against training minutes (log axis), one line per preset;
    the real-data row as a dashed line. ``curves``: preset -> [(minutes, scores), ...].
    Any other positive x works too (e.g. sampling steps, one line per guidance weight): say which in ``x_label``.
    With ``speed_key`` (e.g. digits_per_second), the FID panel writes that value of each point beside it."""
    budgets = sorted({m for points in curves.values() for m, _ in points})
    columns = 3
    fig, axes = subplots(2, columns, figsize=(4.0 * columns, 6.6))
    axes = axes.ravel()
    for ax, (key, label) in zip(axes, QUALITY_PANELS):
        for name, points in curves.items():
            scored = [(m, s[key]) for m, s in points if key in s]  # older result files lack some scores
            ax.plot([m for m, _ in scored], [v for _, v in scored], marker="o", label=name)
            if key == "fid" and speed_key:
                for m, s in points:
                    ax.annotate(f"{s[speed_key]:,.0f}/s", (m, s[key]), textcoords="offset points", xytext=(4, 4),
                                fontsize=7)
        if key in ceiling:
            ax.axhline(ceiling[key], color="gray", linestyle="--", linewidth=1, label="real data")
        ax.set_xscale("log")
        ax.set_xticks(budgets, labels=[f"{m:g}" for m in budgets])
        ax.minorticks_off()
        ax.set_xlabel(x_label)
        ax.set_title(label, fontsize=10)
        if key == "fid":
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
