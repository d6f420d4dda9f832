import itertools
import math

import pytest
import torch

from curatorch.train import EpochSampler, lr_at


def test_warmup_then_cosine() -> None:
    kw = {"base_lr": 1.0, "total_steps": 110, "warmup_steps": 10}
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(109, **kw) == pytest.approx(0.0, abs=1e-12)
    mid = 10 + 99 / 2
    assert lr_at(int(mid), **kw) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * (int(mid) - 10) / 99))
    )
    assert lr_at(109, min_lr_ratio=0.1, **kw) == pytest.approx(0.1)
    values = [lr_at(s, **kw) for s in range(10, 110)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_lr_validation() -> None:
    with pytest.raises(ValueError, match="total_steps"):
        lr_at(0, base_lr=1.0, total_steps=0, warmup_steps=0)


def test_sampler_epochs_are_permutations() -> None:
    s = EpochSampler(10, seed=3)
    first = torch.cat([s.draw(4), s.draw(4), s.draw(2)])
    assert sorted(first.tolist()) == list(range(10))
    crossing = s.draw(15)  # rest of epoch 1 and half of epoch 2
    assert sorted(crossing[:10].tolist()) == list(range(10))
    assert len(set(crossing[10:].tolist())) == 5


def test_sampler_resume_is_exact() -> None:
    a = EpochSampler(37, seed=1)
    a.draw(50)
    state = a.state_dict()
    rest_a = a.draw(100)
    b = EpochSampler(37, seed=1)
    b.load_state_dict(state)
    assert torch.equal(rest_a, b.draw(100))
    with pytest.raises(ValueError, match="pool"):
        EpochSampler(36, seed=1).load_state_dict(state)


def test_sampler_seed_changes_order() -> None:
    assert not torch.equal(EpochSampler(100, seed=0).draw(100), EpochSampler(100, seed=1).draw(100))
