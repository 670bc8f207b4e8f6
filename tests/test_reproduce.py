"""``mnistgen reproduce``: one row per system, runs reused or continued (never retrained), the
folder's settings kept, and verdicts that follow the measured numbers."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from mnistgen.checkpoint import load_checkpoint
from mnistgen.claims import CLAIM_KEYS, Claim, SeedClaims, SeedSystem, load_claims
from mnistgen.cli import main
from mnistgen.config import load_preset
from mnistgen.reporting.reproduce import (
    Reproduced,
    Row,
    claims_table,
    final_losses_record,
    judge,
    obtain_system_run,
    parse_seeds,
    size_by_loss_table,
)
from mnistgen.reporting.results import ModelResult
from mnistgen.training import RunOptions


def claims_rows(report_md: str, seed: str) -> list[str]:
    return [line for line in report_md.splitlines() if line.startswith(f"| {seed} |")]


def test_reproduce_002_writes_a_row_per_system_then_reuses_them(tmp_path, tiny_npz, capsys):
    out = tmp_path / "repro"
    common = ["reproduce", "002", "--data", str(tiny_npz), "-n", "20", "--out", str(out), "--no-progress"]
    assert main(common) == 0
    first = json.loads((out / "results.json").read_text())
    assert [r["system"] for r in first] == [s.id for s in load_claims("002").systems]
    assert [r["summary"]["epochs_completed"] for r in first] == [5, 10, 30]
    assert {r["obtained"] for r in first} == {"trained now"}
    report = (out / "report.md").read_text()
    assert len(claims_rows(report, "002")) == 3
    # Its final losses are judged: on 40 images of noise ours are far above the report's.
    assert "final losses: claimed / ours" in report
    assert [r["final_losses"]["claimed"] for r in first] == [s.claims["final_losses"].value
                                                             for s in load_claims("002").systems]
    assert all(set(r["final_losses"]["ours"]) == {"total", "reconstruction", "kl"} for r in first)
    assert {r["verdict"] for r in first} == {"differs"}
    assert all(r["reasons"][0].startswith("final total loss: ours ") for r in first)
    assert "## Training length" in report and "2-D latent manifold" in report
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    checkpoints = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("last.pt")}
    scores = {p: p.stat().st_mtime_ns for p in (out / "scores").glob("*.json")}
    # A second sitting: nothing left to train or to score.
    assert main(common) == 0
    second = json.loads((out / "results.json").read_text())
    assert {r["obtained"] for r in second} == {"reused a finished run"}
    assert [r["scores"] for r in second] == [r["scores"] for r in first]
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("last.pt")} == checkpoints
    assert {p: p.stat().st_mtime_ns for p in (out / "scores").glob("*.json")} == scores
    capsys.readouterr()
    # Another training seed would mix unlike runs in one table: refused, nothing changed.
    assert main(common + ["--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seed 1 differs" in err
    assert json.loads((out / "results.json").read_text()) == second


def test_jobs_trains_the_systems_in_worker_processes_and_says_so(tmp_path, tiny_npz, capsys):
    out = tmp_path / "repro"
    common = ["reproduce", "002", "--data", str(tiny_npz), "-n", "20", "--out", str(out), "--no-progress"]
    assert main(common + ["--jobs", "2"]) == 0
    first = json.loads((out / "results.json").read_text())
    assert [r["summary"]["epochs_completed"] for r in first] == [5, 10, 30]
    assert {r["obtained"] for r in first} == {"trained now"}
    assert all(len(r["scores"]) > 5 for r in first)
    assert "(--jobs 2), so each one's time is longer than it would be alone" in (out / "report.md").read_text()
    assert "3 systems, 2 at a time" in capsys.readouterr().out
    # The folder continues with one job as well: the workers' runs and scores are reused.
    assert main(common) == 0
    assert {r["obtained"] for r in json.loads((out / "results.json").read_text())} == {"reused a finished run"}
    assert "--jobs" not in (out / "report.md").read_text()


def test_sigterm_to_a_jobs_reproduction_stops_its_workers_and_a_rerun_continues(tmp_path, mnist):
    out = tmp_path / "repro"
    args = ["reproduce", "002", "--subset", "3000", "-n", "20", "--jobs", "3", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "mnistgen", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = out / "runs" / "mlp-vae-2d-seed002-30-epochs" / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # to the parent alone, as `kill PID` does
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    state = load_checkpoint(out / "runs" / "mlp-vae-2d-seed002-30-epochs" / "checkpoints" / "last.pt")
    assert 2 <= state["epoch"] < 30 and not state["complete"]
    assert not (out / "report.md").exists()
    assert main(args) == 0
    by_system = {r["system"]: r for r in json.loads((out / "results.json").read_text())}
    assert by_system["mlp-vae-2d-seed002-30-epochs"]["obtained"] == "continued an earlier run"
    assert by_system["mlp-vae-2d-seed002-30-epochs"]["summary"]["epochs_completed"] == 30


def test_a_capped_system_continues_in_a_later_sitting_up_to_its_cap_in_all(tmp_path, tiny_npz):
    system = load_claims("002").systems[0]  # 5 epochs of one step each on 40 images
    run_dir = tmp_path / "run"
    opts = RunOptions(out="", data=str(tiny_npz), progress=False)
    summary, origin = obtain_system_run(system, run_dir, 0.0001, opts, [])  # stops after its first epoch
    assert origin == "trained now" and summary["stop_reason"] == "time budget"
    assert summary["epochs_completed"] < 5
    # The same cap again: it was used up, so the run is left as it is.
    again, origin = obtain_system_run(system, run_dir, 0.0001, opts, [])
    assert origin == "reused a finished run" and again == summary
    # No cap: it goes on from its checkpoint to the recipe's end.
    summary, origin = obtain_system_run(system, run_dir, None, opts, [])
    assert origin == "continued an earlier run" and summary["epochs_completed"] == 5
    assert obtain_system_run(system, run_dir, None, opts, [])[1] == "reused a finished run"


@pytest.mark.parametrize("args, message", [
    (["007"], "SEED '007' is not a seed report"),
    (["002", "--max-minutes", "0"], "--max-minutes"),
    (["002", "-n", "1"], "-n must be at least 2"),
    (["002", "--jobs", "0"], "--jobs"),
])
def test_bad_reproduce_options_are_one_line_errors(args, message, tmp_path, capsys):
    assert main(["reproduce", *args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_reproduce_refuses_a_folder_that_is_not_a_reproduction(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["reproduce", "002", "--out", str(tmp_path)]) == 2
    assert "not a reproduction folder" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_all_means_every_seed_report_once():
    assert parse_seeds(["all"]) == ["000", "001", "002", "003", "004"]
    assert parse_seeds(["003", "000", "003"]) == ["003", "000"]


# ------------------------------------------------------------------------------ verdicts


REPORT_002_5_EPOCHS = {"total": 186.3691, "reconstruction": 180.5884, "kl": 5.7807}
OURS_5_EPOCHS = {"loss": 176.923, "recon": 170.938, "kl": 5.985}  # a full run of mlp-vae-2d-seed002, 5 epochs


def row(tmp_path, *, acceptable=0.9, ten_class=0.95, parameters=1000, claimed_acceptable=0.9, threshold=0.5,
        claimed_parameters=1000, epochs_done=5, part=None, claimed_losses=None, losses=None, lines=None) -> Row:
    """A claims-table row with made-up numbers (the verdict logic, without training); ``losses`` are the
    epoch records our run logged, by epoch."""
    claims = {k: Claim(None, None) for k in CLAIM_KEYS}
    claims["acceptable"] = Claim(claimed_acceptable, "q" if claimed_acceptable is not None else None)
    claims["parameters"] = Claim(claimed_parameters, "q" if claimed_parameters else None, part=part)
    claims["final_losses"] = Claim(claimed_losses, "q" if claimed_losses else None)
    claims["lines_of_code"] = Claim(lines, "q" if lines else None)
    if losses:
        (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"epoch": epoch, **terms}) + "\n"
                                                        for epoch, terms in losses.items()))
    system = SeedSystem("s", "mlp-vae-2d-seed002", {}, "a system", claims)
    seed = SeedClaims("002", "002_x.txt", "t", Claim(None, None), Claim("rule", "q"), threshold, "study", (system,))
    info = {"parameters_keras_style": parameters, "generator_parameters_keras_style": parameters // 2,
            "lines_of_code_physical": 966}
    scores = {"samples": {"acceptable": acceptable, "spread": {"acceptable": 0.005}, "inception_score": None,
                          "fid": None, "ten_class_acceptable": {f"{threshold or 0.5:g}": ten_class}}}
    summary = {"epochs_completed": epochs_done, "training_seconds": 10.0 * epochs_done, "seconds_per_epoch": 10.0,
               "device": "cpu"}
    result = ModelResult("s", tmp_path, load_preset("mlp-vae-2d-seed002"), summary, info, scores)
    r = Row(seed, Reproduced(system, result, recipe_epochs=5, cap_minutes=1.0))
    judge(r)
    return r


def test_a_claim_met_under_the_reports_own_rule_is_reproduced(tmp_path):
    assert row(tmp_path).verdict == "reproduced"


def test_a_lower_acceptable_share_differs_and_says_by_how_much(tmp_path):
    r = row(tmp_path, ten_class=0.70)
    assert r.verdict == "differs"
    assert "acceptable: ours 0.700 with a 10-class softmax at p >= 0.5" in r.reasons[0]
    assert "the report's 0.90, lower" in r.reasons[0]


def test_without_a_stated_threshold_our_rule_is_the_comparison(tmp_path):
    r = row(tmp_path, threshold=None, acceptable=0.5, ten_class=0.99)
    assert r.verdict == "differs" and "the report states no threshold" in r.reasons[0]


def test_a_generator_only_count_is_compared_with_our_generator(tmp_path):
    assert row(tmp_path, parameters=2000, claimed_parameters=1000, part="generator").verdict == "reproduced"
    r = row(tmp_path, parameters=2000, claimed_parameters=1000)
    assert r.verdict == "differs" and "ours 2,000 vs the report's 1,000 (+100%)" in r.reasons[0]


def test_a_capped_system_is_partial_with_its_projected_time(tmp_path):
    r = row(tmp_path, epochs_done=2)
    assert r.verdict == "partial"
    assert r.reasons[0].startswith("2.0 of 5 epochs in 20 s") and "about 50 s on cpu" in r.reasons[0]


def final_loss_row(tmp_path, ours: dict, epochs_done: int = 5) -> Row:
    """Report 002's 5-epoch row: its final losses are the only numbers it states that we measure."""
    return row(tmp_path, claimed_acceptable=None, claimed_parameters=None, claimed_losses=REPORT_002_5_EPOCHS,
               losses={1: {"loss": 250.0, "recon": 240.0, "kl": 10.0}, epochs_done: ours}, epochs_done=epochs_done)


