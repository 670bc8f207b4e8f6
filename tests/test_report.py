"""The report from tiny runs: every section and figure, valid self-contained HTML, plots on any latent size."""

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

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
def built(tmp_path_factory, mnist):
    """The report, with every file renamed into place (atomic writes) and every classifier figure's rows."""
    out = tmp_path_factory.mktemp("report") / "r"
    renamed, bars = set(), []
    replace, classifier_bars = os.replace, plots.classifier_bars

    def spy_replace(src, dst):
        renamed.add(Path(dst).resolve())
        replace(src, dst)

    def spy_bars(rows, *args, **kwargs):
        bars.append(rows)
        return classifier_bars(rows, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "replace", spy_replace)
        mp.setattr(plots, "classifier_bars", spy_bars)
        # mlp-vae-2d-seed002 is unconditional with a 2-D latent; gan is class-conditional (a conditional
        # VAE's figures are drawn in test_report_findings' report).
        code = main(["report", "mlp-vae-2d-seed002", "gan", "--epochs", "1,2", "--minutes", "0.02",
                     "-n", "300", "--out", str(out)])
    assert code == 0
    return SimpleNamespace(out=out, renamed=renamed, bars=bars)


@pytest.fixture(scope="module")
def report(built):
    return built.out


def test_report_has_every_section_and_figure(report):
    md = (report / "report.md").read_text()
    for heading in ("## Comparison", "## Findings", "## Training length", "## mlp-vae-2d-seed002 (1 epochs)",
                    "## gan (1 epochs)", "## gan (2 epochs)"):
        assert heading in md
    assert "real training images (ceiling)" in md
    for caption in ("100 samples", "loss curves", "training progress", "generated vs real digits",
                    "latent space of test images", "2-D latent manifold", "interpolation"):
        assert caption in md, caption
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(linked) >= 7 * 2 + 5 * 2 + 3 and all((report / p).is_file() for p in linked)
    results = json.loads((report / "results.json").read_text())
    assert [r["model"] for r in results][:2] == ["mlp-vae-2d-seed002 (1 epochs)", "mlp-vae-2d-seed002 (2 epochs)"]


def test_html_parses_and_embeds_every_image(report):
    parser = _Collector()
    parser.feed((report / "report.html").read_text())
    md_images = re.findall(r"!\[", (report / "report.md").read_text())
    assert {"html", "table", "figure"} <= set(parser.tags)
    assert len(parser.images) == len(md_images)
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)


def test_every_report_file_is_written_atomically(built):
    """report.md, report.html, results.json, figures and grids all arrive by rename from a temp file."""
    written = {p.resolve() for p in built.out.rglob("*")
               if p.is_file() and "runs" not in p.relative_to(built.out).parts}
    assert {"report.md", "report.html", "results.json"} <= {p.name for p in written}
    assert written - built.renamed == set()
    assert not list(built.out.rglob("*.tmp"))


def test_no_absolute_path_in_the_report(report):
    for name in ("report.md", "report.html", "results.json"):
        text = (report / name).read_text()
        for folder in {str(report), str(report.resolve()), str(Path.cwd())}:
            assert folder not in text, (name, folder)
    results = json.loads((report / "results.json").read_text())
    assert results[0]["run"] == "runs/mlp-vae-2d-seed002-1ep" and (report / results[0]["run"]).is_dir()
    assert results[0]["scores"]["target"].startswith("runs/mlp-vae-2d-seed002-1ep (preset")
    assert "run folder runs/gan-2ep (relative to this report)" in (report / "report.md").read_text()


def test_classifier_figure_shows_one_digit_per_class(built, mnist):
    assert len(built.bars) == 4
    for generated, real in built.bars:
        images, probs, captions = real
        assert captions == [f"real {d}" for d in range(10)] and len(images) == len(probs) == 10
        assert len(set(probs.argmax(1).tolist())) >= 9  # the classifier agrees: ten different digits
        assert len(generated[0]) == 10
    conditional = [generated[2] for generated, _ in built.bars[2:]]  # gan
    assert all(captions == [f"asked {d}" for d in range(10)] for captions in conditional)


def test_report_says_how_acceptable_differs_from_report_000(report):
    md = (report / "report.md").read_text()
    assert "16 generated images with its own 10-class ConvNet and states no threshold" in md
    assert "all 300 samples per model" in md and "11th \"not a digit\" class" in md and "p >= 0.9" in md


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


def test_a_flow_1step_run_counts_the_lines_of_the_meanflow_trainer_that_trained_it(tmp_path):
    import yaml

    from mnistgen.config import load_preset
    from mnistgen.modelinfo import code_a_user_needs
    from mnistgen.models import build_model
    from mnistgen.reporting.results import load_result
    from mnistgen.training.meanflow import MeanFlowTrainer

    cfg = load_preset("meanflow")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg.to_dict(), "run": {}}))
    (run / "model_info.json").write_text(json.dumps({"parameters": 1}))
    files = load_result("meanflow", run, {}, {}, "reused").info["lines_of_code_files"]
    assert "training/meanflow.py" in files  # the MeanFlow loop trains it, not the plain flow trainer alone
    with torch.device("meta"):
        model = build_model(cfg.model, **cfg.model_args)
    assert files == code_a_user_needs(model, MeanFlowTrainer, "meanflow")["lines_of_code_files"]
