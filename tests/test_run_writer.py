"""RunWriter: every file of a run folder from one object, and nothing at all from the other ranks."""

import json

import pytest
import torch
import yaml

from mnistgen.checkpoint import load_checkpoint
from mnistgen.config import load_preset
from mnistgen.models import build_model
from mnistgen.training.runwriter import GRID_SIZE, RunWriter, read_metrics


def writer(out, main=True, preset="vae"):
    cfg = load_preset(preset)
    model = build_model(cfg.model, **cfg.model_args)
    return RunWriter(out, main, model, seed=0, device=torch.device("cpu")), cfg, model


def write_everything(w, cfg, model):
    w.write_config(cfg, {"seed": 0})
    w.write_model_info({"parameters": 1})
    w.save_checkpoint(lambda: {"config": cfg.to_dict(), "model": model.state_dict()})
    w.save_samples(model, "epoch_0001.png")
    with w.logging():
        for record in ({"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0}, {"epoch": 2.5, "loss": 0.5, "partial": True}):
            w.append_metrics(record)
    w.write_summary({"steps": 3})


def test_rank_zero_writes_every_file(tmp_path):
    w, cfg, model = writer(tmp_path)
    write_everything(w, cfg, model)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["run"] == {"seed": 0}
    assert json.loads((tmp_path / "summary.json").read_text()) == {"steps": 3}
    assert load_checkpoint(w.last_checkpoint)["config"]["preset"] == "vae"
    assert (tmp_path / "samples" / "epoch_0001.png").read_bytes()[:4] == b"\x89PNG"
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 2.5]
    assert list((tmp_path / "tensorboard").iterdir())
    assert w.last_checkpoint_note() == f"last good checkpoint: {w.last_checkpoint}"


def test_the_other_ranks_write_nothing(tmp_path):
    w, cfg, model = writer(tmp_path / "run", main=False)
    state_asked = []
    write_everything(w, cfg, model)
    w.save_checkpoint(lambda: state_asked.append(1) or {})
    w.truncate_metrics(1)
    assert not (tmp_path / "run").exists() and not state_asked
    assert w.last_checkpoint_note() == "no checkpoint yet"


def test_a_resume_drops_the_records_past_its_checkpoint_and_partial_ones(tmp_path):
    w, cfg, model = writer(tmp_path)
    write_everything(w, cfg, model)
    w.truncate_metrics(1)
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"epoch": 1, "loss": 2.0}]


@pytest.mark.parametrize("preset, digits", [("gan", list(range(10)) * 7), ("mlp-vae-2d-seed002", None)])
def test_the_grid_is_the_same_latents_and_every_digit(tmp_path, preset, digits):
    (a, _, _), (b, _, _) = writer(tmp_path, preset=preset), writer(tmp_path, preset=preset)
    assert a.grid_latents.shape[0] == GRID_SIZE and torch.equal(a.grid_latents, b.grid_latents)
    labels = a.grid_labels
    assert (labels is None and digits is None) or labels.tolist() == digits[:GRID_SIZE]
