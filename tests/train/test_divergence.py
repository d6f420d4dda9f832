"""Divergence: a NaN/inf loss or gradient stops the run naming the step and the last good
checkpoint, or (train.on_nonfinite = "skip") skips that update; no NaN reaches a checkpoint.
The policy is the one loop's: the same for the contrastive and the multimodal task."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import curatorch.train.contrastive as contrastive
from curatorch.cli import main
from curatorch.train import load_config, train
from curatorch.train.checkpoint import latest_checkpoint, load_checkpoint
from curatorch.train.loop import TrainingError
from tests.helpers import TINY


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    f = tmp_path / "tiny.toml"
    f.write_text(TINY)
    return f


def _poison_loss(monkeypatch, *, at_calls: set[int], value: float) -> None:
    """Make the training loss non-finite on the given (1-based) training steps."""
    real = contrastive.sigmoid_contrastive_loss_sharded
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * value if calls["n"] in at_calls else loss

    monkeypatch.setattr(contrastive, "sigmoid_contrastive_loss_sharded", poisoned)


def _assert_checkpoints_finite(run: Path) -> None:
    for folder in sorted((run / "checkpoints").glob("step_*")):
        ckpt = load_checkpoint(folder)
        for name, t in ckpt.model.items():
            assert torch.isfinite(t).all(), f"{folder.name}: {name} is not finite"


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nonfinite_loss_stops_naming_step_and_checkpoint(cfg_file, tmp_path, monkeypatch, value):
    _poison_loss(monkeypatch, at_calls={5}, value=value)
    run = tmp_path / "run"
    with pytest.raises(TrainingError) as err:
        train(load_config(cfg_file), run, progress=False)
    msg = str(err.value)
    assert "step 5" in msg and "loss" in msg
    assert "step_00000004" in msg  # checkpoint_every = 2: the last good one
    assert latest_checkpoint(run).name == "step_00000004"
    _assert_checkpoints_finite(run)


def test_nonfinite_loss_cli_exit_code_and_message(cfg_file, tmp_path, monkeypatch, capsys):
    _poison_loss(monkeypatch, at_calls={3}, value=float("nan"))
    code = main(["train", str(cfg_file), "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 1
    assert "step 3" in capsys.readouterr().err


def test_nonfinite_gradient_stops(cfg_file, tmp_path, monkeypatch):
    real_build = contrastive.build_model
    calls = {"n": 0}

    def build(cfg):
        model = real_build(cfg)

        def hook(grad):
            calls["n"] += 1
            return grad * float("nan") if calls["n"] == 2 else grad

        model.logit_bias.register_hook(hook)
        return model

    monkeypatch.setattr(contrastive, "build_model", build)
    with pytest.raises(TrainingError, match=r"non-finite gradient .* at step 2"):
        train(load_config(cfg_file), tmp_path / "run", progress=False)


def test_skip_mode_skips_the_update_and_counts_it(cfg_file, tmp_path, monkeypatch):
    _poison_loss(monkeypatch, at_calls={3, 4}, value=float("nan"))
    run = tmp_path / "run"
    cfg = load_config(cfg_file, ["train.on_nonfinite=skip"])
    summary = train(cfg, run, progress=False)
    assert summary["step"] == 6
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["skipped_steps"] == 2
    assert all(r["train_loss"] is None or math.isfinite(r["train_loss"]) for r in records)
    _assert_checkpoints_finite(run)


def test_skip_mode_leaves_weights_unchanged_on_the_skipped_step(cfg_file, tmp_path, monkeypatch):
    # every step poisoned: no update ever happens, the weights stay at initialisation
    _poison_loss(monkeypatch, at_calls=set(range(1, 100)), value=float("nan"))
    run = tmp_path / "run"
    cfg = load_config(
        cfg_file, ["train.on_nonfinite=skip", "train.steps=2", "train.checkpoint_every=1"]
    )
    train(cfg, run, progress=False)
    first = load_checkpoint(run / "checkpoints" / "step_00000001").model
    second = load_checkpoint(run / "checkpoints" / "step_00000002").model
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_on_nonfinite_is_validated(cfg_file):
    from curatorch.train.config import ConfigError

    with pytest.raises(ConfigError, match=r"train\.on_nonfinite"):
        load_config(cfg_file, ["train.on_nonfinite=ignore"])


def _pareto_cfg(*overrides: str):
    from curatorch.train.multimodal import load_pareto_config

    root = Path(__file__).resolve().parents[2]
    base = ["train.steps=6", "train.eval_every=3", "train.checkpoint_every=2", "train.threads=1"]
    return load_pareto_config(root / "configs" / "pareto.toml", [*base, *overrides])


def _poison_multimodal(monkeypatch, *, at_calls: set[int]) -> None:
    from curatorch.train.multimodal import MultimodalClassifierTask

    real = MultimodalClassifierTask.losses
    calls = {"n": 0}

    def poisoned(self, batch):
        calls["n"] += 1
        terms = real(self, batch)
        if calls["n"] in at_calls:
            terms["multimodal"] = terms["multimodal"] * float("nan")
        return terms

    monkeypatch.setattr(MultimodalClassifierTask, "losses", poisoned)


def test_multimodal_nonfinite_loss_stops_naming_the_checkpoint(tmp_path, monkeypatch):
    from curatorch.train.multimodal import train_pareto

    _poison_multimodal(monkeypatch, at_calls={5})
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"non-finite loss .* step 5 .*step_00000004"):
        train_pareto(_pareto_cfg(), run, progress=False)
    _assert_checkpoints_finite(run)


def test_multimodal_skip_mode_counts_skipped_steps(tmp_path, monkeypatch):
    from curatorch.train.multimodal import train_pareto

    _poison_multimodal(monkeypatch, at_calls={2})
    summary = train_pareto(_pareto_cfg("train.on_nonfinite=skip"), tmp_path / "run", progress=False)
    assert summary["step"] == 6 and summary["skipped_steps"] == 1
    assert math.isfinite(summary["train_loss"])
