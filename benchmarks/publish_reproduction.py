"""Copy a `mnistgen reproduce` folder's report into the repository, small enough to commit.

The live folder keeps its run folders (checkpoints: tens of MB) and every figure so that a later
sitting can continue it; the committed copy keeps report.md, results.json, the scores and only the
figures report.md shows, at most 1000 pixels wide in 64 colours (flat plots and grey digits), and a
report.html that shows those files instead of embedding its own copies.

    .venv/bin/python benchmarks/publish_reproduction.py reproductions/all \
        benchmarks/results/reproduce-all-2026-11-25-cpu
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
from pathlib import Path

from PIL import Image

COPIED = ("report.md", "results.json", "reproduction.json")
MAX_WIDTH = 1000  # pixels: wide enough to read every digit of a 10 x 10 grid in a panel of five
COLOURS = 64
EMBEDDED = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def small_png(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if image.width > MAX_WIDTH:
        image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)), Image.Resampling.LANCZOS)
    image = image.quantize(colors=COLOURS)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def publish(source: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "figures").mkdir(parents=True)
    for name in COPIED:
        shutil.copy2(source / name, dest / name)
    shutil.copytree(source / "scores", dest / "scores")
    shown = re.findall(r"\]\((figures/[^)]+\.png)\)", (source / "report.md").read_text())  # in page order
    for figure in set(shown):
        (dest / figure).write_bytes(small_png((source / figure).read_bytes()))
    # The page's embedded images are those figures, in the same order: point at the copies instead.
    names = iter(shown)
    page, count = EMBEDDED.subn(lambda m: next(names), (source / "report.html").read_text())
    if count != len(shown):
        raise SystemExit(f"report.html shows {count} images, report.md {len(shown)}: not the same report")
    (dest / "report.html").write_text(page)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"{dest}: {size / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a folder written by mnistgen reproduce")
    parser.add_argument("dest", type=Path, help="where the committable copy goes (replaced)")
    args = parser.parse_args()
    publish(args.source, args.dest)


if __name__ == "__main__":
    main()
