"""Direct unit tests of the two tasks, the selector and the reference sources, outside a
full training run (each set up by ``Trainer.start``, the loop's own set-up)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from curatorch.models import two_tower_forward_flops
from curatorch.train import ContrastiveTask, Trainer, load_config
from curatorch.train.config import ConfigError
from curatorch.train.contrastive import build_selector, open_reference
from curatorch.train.multimodal import MultimodalClassifierTask, load_pareto_config
from curatorch.train.reference import CachedReference, OnlineReference, load_reference
from curatorch.train.strategy import Candidates

JEST = [
    "strategy.name=jest",
    "strategy.chunks=4",
    "strategy.reference=curated",
    "strategy.reference_steps=4",
]


@pytest.fixture(scope="module")
def jest_trainer(tmp_path_factory):
    from tests.helpers import TINY

    tmp = tmp_path_factory.mktemp("jest-task")
    (tmp / "tiny.toml").write_text(TINY)
    cfg = load_config(tmp / "tiny.toml", JEST)
    trainer = Trainer.start(ContrastiveTask(cfg), tmp / "run")
    yield trainer
    trainer.task.close()


def test_contrastive_terms_counters_and_batch(jest_trainer):
    task = jest_trainer.task
    batch = task.next_batch(0)
    b = task.cfg.train.batch_size
    assert batch.images.shape[0] == b and batch.tokens.shape[0] == b
    terms = task.losses(batch)
    assert list(terms) == ["sigmoid"] and terms["sigmoid"].ndim == 0
    counters = task.step_counters(batch)
    patch = min(task.model_cfg.image.patch_sizes)
    assert counters["train"] == 3 * two_tower_forward_flops(task.model_cfg, patch) * b
    super_batch = round(b / (1 - task.cfg.strategy.filter_ratio))
    assert counters["learner_scoring"] == two_tower_forward_flops(task.model_cfg, patch) * (
        super_batch
    )
    assert counters["reference_scoring"] == 0  # a cache: no forward pass
    assert task.setup_counters()["reference_scoring"] > 0  # embedding the pool, once


def test_flexi_jest_counts_half_the_batch_at_each_patch_size(tiny_cfg_file, tmp_path):
    cfg = load_config(tiny_cfg_file, [*JEST, "strategy.name=flexi-jest"])
    trainer = Trainer.start(ContrastiveTask(cfg), tmp_path / "run")
    task = trainer.task
    fine, coarse = min(task.model_cfg.image.patch_sizes), max(task.model_cfg.image.patch_sizes)
    f = lambda p: two_tower_forward_flops(task.model_cfg, p)  # noqa: E731
    batch = task.next_batch(0)
    assert task.step_counters(batch)["train"] == 3 * (f(fine) * 16 + f(coarse) * 16)
    assert task.step_counters(batch)["learner_scoring"] == f(coarse) * 160  # scored coarse
    task.close()


def test_selector_picks_b_distinct_candidates_and_repeats_with_the_seed(jest_trainer):
    task = jest_trainer.task
    ref = open_reference(
        dataclasses.replace(
            task.cfg,
            strategy=dataclasses.replace(
                task.cfg.strategy, reference=str(jest_trainer.out / "reference-cache")
            ),
        ),
        pool=task.pool,
        shards=[],
        device=torch.device("cpu"),
    )
    assert isinstance(ref, CachedReference)
    selector = build_selector(task.cfg, task.learner, reference=ref)
    pool = task.pool
    idx = torch.arange(selector.super_batch)
    cands = Candidates(pool.images[idx], pool.tokens[idx], ids=pool.ids[idx])
    picks = [
        selector.select(
            model=task.model,
            candidates=cands,
            generator=torch.Generator().manual_seed(3),
            device=torch.device("cpu"),
        ).index
        for _ in range(2)
    ]
    assert torch.equal(picks[0], picks[1])
    assert len(set(picks[0].tolist())) == selector.batch_size == 32
    assert int(picks[0].min()) >= 0 and int(picks[0].max()) < selector.super_batch


def test_reference_sources(jest_trainer):
    task = jest_trainer.task
    cache = load_reference(
        jest_trainer.out / "reference-cache", data=task.cfg.data, pool_name="raw", pool=task.pool
    )
    ids = task.pool.ids[:5]
    emb = cache.embeddings_for(
        Candidates(task.pool.images[:5], task.pool.tokens[:5], ids=ids), torch.device("cpu")
    )
    img, txt = cache.cache.lookup(ids)
    assert torch.equal(emb.image, img) and torch.equal(emb.text, txt)
    assert cache.flops(100) == 0
    online = load_reference(
        jest_trainer.out / "reference", data=task.cfg.data, pool_name="raw", pool=task.pool
    )
    assert isinstance(online, OnlineReference)
    assert online.flops(7) == 7 * online.forward_flops > 0
    other = dataclasses.replace(task.cfg.data, seed=1)
    with pytest.raises(ValueError, match="stale"):
        load_reference(
            jest_trainer.out / "reference-cache", data=other, pool_name="raw", pool=task.pool
        )
    with pytest.raises(ValueError, match=r"not a shard cache|id-keyed"):
        open_reference(
            dataclasses.replace(
                task.cfg,
                strategy=dataclasses.replace(
                    task.cfg.strategy, reference=str(jest_trainer.out / "reference-cache")
                ),
            ),
            pool=None,
            shards=["x-000000.tar"],
            device=torch.device("cpu"),
        )


def test_multimodal_terms_diagnostics_and_cadence(pareto_cfg_file, tmp_path):
    cfg = load_pareto_config(pareto_cfg_file)
    trainer = Trainer.start(MultimodalClassifierTask(cfg), tmp_path / "run")
    task = trainer.task
    terms = task.losses(task.next_batch(0))
    assert list(terms) == ["multimodal", "gray", "colour"]
    assert [task.diagnose(s) for s in range(4)] == [False, True, False, True]  # diag_every 2
    diag = task.backward(terms, grad_scale=1.0, diagnose=True)
    assert {"cos/gray", "cos/colour"} <= set(diag)
    with pytest.raises(ValueError, match="grad_scale"):
        task.backward(task.losses(task.next_batch(1)), grad_scale=2.0, diagnose=False)
    assert task.evaluate(task.model).keys() >= {"test_acc", "test_acc/gray", "test_acc/colour"}


def test_multimodal_schema_defaults_differ_from_the_contrastive_ones(pareto_cfg_file):
    cfg = load_pareto_config(pareto_cfg_file)
    assert cfg.optim.name == "sgd" and cfg.optim.grad_clip == 0.0
    assert cfg.train.eval_at_start is False and cfg.train.diag_every == 2
    with pytest.raises(ConfigError, match=r"train\.diag_every"):
        load_pareto_config(pareto_cfg_file, ["train.diag_every=-1"])
    with pytest.raises(ConfigError, match=r"optim\.name"):
        load_pareto_config(pareto_cfg_file, ["optim.name=lion"])


def test_a_modality_named_multimodal_is_refused(tmp_path: Path):
    from curatorch.data import MultimodalDataset, MultimodalSplits

    x = torch.zeros(8, 4)
    data = MultimodalDataset(
        inputs={"multimodal": x, "b": x}, labels=torch.arange(8) % 2, num_classes=2
    )
    splits = MultimodalSplits(train=data, test=data)
    task = MultimodalClassifierTask(load_pareto_config(Path("configs/pareto.toml")), splits=splits)
    with pytest.raises(ConfigError, match="multimodal"):
        Trainer.start(task, tmp_path / "run")
