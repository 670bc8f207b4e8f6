"""--eval-every: sample quality scored during training, logged per epoch, a best.pt by FID, exact resume."""

import json

import pytest
import torch
import yaml

from mnistgen.checkpoint import load_checkpoint
from mnistgen.cli import main
from mnistgen.config import apply_overrides, load_preset
from mnistgen.training.stopping import KILL_ENV
from test_training import cli, tiny_run

EVAL = ("--eval-every", "1", "--eval-n", "100", "--keep-best", "fid")
SCORES = ("eval_fid", "eval_acceptable", "eval_precision", "eval_recall", "eval_seconds")
NOT_REPEATABLE = ("seconds", "eval_seconds")  # wall-clock times


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def repeatable(rows, drop=NOT_REPEATABLE):
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key, tensor in a.items():
        assert torch.equal(tensor, b[key]), key


@pytest.fixture(scope="module")
def evaluated_gan(tmp_path_factory, mnist):
    """2 epochs of 8 steps, scored after each; checkpoints at steps 3, 6, 8, 9, ..."""
    out = tmp_path_factory.mktemp("quality") / "run"
    assert main(tiny_run(out, "gan", *EVAL)) == 0
    return out


def test_every_epoch_record_holds_the_scores_and_the_config_says_so(evaluated_gan):
    rows = records(evaluated_gan)
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert set(SCORES) <= set(r) and r["eval_fid"] > 0 and 0 <= r["eval_acceptable"] <= 1
    train = yaml.safe_load((evaluated_gan / "config.yaml").read_text())["train"]
    assert (train["eval_every"], train["eval_n"], train["keep_best"]) == (1, 100, "fid")


def test_the_scores_go_to_tensorboard(evaluated_gan):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(evaluated_gan / "tensorboard"))
    events.Reload()
    fid = events.Scalars("eval_fid")
    assert [e.step for e in fid] == [1, 2]
    assert [e.value for e in fid] == pytest.approx([r["eval_fid"] for r in records(evaluated_gan)])


def test_the_scores_are_what_evaluate_says_of_the_checkpoint(evaluated_gan):
    from mnistgen.evaluation import evaluate

    result = evaluate(evaluated_gan, n=100)["samples"]  # last.pt: the end of epoch 2
    last = records(evaluated_gan)[-1]
    for key in ("fid", "acceptable", "precision", "recall"):
        assert last[f"eval_{key}"] == pytest.approx(result[key], rel=1e-6), key


def test_best_pt_is_the_epoch_of_the_lowest_fid(evaluated_gan):
    rows = records(evaluated_gan)
    best_row = min(rows, key=lambda r: r["eval_fid"])
    best = load_checkpoint(evaluated_gan / "checkpoints" / "best.pt")
    assert (best["epoch"], best["best"], best["best_of"]) == (best_row["epoch"], best_row["eval_fid"], "fid")


def test_scoring_leaves_the_training_unchanged(evaluated_gan, tmp_path):
    plain = tmp_path / "plain"
    assert main(tiny_run(plain, "gan")) == 0
    assert repeatable(records(plain)) == repeatable(records(evaluated_gan), NOT_REPEATABLE + SCORES)
    assert_same_weights(load_checkpoint(plain / "checkpoints" / "last.pt")["model"],
                        load_checkpoint(evaluated_gan / "checkpoints" / "last.pt")["model"])
    assert not (plain / "checkpoints" / "best.pt").exists()  # a GAN has no val_loss, the default keep_best


def test_resume_after_sigkill_with_scoring_matches_the_uninterrupted_run(evaluated_gan, tmp_path):
    killed = tmp_path / "killed"
    assert cli(tiny_run(killed, "gan", *EVAL), {KILL_ENV: "11"}).returncode == -9  # in epoch 2, after a score
    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    assert repeatable(records(killed)) == repeatable(records(evaluated_gan))
    for name in ("last.pt", "best.pt"):
        a, b = (load_checkpoint(run / "checkpoints" / name) for run in (evaluated_gan, killed))
        assert (a["global_step"], a["best"]) == (b["global_step"], b["best"])
        assert_same_weights(a["model"], b["model"])


def test_only_the_epochs_due_are_scored_and_a_vae_keeps_its_best_by_validation_loss(tmp_path, mnist):
    out = tmp_path / "run"
    assert main(tiny_run(out, "vae", "--epochs", "3", "--eval-every", "2", "--eval-n", "50")) == 0
    rows = records(out)
    assert ["eval_fid" in r for r in rows] == [False, True, False]
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["best_of"] == "val_loss" and best["best"] == min(r["val_loss"] for r in rows)