def test_final_losses_lower_than_the_reports_are_reproduced(tmp_path):
    r = final_loss_row(tmp_path, OURS_5_EPOCHS)
    assert r.verdict == "reproduced"  # was "no number to compare" before the losses were judged
    assert r.reasons == ["final kl loss not judged: ours 5.99 after epoch 5 vs the report's 5.7807 (it trades "
                         "against the reconstruction inside the total)"]


def test_final_losses_at_most_5_percent_higher_agree(tmp_path):
    ours = {"loss": 186.3691 * 1.049, "recon": 180.5884 * 1.049, "kl": 9.0}
    assert final_loss_row(tmp_path, ours).verdict == "reproduced"


def test_a_final_loss_more_than_5_percent_higher_differs_and_says_by_how_much(tmp_path):
    r = final_loss_row(tmp_path, {"loss": 197.56, "recon": 170.0, "kl": 27.56})
    assert r.verdict == "differs"
    assert r.reasons[0] == ("final total loss: ours 197.56 after epoch 5 vs the report's 186.369, higher by 6.0% "
                            "(more than 5%)")
    assert not any(reason.startswith("final reconstruction") for reason in r.reasons)  # that one agrees


def test_final_losses_of_a_capped_run_are_shown_not_judged(tmp_path):
    r = final_loss_row(tmp_path, {"loss": 300.0, "recon": 290.0, "kl": 10.0}, epochs_done=2)
    assert r.verdict == "partial" and len(r.reasons) == 1  # only the projected time: an early loss is no verdict


