"""The planner's short-run configs: constant learning rate, steps and evaluation cadence
from the sample counts, the strategy of each JEST ratio; too many evaluations refused."""

from __future__ import annotations

import pytest

from curatorch.configs import resolve_config
from curatorch.experiments.plan_runs import MAX_EVALS, short_run_config
from curatorch.train import load_config


def test_short_run_config() -> None:
    cfg = load_config(resolve_config("smoke"))  # batch 128
    iid = short_run_config(cfg, samples=[2560, 5120, 15360], filter_ratio=0.0, reference="r")
    assert (iid.train.steps, iid.train.eval_every, iid.train.checkpoint_every) == (120, 20, 120)
    assert iid.optim.min_lr_ratio == 1.0 and not iid.train.eval_at_start
    assert iid.strategy.name == "iid" and iid.train.seed == cfg.train.seed
    jest = short_run_config(cfg, samples=[1000], filter_ratio=0.8, reference="ref", seed=7)
    assert jest.train.steps == 8 and jest.train.eval_every == 8  # ceil(1000 / 128)
    assert (jest.strategy.name, jest.strategy.filter_ratio, jest.strategy.reference) == (
        "jest",
        0.8,
        "ref",
    )
    assert jest.train.seed == 7
    with pytest.raises(ValueError, match=f"at most {MAX_EVALS}"):
        short_run_config(cfg, samples=[128, 128 * 65], filter_ratio=0.0, reference="")


def test_fit_warnings() -> None:
    import types

    from curatorch.experiments.plan_runs import fit_warnings
    from curatorch.scaling import PoolParams

    names = ("top0to50p", "top50to100p")
    good = PoolParams(id="g", names=names, a=(40.0,) * 2, b=(-0.3, -0.1), tau=(1.0, 2.0), d=0.0)
    flat = PoolParams(id="f", names=names, a=(1e6,) * 2, b=(-0.1, -0.099), tau=(1.0, 2.0), d=0.6)
    assert fit_warnings(types.SimpleNamespace(params=good)) == []
    warned = fit_warnings(types.SimpleNamespace(params=flat))
    assert len(warned) == 2 and "edge of the grid" in warned[0] and "within 1.0%" in warned[1]
