"""The metrics on image sets whose answer is known, at n = 10,000.

Run: .venv/bin/python benchmarks/known_answers.py
Writes benchmarks/results/known-answers-<date>.json and prints a table.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from mnistgen.data import load_dataset
from mnistgen.evaluation import evaluate

N = 10_000


def main() -> None:
    mnist = load_dataset()
    rng = np.random.default_rng(1)
    real = mnist.x_train[rng.permutation(len(mnist.x_train))[:N]]
    sets = {
        "real training digits (another 10k)": real,
        "uniform noise": rng.random((N, 28, 28)).astype(np.float32),
        "only 1s (real ones)": mnist.x_train[mnist.y_train == 1][:N],
        "shuffled pixels of real digits": real.reshape(N, -1)[:, rng.permutation(784)].reshape(N, 28, 28),
        "blends of two real digits": np.maximum(real, real[rng.permutation(N)]),
    }
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, images in sets.items():
            path = Path(tmp) / "images.npz"
            np.savez(path, images=images)
            row = evaluate(path, n=N)["samples"]
            rows[name] = {k: v for k, v in row.items() if k != "class_histogram"}
            print(f"{name:36s} acceptable {row['acceptable']:.3f}  coverage {row['coverage']:.3f}  "
                  f"IS {row['inception_score']:.2f}  FID {row['fid']:.2f}  precision {row['precision']:.3f}  "
                  f"recall {row['recall']:.3f}", flush=True)
    out = Path(__file__).parent / "results" / f"known-answers-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
