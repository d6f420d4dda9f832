"""The one loop's own behaviour, for both tasks: the task protocol, the run folder rules
(a start that failed before training counts as empty), extending a run, the wall time of
resumed runs, Ctrl-C naming the checkpoint, and ``Trainer.step`` being the loop's step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from curatorch.cli import main
from curatorch.train import (
    ContrastiveTask,
    OutputDirError,
    Task,
    Trainer,
    load_config,
    prepare_run_dir,
    train_task,
)
from curatorch.train.multimodal import MultimodalClassifierTask, load_pareto_config
from tests.helpers import interrupt_after, records


@pytest.fixture(params=["contrastive", "multimodal"])
def kind(request) -> str:
    return request.param


def _task(kind: str, tiny_cfg_file: Path, pareto_cfg_file: Path, *overrides: str) -> Task:
    if kind == "contrastive":
        return ContrastiveTask(load_config(tiny_cfg_file, overrides))
    return MultimodalClassifierTask(load_pareto_config(pareto_cfg_file, overrides))


def test_both_tasks_implement_the_protocol(tiny_cfg_file, pareto_cfg_file, kind):
    task = _task(kind, tiny_cfg_file, pareto_cfg_file)
    assert isinstance(task, Task)
    assert task.kind == kind


def test_a_start_that_failed_before_training_counts_as_empty(tmp_path):
    out = tmp_path / "run"
    prepare_run_dir(out, config={"a": {"x": 1}}, resume=False, overwrite=False)
    (out / "reference").mkdir()  # a reference trained before the failure is kept
    # the corrected command line, repeated as it is: no --resume, no --overwrite
    assert prepare_run_dir(out, config={"a": {"x": 2}}, resume=False, overwrite=False) is False
    assert json.loads((out / "config.json").read_text()) == {"a": {"x": 2}}
    assert (out / "reference").is_dir()


def test_a_folder_with_metrics_still_holds_a_run(tmp_path):
    out = tmp_path / "run"
    prepare_run_dir(out, config={"a": {"x": 1}}, resume=False, overwrite=False)
    (out / "metrics.jsonl").write_text('{"step": 0}\n')
    with pytest.raises(OutputDirError, match="already holds a run"):
        prepare_run_dir(out, config={"a": {"x": 2}}, resume=False, overwrite=False)


def test_missing_reference_then_corrected_command_works(tiny_cfg_file, tmp_path, capsys):
    out = tmp_path / "run"
    bad = ["--set", "strategy.name=jest", "--set", f"strategy.reference={tmp_path / 'nope'}"]
    base = ["train", str(tiny_cfg_file), "--out", str(out), "--no-progress"]
    assert main([*base, *bad]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(base) == 0  # the same folder, no flag


def test_extend_a_finished_run(tiny_cfg_file, pareto_cfg_file, tmp_path, kind):
    out = tmp_path / "run"
    first = train_task(_task(kind, tiny_cfg_file, pareto_cfg_file), out, progress=False)
    n = first["step"]
    longer = _task(kind, tiny_cfg_file, pareto_cfg_file, f"train.steps={n + 2}")
    summary = train_task(longer, out, resume=True, progress=False)
    assert summary["step"] == n + 2
    assert records(out)[-1]["step"] == n + 2
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == n + 2
    # the wall time is the run's, over both sessions, not only the extension's
    assert summary["wall_s"] > summary["session_wall_s"]
    assert summary["wall_s"] >= first["wall_s"] * 0.5
    shorter = _task(kind, tiny_cfg_file, pareto_cfg_file, f"train.steps={n}")
    with pytest.raises(OutputDirError, match="extended, not shortened"):
        train_task(shorter, out, resume=True, progress=False)


def test_resuming_a_finished_run_keeps_its_wall_time(tiny_cfg_file, pareto_cfg_file, tmp_path):
    out = tmp_path / "run"
    first = train_task(_task("multimodal", tiny_cfg_file, pareto_cfg_file), out, progress=False)
    again = train_task(
        _task("multimodal", tiny_cfg_file, pareto_cfg_file), out, resume=True, progress=False
    )
    assert again["wall_s"] >= again["session_wall_s"]
    assert abs(again["wall_s"] - first["wall_s"]) < first["wall_s"] + 5
    assert again["test_acc"] == first["test_acc"]


def test_ctrl_c_names_the_checkpoint_and_resume_says_where(
    tiny_cfg_file, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    args = ["train", str(tiny_cfg_file), "--out", str(out), "--no-progress"]
    interrupt_after(monkeypatch, 3)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted at step 3" in err and "step_00000002" in err and "--resume" in err
    monkeypatch.undo()
    assert main([*args, "--resume"]) == 0
    assert "from step 2" in capsys.readouterr().err


def test_trainer_step_is_the_loops_step(tiny_cfg_file, pareto_cfg_file, tmp_path, kind):
    """Six ``Trainer.step`` calls leave the weights that a six-step run checkpoints."""
    steps = [
        "train.steps=6",
        "train.eval_every=6",
        "train.checkpoint_every=6",
        "train.eval_at_start=false",
    ]
    full = tmp_path / "full"
    train_task(_task(kind, tiny_cfg_file, pareto_cfg_file, *steps), full, progress=False)
    trainer = Trainer.start(_task(kind, tiny_cfg_file, pareto_cfg_file, *steps), tmp_path / "s")
    for _ in range(6):
        trainer.step()
    trainer.task.close()
    from curatorch.train import load_checkpoint

    saved = load_checkpoint(full / "checkpoints" / "step_00000006").model
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(saved[name], value), name