def test_keep_best_none_keeps_no_best_checkpoint(tmp_path, mnist):
    out = tmp_path / "run"
    assert main(tiny_run(out, "vae", "--epochs", "1", "--keep-best", "none")) == 0
    assert not (out / "checkpoints" / "best.pt").exists()


def test_a_resume_may_turn_scoring_on(tmp_path, mnist):
    out = tmp_path / "run"
    assert main(tiny_run(out, "vae", "--epochs", "1")) == 0
    assert main(["train", "--resume", str(out), "--epochs", "2", "--eval-every", "1", "--eval-n", "50",
                 "--keep-best", "fid", "--no-progress"]) == 0
    assert ["eval_fid" in r for r in records(out)] == [False, True]
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["eval_every"] == 1
    best = load_checkpoint(out / "checkpoints" / "best.pt")  # the val_loss best of epoch 1 is no bar to FID
    assert (best["epoch"], best["best_of"]) == (2, "fid")


@pytest.mark.parametrize("args, message", [
    (["--eval-every", "-1"], "argument --eval-every: must be a whole number >= 0, not '-1'"),
    (["--eval-every", "two"], "argument --eval-every: must be a whole number >= 0, not 'two'"),
    (["--eval-n", "1"], "argument --eval-n: must be a whole number in [2, 100000], not '1'"),
    (["--keep-best", "loss"], "argument --keep-best: invalid choice: 'loss'"),
    (["--set", "eval_n=0"], "--set eval_n=0: eval_n must be a whole number in [2, 100000]"),
    (["--set", "keep_best=lowest"], "keep_best must be one of val_loss, fid, none"),
    (["--keep-best", "fid"], "keep_best fid needs eval_every > 0 (--eval-every N)"),
    (["--keep-best", "fid", "--set", "eval_every=0"], "keep_best fid needs eval_every > 0"),
])
def test_bad_values_are_one_line_errors_and_create_no_folder(args, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "gan", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_a_resume_that_would_lose_its_fid_is_refused_and_changes_nothing(evaluated_gan, capsys):
    before = {p: p.read_bytes() for p in evaluated_gan.rglob("*") if p.is_file()}
    assert main(["train", "--resume", str(evaluated_gan), "--epochs", "3", "--eval-every", "0"]) == 2
    assert "keep_best fid needs eval_every > 0" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in evaluated_gan.rglob("*") if p.is_file()} == before


def test_a_failed_scoring_keeps_the_last_good_checkpoint_and_resumes_exactly(evaluated_gan, tmp_path, monkeypatch,
                                                                              capsys):
    from mnistgen.training.quality import QualityProbe

    real_measure = QualityProbe.measure

    def fails_in_epoch_2(self, model):
        if self.calls == 1:
            raise MemoryError("out of memory while sampling")
        self.calls += 1
        return real_measure(self, model)

    monkeypatch.setattr(QualityProbe, "calls", 0, raising=False)
    monkeypatch.setattr(QualityProbe, "measure", fails_in_epoch_2)
    out = tmp_path / "run"
    assert main(tiny_run(out, "gan", *EVAL)) == 1
    err = capsys.readouterr().err
    assert "MemoryError: out of memory while sampling" in err and "not saved" in err and "--resume" in err
    assert load_checkpoint(out / "checkpoints" / "last.pt")["global_step"] == 15  # checkpoint_every 3
    assert [r["epoch"] for r in records(out)] == [1]
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert repeatable(records(out)) == repeatable(records(evaluated_gan))


def test_config_rule_of_the_settings():
    cfg = apply_overrides(load_preset("gan"), ["eval_every=5", "keep_best=fid"])
    assert (cfg.train.eval_every, cfg.train.eval_n, cfg.train.keep_best) == (5, 1000, "fid")
    assert load_preset("vae").train.keep_best == "val_loss"


def test_quality_curves_draw_the_scores_that_were_measured(tmp_path):
    from mnistgen import plots

    rows = [{"epoch": 1, "loss": 3.0}, {"epoch": 2, "eval_fid": 9.0, "eval_recall": 0.4},
            {"epoch": 4, "eval_fid": 4.0, "eval_recall": 0.5}, {"epoch": 4.5, "loss": 1.0, "partial": True}]
    path = plots.quality_curves(rows, "vae", tmp_path / "q.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_a_report_draws_the_quality_curves_beside_the_losses(evaluated_gan, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(evaluated_gan), "-n", "100", "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    losses, quality = md.index("loss curves"), md.index("sample quality during training")
    assert losses < quality and len(list((out / "figures").glob("*_quality.png"))) == 1