def test_the_claims_table_and_results_set_our_final_losses_beside_the_reports(tmp_path):
    r = final_loss_row(tmp_path, OURS_5_EPOCHS)
    header, [cells] = claims_table([r])
    assert cells[header.index("final losses: claimed / ours")] == \
        "total 186.37 / 176.92; reconstruction 180.59 / 170.94; kl 5.78 / 5.99 (epoch 5)"
    record = final_losses_record(r)
    assert record["epoch"] == 5 and record["claimed"] == REPORT_002_5_EPOCHS
    assert record["ours"] == {"total": 176.923, "reconstruction": 170.938, "kl": 5.985}
    assert record["judged"] == ["total", "reconstruction"] and "5%" in record["rule"]
    # A system whose report states no losses still shows ours.
    other = tmp_path / "other"
    other.mkdir()
    plain = row(other, losses={5: OURS_5_EPOCHS})
    header, [cells] = claims_table([plain])
    assert cells[header.index("final losses: claimed / ours")] == "- / 176.92 (epoch 5)"


def test_lines_of_code_are_shown_with_the_reason_they_are_not_judged(tmp_path):
    r = row(tmp_path, lines=182)
    assert r.verdict == "reproduced"  # the parameters and acceptable share agree; the line count is no verdict
    assert r.reasons == ["lines of code not judged: the report's 182 and our 966 count two implementations' own "
                         "code, not the system (ours holds a shared loop with resume, checkpoints and stops that "
                         "the report's lacks)"]


