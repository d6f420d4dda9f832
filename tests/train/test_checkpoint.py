import json
from pathlib import Path

import pytest
import torch

from curatorch.train import (
    CheckpointError,
    find_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
)
from curatorch.train.checkpoint import optimizer_from_tensors, optimizer_to_tensors


def _model_and_opt() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).square().sum().backward()
        opt.step()
    return model, opt


def test_round_trip_restores_model_and_optimizer(tmp_path: Path) -> None:
    model, opt = _model_and_opt()
    tensors, meta = optimizer_to_tensors(opt)
    save_checkpoint(
        tmp_path,
        step=3,
        model_state=model.state_dict(),
        trainer_tensors=tensors,
        state={"optimizer": meta, "note": "x"},
    )
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.state["step"] == 3 and ckpt.state["note"] == "x"
    model2, opt2 = _model_and_opt()
    load_model_weights(model2, ckpt.model, ckpt.path)
    optimizer_from_tensors(opt2, ckpt.trainer, ckpt.state["optimizer"])
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    # the next optimizer step is identical
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).square().sum().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_keeps_last_k_and_latest_pointer(tmp_path: Path) -> None:
    model, _opt = _model_and_opt()
    for step in (1, 2, 3):
        save_checkpoint(
            tmp_path,
            step=step,
            model_state=model.state_dict(),
            trainer_tensors={},
            state={},
            keep=2,
        )
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    assert names == ["step_00000002", "step_00000003"]
    assert latest_checkpoint(tmp_path).name == "step_00000003"
    assert find_checkpoint(tmp_path / "checkpoints" / "step_00000002").name == "step_00000002"


def test_incomplete_write_is_ignored(tmp_path: Path) -> None:
    model, _ = _model_and_opt()
    save_checkpoint(tmp_path, step=1, model_state=model.state_dict(), trainer_tensors={}, state={})
    # a crash mid-write leaves a temporary folder and maybe a folder without state.json
    (tmp_path / "checkpoints" / ".step_00000002.abc.tmp").mkdir()
    (tmp_path / "checkpoints" / "step_00000002").mkdir()
    assert latest_checkpoint(tmp_path).name == "step_00000001"
    (tmp_path / "checkpoints" / "latest").unlink()
    assert latest_checkpoint(tmp_path).name == "step_00000001"


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    model, _ = _model_and_opt()
    folder = save_checkpoint(
        tmp_path, step=1, model_state=model.state_dict(), trainer_tensors={}, state={}
    )
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_checkpoint(folder)
    (folder / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"state\.json"):
        load_checkpoint(folder)
    (folder / "state.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(folder)


def test_mismatched_weights_are_named(tmp_path: Path) -> None:
    model = torch.nn.Linear(4, 3)
    with pytest.raises(CheckpointError, match="shape"):
        load_model_weights(model, {"weight": torch.zeros(2, 4), "bias": torch.zeros(3)}, tmp_path)
    with pytest.raises(CheckpointError, match="missing"):
        load_model_weights(model, {"weight": torch.zeros(3, 4)}, tmp_path)
