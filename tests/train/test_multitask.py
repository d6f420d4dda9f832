"""The multi-task task in the one loop: its terms and diagnostics, the shared encoder's
gradient against the n-objective rule computed from full per-loss gradients (the slow
twin), the heads' summed gradient, determinism, exact resume after an interruption, the
summary's conflict figures and config errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from curatorch.configs import resolve_config
from curatorch.pareto import mmpareto_combine_n
from curatorch.train import Trainer
from curatorch.train.config import ConfigError
from curatorch.train.multitask import (
    MultiTaskTask,
    load_multitask_config,
    multitask_config_from_dict,
    multitask_config_to_dict,
    pair_cosines,
    task_pairs,
    train_multitask,
)
from tests.helpers import interrupt_after

# the shipped config, a few steps of a small model: evaluations every 3 steps, checkpoints
# every 2 (a resume from step 4 falls inside the window of the step-6 evaluation)
TINY = [
    "train.steps=9",
    "train.batch_size=32",
    "train.eval_every=3",
    "train.checkpoint_every=2",
    "train.keep_checkpoints=3",
    "train.diag_every=2",
    "model.hidden=16",
    "model.embed_dim=8",
    "optim.warmup_steps=2",
]
TASKS = ("digit", "parity", "ink")


def _cfg(*overrides: str):
    return load_multitask_config(resolve_config("multitask"), [*TINY, *overrides])


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_terms_diagnostics_cadence_and_evaluation(tmp_path: Path) -> None:
    trainer = Trainer.start(MultiTaskTask(_cfg()), tmp_path / "run")
    task = trainer.task
    terms = task.losses(task.next_batch(0))
    assert list(terms) == list(TASKS) and all(t.ndim == 0 for t in terms.values())
    assert [task.diagnose(s) for s in range(4)] == [False, True, False, True]  # diag_every 2
    diag = task.backward(terms, grad_scale=1.0, diagnose=True)
    assert {"cos/shared", "conflict/shared", "norm_out/shared"} <= set(diag)
    assert {f"cos/shared/{p}" for p in task_pairs(TASKS)} <= set(diag)
    assert {f"weight/shared/{t}" for t in TASKS} | {f"norm/shared/{t}" for t in TASKS} <= set(diag)
    assert pair_cosines(diag, TASKS) == {p: diag[f"cos/shared/{p}"] for p in task_pairs(TASKS)}
    with pytest.raises(ValueError, match="grad_scale"):
        task.backward(task.losses(task.next_batch(1)), grad_scale=2.0, diagnose=False)
    scores = task.evaluate(task.model)
    assert set(scores) == {"test_acc", *(f"test_acc/{t}" for t in TASKS)}
    mean = sum(scores[f"test_acc/{t}"] for t in TASKS) / 3
    assert scores["test_acc"] == pytest.approx(mean, abs=1e-12)


@pytest.mark.parametrize("scale", ["tensor", "encoder"])
def test_shared_encoder_gets_the_n_objective_rule_and_heads_the_summed_gradient(
    tmp_path: Path, scale: str
) -> None:
    """Steps of the task against the slow twin: every loss's full gradient by its own
    ``autograd.grad``, the shared encoder's combined with ``mmpareto_combine_n``, the heads'
    summed; the run must meet steps in conflict (the min-norm path) and steps without."""
    cfg = _cfg("pareto.method=mmpareto", f"pareto.scale={scale}", "train.steps=40")
    trainer = Trainer.start(MultiTaskTask(cfg), tmp_path / "run")
    task, model, opt = trainer.task, trainer.task.model, trainer.optimizer
    shared, heads = model.shared_parameters(), model.head_parameters()
    seen = set()
    for step in range(30):
        opt.zero_grad(set_to_none=True)
        terms = task.losses(task.next_batch(step))
        full = {
            t: torch.autograd.grad(loss, shared + heads, retain_graph=True, allow_unused=True)
            for t, loss in terms.items()
        }
        per_task = [[g for g in full[t][: len(shared)]] for t in TASKS]
        want_shared = mmpareto_combine_n(per_task, 1.5, scale=scale)
        want_heads = [
            sum(full[t][len(shared) + i] for t in TASKS if full[t][len(shared) + i] is not None)
            for i in range(len(heads))
        ]
        seen.add(bool(task.backward(terms, grad_scale=1.0, diagnose=True)["conflict/shared"]))
        for p, want in zip(shared, want_shared, strict=True):
            torch.testing.assert_close(p.grad, want, rtol=1e-5, atol=1e-7)
        for p, want in zip(heads, want_heads, strict=True):
            torch.testing.assert_close(p.grad, want, rtol=1e-6, atol=1e-8)
        opt.step()
        if seen == {True, False}:
            break
    assert seen == {True, False}, f"only conflict={seen} met in {step + 1} steps"


def test_same_seed_same_run_other_seed_another(tmp_path: Path) -> None:
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = _cfg("pareto.method=pcgrad", f"train.seed={seed}", "train.steps=6")
        train_multitask(cfg, tmp_path / name, progress=False)
        runs[name] = (_lines(tmp_path / name / "metrics.jsonl"), tmp_path / name)
    for f in ("metrics.jsonl", "diagnostics.jsonl"):
        assert _lines(tmp_path / "a" / f) == _lines(tmp_path / "b" / f)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "lr"} for r in rs]  # noqa: E731
    assert strip(runs["a"][0]) != strip(runs["c"][0])


@pytest.mark.parametrize("method", ["pcgrad", "mmpareto"])
def test_resume_after_an_interruption_equals_the_uninterrupted_run(
    tmp_path: Path, monkeypatch, method: str
) -> None:
    cfg = _cfg(f"pareto.method={method}")
    full = train_multitask(cfg, tmp_path / "full", progress=False)
    part = tmp_path / "part"
    interrupt_after(monkeypatch, 6)  # after the step-6 evaluation, before its checkpoint
    with pytest.raises(KeyboardInterrupt):
        train_multitask(cfg, part, progress=False)
    monkeypatch.undo()
    assert (part / "checkpoints" / "latest").read_text().strip() == "step_00000004"
    resumed = train_multitask(cfg, part, resume=True, progress=False)
    for f in ("metrics.jsonl", "diagnostics.jsonl"):
        assert _lines(part / f) == _lines(tmp_path / "full" / f)
    for key in ("test_acc", *(f"test_acc/{t}" for t in TASKS), "conflict_rate"):
        assert resumed[key] == full[key]


def test_summary_conflict_figures_for_three_two_and_one_task(tmp_path: Path) -> None:
    three = train_multitask(_cfg("train.steps=4"), tmp_path / "three", progress=False)
    diags = _lines(tmp_path / "three" / "diagnostics.jsonl")
    assert three["tasks"] == list(TASKS)
    assert three["conflict_rate"] == sum(d["conflict/shared"] for d in diags) / len(diags)
    for pair in task_pairs(TASKS):
        cos = [d[f"cos/shared/{pair}"] for d in diags]
        assert three[f"mean_cos/{pair}"] == pytest.approx(sum(cos) / len(cos))
        assert three[f"conflict_rate/{pair}"] == sum(c <= 0 for c in cos) / len(cos)
    two = train_multitask(
        _cfg("train.steps=4", 'data.tasks=["digit", "ink"]'),
        tmp_path / "two",
        progress=False,
    )
    cos = [d["cos/shared"] for d in _lines(tmp_path / "two" / "diagnostics.jsonl")]
    assert two["mean_cos/digit~ink"] == pytest.approx(sum(cos) / len(cos))
    assert set(two) >= {"test_acc/digit", "test_acc/ink"} and "test_acc/parity" not in two
    one = train_multitask(
        _cfg("train.steps=2", 'data.tasks=["ink"]', "pareto.method=uniform"),
        tmp_path / "one",
        progress=False,
    )
    assert one["tasks"] == ["ink"] and one["test_acc"] == one["test_acc/ink"]
    assert not any(k.startswith(("conflict_rate", "mean_cos")) for k in one)


def test_shipped_config_round_trips_and_keeps_the_multimodal_optimizer() -> None:
    cfg = load_multitask_config(resolve_config("multitask"))
    assert multitask_config_from_dict(multitask_config_to_dict(cfg)) == cfg
    assert cfg.optim.name == "sgd" and cfg.optim.grad_clip == 0.0
    assert cfg.data.pixel_noise == 0.5 and cfg.data.task_names == TASKS
    assert cfg.compare.methods == ("uniform", "mgda", "pcgrad", "mmpareto")
    assert cfg.compare.seeds == (0, 1, 2) and cfg.compare.alone == TASKS


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("train.stpes=3", r"unknown config key train\.stpes"),
        ("pareto.method=nash", r"pareto\.method must be one of .*'nash'"),
        ("pareto.solver=newton", r"pareto\.solver must be one of"),
        ("pareto.gamma=0", r"pareto\.gamma must be a positive number"),
        ("data.pixel_noise=-1", r"data\.pixel_noise must be a finite number >= 0"),
        ("data.dataset=mnist", r"data\.dataset must be one of \['noisy_digit_tasks'\]"),
        ('data.tasks=["colour"]', r"data\.tasks must be unique names from"),
        ("model.hidden=0", r"model\.hidden must be >= 1, got 0"),
        ("model.encoder=vit", r"model\.encoder must be one of"),
        ("compare.methods=[]", r"compare\.methods must be non-empty"),
        ('compare.methods=["ogm_ge"]', r"compare\.methods must be .*'ogm_ge'"),
        ("compare.seeds=[1, 1]", r"compare\.seeds must be non-empty and unique"),
        ("train.diag_every=-1", r"train\.diag_every must be >= 0"),
    ],
)
def test_config_errors_name_the_key_and_the_file(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        load_multitask_config(resolve_config("multitask"), [override])
    assert "multitask.toml" in str(err.value)


def test_one_task_alone_loads_from_the_shipped_config() -> None:
    # compare.alone is checked by the comparison, not here: training one task needs no edit
    cfg = load_multitask_config(resolve_config("multitask"), ['data.tasks=["ink"]'])
    assert cfg.data.task_names == ("ink",) and cfg.compare.alone == TASKS
