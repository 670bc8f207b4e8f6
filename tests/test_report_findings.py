"""A report names a winner only where the numbers carry it, and reuses interrupted runs."""

import json
from pathlib import Path

from mnistgen.cli import main
from mnistgen.config import apply_overrides, load_preset
from mnistgen.reporting.findings import findings
from mnistgen.reporting.results import ModelResult
from mnistgen.training import RunOptions, make_trainer

METRICS = ("acceptable", "coverage", "inception_score", "fid", "precision", "recall")


def _result(label: str, value: float | None = 0.5, spread: float = 0.01, seconds: float = 100.0,
            stop: str = "epochs", parameters: int = 1000) -> ModelResult:
    """A result whose every ranked metric is ``value`` +- ``spread``."""
    samples = {key: value for key in METRICS}
    samples.update(spread={} if value is None else {key: spread for key in METRICS},
                   skipped={key: "needs at least 4 images" for key in METRICS} if value is None else {})
    real = {key: 0.9 for key in METRICS}
    summary = {"training_seconds": seconds, "stop_reason": stop}
    return ModelResult(label, Path("runs") / label, None, summary, {"parameters": parameters},
                       {"samples": samples, "real": real})


def _line(lines: list[str], start: str) -> str:
    return next(line for line in lines if line.startswith(start))


def test_a_lead_within_the_spread_is_a_tie():
    lines = findings([_result("a", 0.872, 0.003), _result("b", 0.870, 0.004)])
    assert _line(lines, "Best coverage") == ("Best coverage: tie between a 0.872 ± 0.003, b 0.870 ± 0.004 "
                                             "(gaps within 2 standard deviations of the difference; real data: 0.900).")
    assert "tie between" in _line(lines, "Best FID")  # lower is better: still a tie


def test_a_lead_beyond_the_spread_names_the_winner():
    lines = findings([_result("a", 0.80, 0.004), _result("b", 0.87, 0.004)])
    assert _line(lines, "Best coverage") == ("Best coverage: b 0.870 ± 0.004, ahead of a 0.800 ± 0.004 "
                                             "(real data: 0.900).")
    assert _line(lines, "Best FID").startswith("Best FID: a 0.800")


def test_time_budget_runs_tie_and_small_timing_gaps_tie():
    budget = findings([_result("a", seconds=180.2, stop="time budget"), _result("b", seconds=181, stop="time budget")])
    assert _line(budget, "Fastest") == ("Fastest to train: tie between a 180 s, b 181 s "
                                        "(each stopped on its time budget).")
    close = findings([_result("a", seconds=100), _result("b", seconds=130)])
    assert "tie between" in _line(close, "Fastest") and "1.5x" in _line(close, "Fastest")
    apart = findings([_result("a", seconds=100), _result("b", seconds=30)])
    assert _line(apart, "Fastest") == "Fastest to train: b 30 s, ahead of a 100 s."


def test_metrics_that_could_not_be_computed_are_said_so():
    lines = findings([_result("a", None), _result("b", None)])
    assert _line(lines, "Recall") == "Recall: not computed (needs at least 4 images)."


def test_report_resumes_an_interrupted_run(tmp_path, mnist):
    """A run folder with a checkpoint but no summary.json (killed while training) is trained on, not a crash."""
    run = tmp_path / "run"
    cfg = apply_overrides(load_preset("vae"), ["epochs=1"])
    make_trainer(cfg, RunOptions(out=str(run), subset=256, progress=False)).prepare_new_run()  # stopped at step 0
    assert not (run / "summary.json").exists()
    out = tmp_path / "report"
    # n = 50: too few images for the Inception Score, so the table and findings also show a missing value.
    assert main(["report", str(run), "-n", "50", "--out", str(out)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["stop_reason"] == "epochs"
    md = (out / "report.md").read_text()
    assert "resumed an interrupted run" in md
    assert "Best Inception Score" not in md and "Inception Score: not computed (needs at least 100 images" in md
    assert json.loads((out / "results.json").read_text())[0]["scores"]["samples"]["inception_score"] is None


def test_report_refuses_too_small_n_before_training(tmp_path, capsys):
    assert main(["report", "vae", "-n", "1", "--minutes", "0.01", "--out", str(tmp_path / "r")]) == 2
    assert "-n must be at least 2" in capsys.readouterr().err and not (tmp_path / "r").exists()
