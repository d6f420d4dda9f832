"""The multimodal task with the early-fusion model: group integrators on tokenizers and
the shared trunk, config checks, same seed same result, exact resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from curatorch.pareto import GroupIntegrator
from curatorch.train.config import ConfigError
from curatorch.train.multimodal import (
    EARLY_METHODS,
    MultimodalClassifierTask,
    build_multimodal_splits,
    pareto_config_from_dict,
    train_pareto,
)

SPLITS = build_multimodal_splits(pareto_config_from_dict({}).data)


def early_cfg(method: str = "mmpareto", steps: int = 6, **train):
    return pareto_config_from_dict(
        {
            "model": {"fusion": "early", "patch": 4, "depth": 1, "hidden": 32, "embed_dim": 16},
            "pareto": {"method": method},
            "train": {"steps": steps, "batch_size": 16, "eval_every": steps, "diag_every": 2,
                      "checkpoint_every": 3, "keep_checkpoints": 3, **train},
            "compare": {"methods": [method]},
        }
    )  # fmt: skip


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run / "checkpoints" / "step_00000006" / "model.safetensors")


@pytest.mark.parametrize("method", sorted(EARLY_METHODS))
def test_every_method_trains_the_trunk(method: str, tmp_path: Path) -> None:
    summary = train_pareto(early_cfg(method), tmp_path / "run", splits=SPLITS, progress=False)
    assert summary["step"] == 6
    diags = [
        json.loads(x) for x in (tmp_path / "run" / "diagnostics.jsonl").read_text().splitlines()
    ]
    assert diags and all("cos/trunk" in d and "weight/trunk/gray" in d for d in diags)
    assert "conflict_rate/trunk" in summary and "conflict_rate/colour" in summary
    assert 0.0 <= summary["test_acc"] <= 1.0


def test_groups_give_the_trunk_every_objective() -> None:
    task = MultimodalClassifierTask(early_cfg(), splits=SPLITS)
    task.prepare_data(run=type("R", (), {"dist": None})())  # type: ignore[arg-type]
    model = task.build_model()
    run = type("R", (), {"device": torch.device("cpu")})()
    task.prepare_training(run, model)  # type: ignore[arg-type]
    integ = task.integ
    assert isinstance(integ, GroupIntegrator)
    assert integ.objectives == {
        "gray": ("multimodal", "gray"),
        "colour": ("multimodal", "colour"),
        "trunk": ("multimodal", "gray", "colour"),
    }
    trunk = {id(p) for p in model.shared_parameters()}
    assert trunk == {id(p) for p in integ.params["trunk"]}


def test_same_seed_same_result_and_exact_resume(tmp_path: Path) -> None:
    cfg = early_cfg("pcgrad", steps=6)  # pcgrad draws its orders from the task's generator
    a = train_pareto(cfg, tmp_path / "a", splits=SPLITS, progress=False)
    b = train_pareto(cfg, tmp_path / "b", splits=SPLITS, progress=False)
    assert a["test_acc"] == b["test_acc"] and a["train_loss"] == b["train_loss"]
    train_pareto(cfg, tmp_path / "c", splits=SPLITS, progress=False)
    shutil.rmtree(tmp_path / "c" / "checkpoints" / "step_00000006")  # as if killed at 5
    c = train_pareto(cfg, tmp_path / "c", splits=SPLITS, progress=False, resume=True)
    assert c["test_acc"] == a["test_acc"] and c["train_loss"] == a["train_loss"]
    for k, v in _weights(tmp_path / "a").items():
        assert torch.equal(v, _weights(tmp_path / "c")[k]), k


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"pareto\.method.*ogm_ge.*early"):
        pareto_config_from_dict({"model": {"fusion": "early"}, "pareto": {"method": "ogm_ge"}})
    pareto_config_from_dict({"model": {"fusion": "early"}})  # compare is checked by compare
    with pytest.raises(ConfigError, match=r"model\.encoder applies only"):
        pareto_config_from_dict({"model": {"fusion": "early", "encoder": "conv"}})
    with pytest.raises(ConfigError, match=r"model\.fusion"):
        pareto_config_from_dict({"model": {"fusion": "middle"}})
    with pytest.raises(ConfigError, match="num_heads"):
        pareto_config_from_dict({"model": {"embed_dim": 10, "num_heads": 4, "fusion": "early"}})
    with pytest.raises(ConfigError, match=r"pareto\.vjp = 'batched' applies only"):
        pareto_config_from_dict({"model": {"fusion": "early"}, "pareto": {"vjp": "batched"}})
