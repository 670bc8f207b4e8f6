"""The report from tiny runs: every section and figure, valid self-contained HTML, plots on any latent size."""

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from mnistgen import plots
from mnistgen.cli import main


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.images = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def report(tmp_path_factory, mnist):
    out = tmp_path_factory.mktemp("report") / "r"
    # mlp-vae-2d-seed002 is unconditional with a 2-D latent; vae and gan are class-conditional.
    code = main(["report", "mlp-vae-2d-seed002", "gan", "vae", "--epochs", "1,2", "--minutes", "0.02",
                 "-n", "300", "--out", str(out)])
    assert code == 0
    return out


def test_report_has_every_section_and_figure(report):
    md = (report / "report.md").read_text()
    for heading in ("## Comparison", "## Findings", "## Training length", "## mlp-vae-2d-seed002 (1 epochs)",
                    "## gan (2 epochs)", "## vae (1 epochs)"):
        assert heading in md
    assert "real training images (ceiling)" in md
    for caption in ("100 samples", "loss curves", "training progress", "generated vs real digits",
                    "latent space of test images", "2-D latent manifold", "interpolation"):
        assert caption in md, caption
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(linked) >= 7 * 2 + 5 * 2 + 6 * 2 + 3 and all((report / p).is_file() for p in linked)
    results = json.loads((report / "results.json").read_text())
    assert [r["model"] for r in results][:2] == ["mlp-vae-2d-seed002 (1 epochs)", "mlp-vae-2d-seed002 (2 epochs)"]


def test_html_parses_and_embeds_every_image(report):
    parser = _Collector()
    parser.feed((report / "report.html").read_text())
    md_images = re.findall(r"!\[", (report / "report.md").read_text())
    assert {"html", "table", "figure"} <= set(parser.tags)
    assert len(parser.images) == len(md_images)
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)


def test_report_never_overwrites(report, capsys):
    assert main(["report", "vae", "--minutes", "0.01", "--out", str(report)]) == 2
    assert "already holds files" in capsys.readouterr().err


def test_report_rejects_bad_input_before_training(tmp_path, capsys):
    assert main(["report", "vae", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "unknown preset" in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert main(["report", "vae", "--epochs", "5,x", "--out", str(tmp_path / "r")]) == 2
    assert "comma-separated" in capsys.readouterr().err


@pytest.mark.parametrize("dim", [1, 2, 64])
def test_latent_scatter_any_dimension(dim, tmp_path):
    z = torch.randn(300, dim)
    labels = np.arange(300) % 10
    path = plots.latent_scatter(z, labels, f"{dim}-D", tmp_path / "scatter.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_loss_curves_with_a_single_partial_epoch(tmp_path):
    records = [{"epoch": 0, "d_loss": 1.0, "g_loss": 2.0, "partial": True}]
    assert plots.loss_curves(records, "gan", "t", tmp_path / "l.png").is_file()


def test_quality_vs_time_plot(tmp_path):
    scores = {"acceptable": 0.5, "coverage": 0.4, "inception_score": 6.0, "fid": 12.0}
    curves = {"vae": [(1, scores), (5, {**scores, "fid": 9.0})], "gan": [(1, scores)]}
    path = plots.quality_vs_time(curves, {**scores, "fid": 0.2}, "test", tmp_path / "q.png")
    assert path.stat().st_size > 1000