def test_report_003s_study_sets_generator_size_against_loss(tmp_path):
    presets = ("gan-seed003-default", "gan-seed003-complex", "gan-seed003-default-wasserstein",
               "gan-seed003-complex-wasserstein")
    results = [ModelResult(p, tmp_path, load_preset(p), {"epochs_completed": 1}, {},
                           {"samples": {"acceptable": 0.1 * i, "fid": float(i)}}) for i, p in enumerate(presets)]
    (_, title), (_, header, rows) = size_by_loss_table(results)
    assert header == ["", "loss: bce", "loss: wasserstein"]
    assert [r[0] for r in rows] == ["generator width x1", "generator width x2"]
    assert rows[1][2] == "acceptable 0.300, FID 3.00 (1 epochs)"  # complex generator, Wasserstein
    assert size_by_loss_table(results[:2]) == []  # one loss only: no 2 x 2 study


def test_amp_and_compile_flags_reach_every_systems_stored_config(tmp_path, tiny_npz):
    system = load_claims("002").systems[0]
    opts = RunOptions(out="", data=str(tiny_npz), progress=False)
    obtain_system_run(system, tmp_path / "run", None, opts, ["amp=on"])
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert stored["train"]["amp"] == "on" and stored["train"]["epochs"] == 5


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_device_cuda_without_cuda_is_refused_before_anything_is_made(tmp_path, capsys):
    assert main(["reproduce", "002", "--device", "cuda", "--out", str(tmp_path / "r")]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
