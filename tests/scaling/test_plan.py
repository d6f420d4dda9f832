from __future__ import annotations

import numpy as np
import pytest

from curatorch.scaling import (
    PoolParams,
    bucket_interval,
    combined_error,
    disjoint_buckets,
    find_params,
    plan_filters,
)
from curatorch.scaling.shipped import SHIPPED_DIR
from tests.scaling.helpers import REFERENCE_UTILITY

PUBLISHED = str(SHIPPED_DIR / "published.jsonl")  # the authors' values, shipped
NAMES = [
    "tmars_top0to10p",
    "tmars_top10to20p",
    "tmars_top20to30p",
    "tmars_top30to40p",
    "tmars_top0to40p_random25p",
]


def test_bucket_interval_and_disjoint():
    assert bucket_interval("tmars_top10to20p") == (10.0, 20.0)
    assert bucket_interval("tmars_top0to40p_random25p") == (0.0, 40.0)
    assert bucket_interval("random") is None
    assert disjoint_buckets(NAMES) == NAMES[:4]
    assert disjoint_buckets(["x", "y"]) == ["x", "y"]


def test_published_plan_ranks_by_b_and_picks_best():
    params = find_params(PUBLISHED, "tmars_imagenet1k_utility")
    plan = plan_filters(
        params,
        bucket_size=12.8e6,
        budgets=[32e6, 64e6, 128e6, 640e6],
        budget_labels=["32M", "64M", "128M", "640M"],
    )
    assert plan.labels == ("top10", "top20", "top30", "top40")
    assert plan.pools[1] == ("tmars_top0to10p", "tmars_top10to20p")
    acc = plan.accuracy_percent()
    for j, b in enumerate(["32M", "64M", "128M", "640M"]):
        for c, lbl in enumerate(plan.labels):
            assert abs(acc[b][lbl] - REFERENCE_UTILITY[j][c]) < 1e-6
    assert plan.best_labels() == {"32M": "top10", "64M": "top10", "128M": "top20", "640M": "top20"}


def test_order_by_b_not_file_order():
    params = PoolParams(
        id="x",
        names=("p", "q", "r"),
        a=(1.0,) * 3,
        b=(-0.1, -0.3, -0.2),
        tau=(1.0, 2.0, 3.0),
        d=0.0,
    )
    plan = plan_filters(params, bucket_size=1e4, budgets=[1e5])
    assert plan.pools == (("q",), ("q", "r"), ("q", "r", "p"))
    assert plan.labels == ("top33.3", "top66.7", "top100")
    want = combined_error(1e5, bucket_size=1e4, a=1.0, b=[-0.3, -0.2], tau=[2.0, 3.0], d=0.0)
    np.testing.assert_allclose(plan.errors[1], want)
    assert plan_filters(params, bucket_size=1e4, budgets=[1e5], bucket_percent=10).labels == (
        "top10",
        "top20",
        "top30",
    )


def test_plan_errors():
    params = find_params(PUBLISHED, "tmars_imagenet1k_data")
    with pytest.raises(ValueError, match=r"^d: .*no d_value"):
        plan_filters(params, bucket_size=12.8e6, budgets=[32e6])
    with pytest.raises(ValueError, match="unknown pool 'nope'"):
        plan_filters(params, bucket_size=12.8e6, budgets=[32e6], d=0.1, pools=["nope"])
    odd = PoolParams(id="x", names=("p", "q"), a=(1.0, 2.0), b=(-0.1, -0.2), tau=(1.0, 1.0), d=0.0)
    with pytest.raises(ValueError, match=r"^a_values must be equal"):
        plan_filters(odd, bucket_size=1e4, budgets=[1e5])
    with pytest.raises(ValueError, match=r"^budget_labels"):
        plan_filters(odd, bucket_size=1e4, budgets=[1e5], budget_labels=["a", "b"], pools=["p"])
