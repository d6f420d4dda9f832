"""The curation planner: quantile buckets (sizes, direction, ties, stability), the joint
plan against ``scaling.plan_filters``, parameter records per JEST ratio, the record, its
Markdown, the validation table and the plot."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from curatorch.curation import keep_mask
from curatorch.curation.plan import (
    FILTER_RATIO_FIELD,
    params_by_ratio,
    plan_joint,
    plan_markdown,
    plan_record,
    plot_plan,
    quantile_buckets,
    ratio_list,
    validation_record,
)
from curatorch.scaling import PoolParams, plan_filters

NAMES = ("top0to25p", "top25to50p", "top50to75p", "top75to100p")


def _keys(n: int) -> np.ndarray:
    return np.array([f"{i:012d}" for i in range(n)])


def _params(
    b: tuple[float, ...], *, f: float | None = None, tau=(4.0, 3.0, 2.0, 1.5)
) -> PoolParams:
    extra = {} if f is None else {FILTER_RATIO_FIELD: f}
    return PoolParams(
        id=f"fit_f{f}",
        names=NAMES,
        a=(100.0,) * 4,
        b=b,
        tau=tau,
        d=0.05,
        method="utility",
        extra=extra,
    )


def test_buckets_are_equal_quantiles_best_first() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=103)
    b = quantile_buckets(scores, _keys(103), buckets=4, higher_is_better=True, by="cosine")
    assert b.names == NAMES and b.size == 25 and b.rows == 103
    assert all(ix.shape == (25,) for ix in b.index)
    flat = np.concatenate(b.index)
    assert len(set(flat.tolist())) == 100  # disjoint; the 3 worst rows are in none
    dropped = np.setdiff1d(np.arange(103), flat)
    assert scores[dropped].max() <= scores[flat].min()
    means = [scores[ix].mean() for ix in b.index]
    assert means == sorted(means, reverse=True)
    assert b.cuts == tuple(float(scores[ix].min()) for ix in b.index)
    low = quantile_buckets(scores, _keys(103), buckets=4, higher_is_better=False)
    assert np.array_equal(low.index[0], b.index[-1][::-1][:25]) is False  # other rows
    assert scores[low.index[0]].max() <= scores[low.index[1]].min()
    assert (
        quantile_buckets(scores, _keys(103), buckets=4, higher_is_better=True, multiple=8).size
        == 24
    )


def test_first_buckets_are_what_filter_keeps() -> None:
    scores = np.round(np.random.default_rng(1).normal(size=120), 1)  # many ties
    keys = _keys(120)
    b = quantile_buckets(scores, keys, buckets=4, higher_is_better=True)
    for j in (1, 2, 3):
        kept = keep_mask(scores, keys, higher_is_better=True, top_fraction=j / 4)
        assert set(np.concatenate(b.index[:j]).tolist()) == set(np.flatnonzero(kept).tolist())


def test_ties_go_by_key_whatever_the_row_order() -> None:
    scores = np.array([1.0, 0.5, 1.0, 0.5, 1.0, 0.5])
    keys = np.array(["f", "e", "d", "c", "b", "a"])
    b = quantile_buckets(scores, keys, buckets=3, higher_is_better=True)
    assert [keys[ix].tolist() for ix in b.index] == [["b", "d"], ["f", "a"], ["c", "e"]]
    perm = np.random.default_rng(2).permutation(6)
    again = quantile_buckets(scores[perm], keys[perm], buckets=3, higher_is_better=True)
    assert [keys[perm][ix].tolist() for ix in again.index] == [["b", "d"], ["f", "a"], ["c", "e"]]
    twice = quantile_buckets(scores, keys, buckets=3, higher_is_better=True)
    assert all(np.array_equal(x, y) for x, y in zip(b.index, twice.index, strict=True))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"buckets": 0}, "buckets must be an integer >= 1"),
        ({"buckets": 2.0}, "buckets must be an integer >= 1"),
        ({"buckets": 11}, "cannot fill 11 buckets"),
        ({"multiple": 0}, "multiple must be"),
        ({"scores": [1.0, np.nan] * 5}, "scores must be finite"),
        ({"keys": _keys(3)}, "scores and keys must be [N]"),
    ],
)
def test_bad_bucket_input_names_it(kwargs: dict, match: str) -> None:
    args = {"scores": np.arange(10.0), "keys": _keys(10), "buckets": 2, "higher_is_better": True}
    with pytest.raises(ValueError, match=match.replace("[", r"\[").replace("]", r"\]")):
        quantile_buckets(**{**args, **kwargs})


def test_one_ratio_is_plan_filters() -> None:
    p = _params((-0.3, -0.2, -0.12, -0.05))
    budgets = [1e4, 1e5, 1e6, 1e7]
    joint = plan_joint({0.0: p}, bucket_size=5e4, budgets=budgets, pools=NAMES)
    ref = plan_filters(p, bucket_size=5e4, budgets=budgets, pools=NAMES)
    assert np.array_equal(joint.plans[0].errors, ref.errors)
    assert np.array_equal(joint.best_candidate, ref.best) and (joint.best_ratio == 0).all()
    assert ref.best[0] < ref.best[-1]  # aggressive at small budgets, wide at large ones
    assert np.allclose(joint.best_error(), ref.errors.min(axis=0))


def test_joint_choice_is_the_argmin_over_ratios() -> None:
    iid = _params((-0.3, -0.2, -0.12, -0.05), f=0.0)
    jest = _params((-0.34, -0.25, -0.2, -0.15), f=0.5, tau=(2.0, 1.5, 1.0, 0.8))
    budgets = np.geomspace(1e4, 1e7, 7)
    joint = plan_joint({0.5: jest, 0.0: iid}, bucket_size=5e4, budgets=budgets, pools=NAMES)
    assert joint.ratios == (0.0, 0.5)
    both = np.stack([p.errors.min(axis=0) for p in joint.plans])  # [F, B]
    assert np.array_equal(joint.best_ratio, np.argmin(both, axis=0))
    for j, (i, c) in enumerate(zip(joint.best_ratio, joint.best_candidate, strict=True)):
        assert joint.plans[i].errors[c, j] == pytest.approx(both.min(axis=0)[j])
        assert c == joint.plans[i].best[j]
    tie = plan_joint({0.0: iid, 0.8: iid}, bucket_size=5e4, budgets=budgets, pools=NAMES)
    assert (tie.best_ratio == 0).all()  # a tie goes to the smaller ratio


def test_params_by_ratio_matches_by_name_or_interval() -> None:
    iid = _params((-0.3, -0.2, -0.12, -0.05))
    published = dataclasses.replace(
        _params((-0.4, -0.3, -0.2, -0.1), f=0.8), id="pub", names=tuple(f"tmars_{n}" for n in NAMES)
    )
    got = params_by_ratio([published, iid], names=NAMES[:2])
    assert list(got) == [0.0, 0.8]
    assert got[0.8].names == NAMES[:2] and got[0.8].b == (-0.4, -0.3)
    with pytest.raises(ValueError, match=r"both for filter_ratio = 0.0; pick one with --key"):
        params_by_ratio([iid, iid], names=NAMES, where="--params f")
    with pytest.raises(ValueError, match=r"--params f: record 'fit_fNone' has parameters for none"):
        params_by_ratio([iid], names=("top0to10p",), where="--params f")
    bad = dataclasses.replace(iid, extra={FILTER_RATIO_FIELD: 1.0})
    with pytest.raises(ValueError, match=r"filter_ratio must be in \[0, 1\), got 1.0"):
        params_by_ratio([bad], names=NAMES)
    with pytest.raises(ValueError, match="no parameter records"):
        params_by_ratio([], names=NAMES)
    assert ratio_list([0.8, 0, 0.5]) == (0.0, 0.5, 0.8)
    with pytest.raises(ValueError, match="without repeats"):
        ratio_list([0.5, 0.5])


def _split():
    scores = np.linspace(1.0, 0.0, 400)
    return quantile_buckets(scores, _keys(400), buckets=4, higher_is_better=True, by="cosine")


def test_record_markdown_validation_and_plot(tmp_path) -> None:
    iid = _params((-0.3, -0.2, -0.12, -0.05), f=0.0)
    jest = _params((-0.25, -0.3, -0.2, -0.15), f=0.5)  # bucket 2 best under JEST
    buckets = _split()
    joint = plan_joint(
        {0.0: iid, 0.5: jest}, bucket_size=100, budgets=[300, 3000], pools=buckets.names
    )
    rec = plan_record(joint, buckets, source={"metric": "mean_score"})
    assert rec["buckets"] == list(NAMES) and rec["filter_ratios"] == [0.0, 0.5]
    jest_cands = rec["budgets"][0]["ratios"][1]["candidates"]
    assert jest_cands[0]["label"] == "top25to50p" and not jest_cands[0]["top_fraction_by_score"]
    assert jest_cands[1]["label"] == "top50" and jest_cands[1]["offline_fraction"] == 0.5
    for entry, j in zip(rec["budgets"], range(2), strict=True):
        choice = entry["recommendation"]
        assert choice["predicted_error"] == pytest.approx(joint.best_error()[j])
        assert choice["strategy"] == ("iid" if choice["filter_ratio"] == 0 else "jest")
    text = plan_markdown(rec)
    assert "## Budget 300 (300 examples)" in text and "Recommendation: keep **" in text
    # validation: every candidate of every ratio measured at every budget
    measured = {
        f: {buckets.label(p): [[0.5, 0.4], [0.52, 0.38]] for p in plan.pools}
        for f, plan in zip(joint.ratios, joint.plans, strict=True)
    }
    measured[0.5]["top100"] = [[0.2, 0.1], [0.2, 0.1]]
    val = validation_record(joint, {"measured": measured}, buckets=buckets, seeds=[0, 1])
    row = val["budgets"][1]
    assert row["best"] == {"filter_ratio": 0.5, "label": "top100"}
    assert row["best_mean_error"] == pytest.approx(0.1)
    assert row["gap"] == pytest.approx(row["choice_mean_error"] - 0.1)
    assert "## Validation" in plan_markdown({**rec, "validation": val})
    png = tmp_path / "plan.png"
    plot_plan(joint, png, buckets=buckets, bucket_size=100, measured={0.0: {"x": ([300], [0.5])}})
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_record_may_cover_some_buckets_only() -> None:
    top_two = dataclasses.replace(
        _params((-0.3, -0.2, -0.12, -0.05), f=0.0), names=("top0to25p", "x", "top25to50p", "y")
    )
    got = params_by_ratio([top_two], names=NAMES)[0.0]
    assert got.names == ("top0to25p", "top25to50p") and got.b == (-0.3, -0.12)
    joint = plan_joint({0.0: got}, bucket_size=5e4, budgets=[1e5], pools=NAMES)
    assert joint.plans[0].pools == (("top0to25p",), ("top0to25p", "top25to50p"))
