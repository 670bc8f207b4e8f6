"""The README's picture: 40 digits from each of the three shipped models (vae, gan, flow), side by side.

Run:   .venv/bin/python benchmarks/readme_figure.py [--out docs/digits.png] [--seed 0]
Samples with `mnistgen sample NAME --pretrained` exactly as a user would, so the picture shows what
that command gives; takes a few seconds on a CPU.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from mnistgen.fileio import atomic_write
from mnistgen.images import grid
from mnistgen.plots import subplots

SHIPPED = ("vae", "gan", "flow")
DIGITS_PER_MODEL = 40
COLUMNS = 8


def sample_shipped(name: str, seed: int, folder: Path) -> np.ndarray:
    """uint8 (40, 28, 28) digits drawn by the CLI from the shipped weights ``name``."""
    out = folder / f"{name}.npz"
    subprocess.run([sys.executable, "-m", "mnistgen", "sample", name, "--pretrained", "-n", str(DIGITS_PER_MODEL),
                    "--seed", str(seed), "--out", str(out)], check=True)
    with np.load(out) as archive:
        return archive["images"]


def side_by_side(pictures: dict[str, np.ndarray], path: str) -> None:
    """One row of labelled grids, sized to the grids (a wide strip, no margins to speak of)."""
    fig, axes = subplots(1, len(pictures), figsize=(4 * len(pictures), 2.9), layout="constrained")
    for ax, (label, picture) in zip(axes, pictures.items()):
        ax.imshow(picture, cmap="gray", vmin=0, vmax=255)
        ax.set_title(label)
        ax.axis("off")
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=100))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/digits.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        pictures = {name: grid(sample_shipped(name, args.seed, Path(scratch)), ncols=COLUMNS) for name in SHIPPED}
    side_by_side(pictures, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
