"""The compute-aware curation planner: how much to filter offline, and how much JEST
filters online, for a compute budget.

1. :func:`quantile_buckets` ranks a pool by one score (best first, the order
   ``curatorch filter`` ranks by) and splits it into ``k`` equal quantile buckets named
   ``top{lo}to{hi}p`` (percent of the pool, best first).
2. Each bucket gets the data-filtering law's parameters (Goyal et al. 2024) for every
   JEST filter ratio ``f`` considered (``f = 0`` is IID training): one
   :class:`~curatorch.scaling.PoolParams` record per ``f``, fitted from short runs on
   each bucket alone (:mod:`curatorch.experiments.plan_runs`) or read from a file
   (:func:`params_by_ratio`: a record's ``filter_ratio`` field, absent = 0).
3. :func:`plan_joint` predicts, for every ``f``, every candidate union of the ``k``
   buckets (top-1 .. top-k, ranked by ``b`` as the authors' ``estimate_best_pool``:
   :func:`curatorch.scaling.plan_filters`) at every budget, and picks per budget the
   offline candidate and the ``f`` of lowest predicted error.

How JEST's ratio enters: **the law is fitted to JEST runs at each ``f``.** For a fixed
``f``, JEST training on a bucket is one more way of consuming that bucket; its error
against examples trained (``examples_seen``: the ``b`` examples a step trains on, not
the ``B = b / (1 - f)`` it scores) is fitted by the same law, with per-bucket ``b`` and
``tau`` and a shared ``a`` and ``d``, and the top-k unions are predicted by the law's own
combination rule. Assumptions (checked by training the unions, issue 15 item 4): JEST's
selection within a union of buckets behaves like the mean of its selection within each
bucket (the combination rule), and a budget counts examples trained, not FLOPs (JEST's
scoring forward passes on ``B`` examples per step are extra compute; see
``docs/curation.md``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from curatorch.curation.filter import rank_order
from curatorch.curation.table import HIGHER_IS_BETTER, ScoreTable
from curatorch.scaling import FilterPlan, PoolParams, bucket_interval, plan_filters

__all__ = [
    "FILTER_RATIO_FIELD",
    "JointPlan",
    "ScoreBuckets",
    "bucket_table",
    "params_by_ratio",
    "plan_joint",
    "plan_markdown",
    "plan_record",
    "plot_plan",
    "quantile_buckets",
    "ratio_list",
    "validation_markdown",
    "validation_record",
]

FILTER_RATIO_FIELD = "filter_ratio"
"""The field of a parameter record that names the JEST filter ratio it was fitted at."""


def _pct(x: float) -> str:
    return f"{x:.0f}" if abs(x - round(x)) < 1e-9 else f"{x:.4g}"


@dataclass(frozen=True)
class ScoreBuckets:
    """A pool split into ``k`` equal quantile buckets by one score, best first.

    Attributes:
        by: the score. higher_is_better: its direction.
        names: ``[k]`` bucket names, ``top{lo}to{hi}p`` in percent of the pool.
        index: ``[k]`` int64 arrays of row positions, ``size`` each, best row first.
        size: rows per bucket (``floor(N / k / multiple) * multiple``).
        rows: ``N``, the rows ranked; the worst ``N - k * size`` are in no bucket.
        cuts: ``[k]`` the score of the worst row of each bucket.
    """

    by: str
    higher_is_better: bool
    names: tuple[str, ...]
    index: tuple[NDArray[np.int64], ...]
    size: int
    rows: int
    cuts: tuple[float, ...]

    def fraction(self, names: Sequence[str]) -> float:
        """The fraction of the pool that the buckets ``names`` hold together."""
        return len(names) * self.size / self.rows

    def is_top(self, names: Sequence[str]) -> bool:
        """Whether ``names`` are the best ``len(names)`` buckets (a top fraction by score)."""
        return set(names) == set(self.names[: len(names)])

    def label(self, names: Sequence[str]) -> str:
        """A candidate's name: ``top50`` when ``names`` are the best buckets (the percent
        of the split they hold), else the bucket names joined by ``+`` in score order."""
        if self.is_top(names):
            return f"top{_pct(100.0 * len(names) / len(self.names))}"
        return "+".join(n for n in self.names if n in set(names))


def quantile_buckets(
    scores: ArrayLike,
    keys: ArrayLike,
    *,
    buckets: int,
    higher_is_better: bool,
    by: str = "score",
    shards: ArrayLike | None = None,
    multiple: int = 1,
) -> ScoreBuckets:
    """Split rows into ``buckets`` equal quantile buckets by score, best first.

    Rows are ranked as ``curatorch filter`` ranks them (:func:`rank_order`: ties by key,
    then shard), so the first ``j`` buckets are what ``--top-fraction j/k`` keeps (up to
    the dropped remainder) and the split depends on the scores and keys alone.

    Args:
        scores: ``[N]`` finite scores. keys: ``[N]`` the rows' keys.
        buckets: ``k >= 1``.
        higher_is_better: the score's direction. by: its name (for the record).
        shards: ``[N]`` shard names (the second tie-break), or ``None``.
        multiple: each bucket's size is a multiple of this (a batch size), >= 1.
    """
    s = np.asarray(scores, dtype=np.float64)
    k = np.asarray(keys)
    if s.ndim != 1 or k.shape != s.shape:
        raise ValueError(f"scores and keys must be [N], got shapes {s.shape} and {k.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores must be finite, got {int((~np.isfinite(s)).sum())} that are not")
    if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
        raise ValueError(f"buckets must be an integer >= 1, got {buckets!r}")
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"multiple must be an integer >= 1, got {multiple!r}")
    size = (s.shape[0] // buckets // multiple) * multiple
    if size < 1:
        raise ValueError(
            f"buckets: {s.shape[0]} rows cannot fill {buckets} buckets of a multiple of {multiple}"
        )
    order = rank_order(
        s,
        k,
        higher_is_better=higher_is_better,
        shards=None if shards is None else np.asarray(shards),
    )
    step = 100.0 / buckets
    index = tuple(order[i * size : (i + 1) * size] for i in range(buckets))
    worst = np.min if higher_is_better else np.max
    return ScoreBuckets(
        by=by,
        higher_is_better=higher_is_better,
        names=tuple(f"top{_pct(i * step)}to{_pct((i + 1) * step)}p" for i in range(buckets)),
        index=index,
        size=size,
        rows=int(s.shape[0]),
        cuts=tuple(float(worst(s[ix])) for ix in index),
    )


def bucket_table(table: ScoreTable, *, by: str, buckets: int, multiple: int = 1) -> ScoreBuckets:
    """:func:`quantile_buckets` of a score table's column ``by``."""
    if by not in table.scores:
        raise ValueError(f"by must be a score of {table.path}: one of {table.scores}, got {by!r}")
    return quantile_buckets(
        table.column(by),
        table.column("__key__").astype(str),
        buckets=buckets,
        higher_is_better=HIGHER_IS_BETTER[by],
        by=by,
        shards=table.column("shard").astype(str),
        multiple=multiple,
    )


# ---------------------------------------------------------------------------------------------
# parameters per filter ratio


def _ratio_of(params: PoolParams) -> float:
    f = params.extra.get(FILTER_RATIO_FIELD, 0.0)
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= f < 1.0:
        raise ValueError(f"{params.id}: {FILTER_RATIO_FIELD} must be in [0, 1), got {f!r}")
    return float(f)


def _align(rec: PoolParams, names: Sequence[str], where: str) -> PoolParams:
    """``rec`` restricted to those of the buckets ``names`` it has, matched by name or
    else by their ``top{lo}to{hi}p`` interval (a published ``tmars_top0to10p`` is this
    split's ``top0to10p``), renamed to the split's names, in the split's order."""
    spans = {bucket_interval(n): i for i, n in enumerate(rec.names) if bucket_interval(n)}
    found = {}
    for n in names:
        i = rec.names.index(n) if n in rec.names else spans.get(bucket_interval(n))
        if i is not None:
            found[n] = i
    if not found:
        raise ValueError(
            f"{where}: record {rec.id!r} has parameters for none of the buckets "
            f"{list(names)} (it has {list(rec.names)}); fit the buckets of this split, pick "
            f"another --buckets, or pick the record with --key"
        )
    idx = list(found.values())
    return dataclasses.replace(
        rec,
        names=tuple(found),
        a=tuple(rec.a[i] for i in idx),
        b=tuple(rec.b[i] for i in idx),
        tau=tuple(rec.tau[i] for i in idx),
    )


def params_by_ratio(
    records: Sequence[PoolParams], *, names: Sequence[str], where: str = "params"
) -> dict[float, PoolParams]:
    """``{f: record}`` from parameter records, each fitted at the JEST ratio its
    :data:`FILTER_RATIO_FIELD` names (absent: 0, IID), sorted by ``f``, each restricted
    to those of the buckets ``names`` it has (matched by name or ``top{lo}to{hi}p``
    interval; the others are no candidate at that ``f``).

    Every record must hold one bucket of ``names`` at least, and no two the same ``f``;
    ``ValueError`` naming ``where`` and the record otherwise.
    """
    if not records:
        raise ValueError(f"{where}: no parameter records")
    out: dict[float, PoolParams] = {}
    for rec in records:
        f = _ratio_of(rec)
        if f in out:
            raise ValueError(
                f"{where}: records {out[f].id!r} and {rec.id!r} are both for "
                f"{FILTER_RATIO_FIELD} = {f}; pick one with --key"
            )
        out[f] = _align(rec, names, where)
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------------------------
# the joint plan


@dataclass(frozen=True)
class JointPlan:
    """Predicted error of every offline candidate at every JEST ratio and budget.

    Attributes:
        ratios: ``[F]`` JEST filter ratios (0 = IID), ascending.
        params: ``[F]`` the parameter record of each ratio.
        plans: ``[F]`` one :class:`~curatorch.scaling.FilterPlan` per ratio (the same
            budgets; candidates ranked by that ratio's ``b``).
        best_ratio: ``[B]`` index into ``ratios`` of the joint best per budget.
        best_candidate: ``[B]`` index into that ratio's candidates.
    """

    ratios: tuple[float, ...]
    params: tuple[PoolParams, ...]
    plans: tuple[FilterPlan, ...]
    best_ratio: NDArray[np.int64]
    best_candidate: NDArray[np.int64]

    @property
    def budgets(self) -> NDArray[np.float64]:
        """``[B]`` examples trained."""
        return self.plans[0].budgets

    @property
    def budget_labels(self) -> tuple[str, ...]:
        return self.plans[0].budget_labels

    def best_error(self) -> NDArray[np.float64]:
        """``[B]`` the predicted error of the joint choice."""
        return np.array(
            [
                self.plans[i].errors[c, j]
                for j, (i, c) in enumerate(zip(self.best_ratio, self.best_candidate, strict=True))
            ]
        )


def plan_joint(
    params: Mapping[float, PoolParams],
    *,
    bucket_size: float,
    budgets: ArrayLike,
    pools: Sequence[str] | None = None,
    budget_labels: Sequence[str] | None = None,
    method: str = "utility",
    bucket_percent: float | None = None,
) -> JointPlan:
    """Plan every ratio of ``params`` with :func:`~curatorch.scaling.plan_filters` and
    pick the joint best per budget.

    Args:
        params: ``{f: record}`` (:func:`params_by_ratio`); each record's ``d``.
        bucket_size: samples per bucket. budgets: ``[B]`` examples trained, > 0.
        pools: the candidate buckets (the split's names; at each ratio those its record
            has); default each record's names.
        method: ``"utility"`` or ``"data"``. bucket_percent: percent of the pool per bucket.

    Ties go to the smaller filter ratio, then (as in ``plan_filters``) the smaller filter.
    """
    if not params:
        raise ValueError("params must hold at least one filter ratio")
    ratios = tuple(sorted(params))
    plans = tuple(
        plan_filters(
            params[f],
            bucket_size=bucket_size,
            budgets=budgets,
            budget_labels=budget_labels,
            method=method,  # type: ignore[arg-type]
            pools=params[f].names if pools is None else [n for n in pools if n in params[f].names],
            bucket_percent=bucket_percent,
        )
        for f in ratios
    )
    best = np.stack([p.errors[p.best, np.arange(p.errors.shape[1])] for p in plans])  # [F, B]
    best_ratio = np.argmin(best, axis=0).astype(np.int64)
    best_candidate = np.array(
        [int(plans[i].best[j]) for j, i in enumerate(best_ratio)], dtype=np.int64
    )
    return JointPlan(ratios, tuple(params[f] for f in ratios), plans, best_ratio, best_candidate)


def _candidate(plan: FilterPlan, c: int, buckets: ScoreBuckets, j: int) -> dict[str, Any]:
    pools = list(plan.pools[c])
    return {
        "label": buckets.label(pools),
        "buckets": pools,
        "offline_fraction": round(buckets.fraction(pools), 6),
        "top_fraction_by_score": buckets.is_top(pools),
        "predicted_error": float(plan.errors[c, j]),
    }


def _choice(joint: JointPlan, buckets: ScoreBuckets, j: int) -> dict[str, Any]:
    i, c = int(joint.best_ratio[j]), int(joint.best_candidate[j])
    cand = _candidate(joint.plans[i], c, buckets, j)
    cut = buckets.cuts[len(cand["buckets"]) - 1] if cand["top_fraction_by_score"] else None
    return {
        **cand,
        "filter_ratio": joint.ratios[i],
        "strategy": "iid" if joint.ratios[i] == 0 else "jest",
        "score_cut": cut,
    }


def plan_record(
    joint: JointPlan, buckets: ScoreBuckets, *, source: Mapping[str, Any]
) -> dict[str, Any]:
    """The plan as a JSON-able record: the split, per budget every candidate's predicted
    error at every ratio, the best candidate per ratio and the joint recommendation."""
    per_budget = []
    for j, label in enumerate(joint.budget_labels):
        ratios = []
        for f, plan in zip(joint.ratios, joint.plans, strict=True):
            ratios.append(
                {
                    "filter_ratio": f,
                    "candidates": [
                        _candidate(plan, c, buckets, j) for c in range(len(plan.labels))
                    ],
                    "best": buckets.label(plan.pools[int(plan.best[j])]),
                }
            )
        per_budget.append(
            {
                "budget": label,
                "examples": float(joint.budgets[j]),
                "ratios": ratios,
                "recommendation": _choice(joint, buckets, j),
            }
        )
    return {
        "format": "curatorch-plan",
        "version": 1,
        "by": buckets.by,
        "higher_is_better": buckets.higher_is_better,
        "buckets": list(buckets.names),
        "bucket_size": buckets.size,
        "rows": buckets.rows,
        "bucket_cuts": list(buckets.cuts),
        "filter_ratios": list(joint.ratios),
        "params": [p.to_record() for p in joint.params],
        "budgets": per_budget,
        **dict(source),
    }


def _fmt_f(f: float) -> str:
    return "IID" if f == 0 else f"JEST f={f:g}"


def _error_rows(entry: Mapping[str, Any], n_ratios: int) -> list[str]:
    """One Markdown row per candidate of any ratio: its predicted error at each ratio
    (``-`` where that ratio does not consider it), each ratio's best in bold."""
    cells: dict[str, list[str]] = {}
    fraction: dict[str, float] = {}
    for i, r in enumerate(entry["ratios"]):
        for c in r["candidates"]:
            cell = f"{c['predicted_error']:.4f}"
            row = cells.setdefault(c["label"], ["-"] * n_ratios)
            row[i] = f"**{cell}**" if c["label"] == r["best"] else cell
            fraction[c["label"]] = c["offline_fraction"]
    return [
        f"| {label} | {fraction[label]:.2f} | " + " | ".join(row) + " |"
        for label, row in cells.items()
    ]


def plan_markdown(record: Mapping[str, Any]) -> str:
    """:func:`plan_record` as Markdown: per budget, a table of predicted error (candidates
    x ratios, the best per ratio in bold) and the joint recommendation."""
    ratios = record["filter_ratios"]
    lines = [
        f"# Curation plan: offline filter by `{record['by']}` and JEST's filter ratio",
        "",
        f"{len(record['buckets'])} quantile buckets of {record['bucket_size']} of "
        f"{record['rows']} rows; predicted error (1 - {record.get('metric', 'accuracy')}) "
        f"by the {record.get('method', 'utility')} law, budgets in examples trained.",
        "",
    ]
    for entry in record["budgets"]:
        rec = entry["recommendation"]
        lines += [f"## Budget {entry['budget']} ({entry['examples']:.0f} examples)", ""]
        lines.append(
            "| candidate | offline fraction | " + " | ".join(_fmt_f(f) for f in ratios) + " |"
        )
        lines.append("|" + " --- |" * (2 + len(ratios)))
        lines += _error_rows(entry, len(ratios))
        cut = (
            f", `{record['by']}` cut {rec['score_cut']:.4g}" if rec["score_cut"] is not None else ""
        )
        lines += [
            "",
            f"Recommendation: keep **{rec['label']}** ({rec['offline_fraction']:.0%} of the "
            f"pool: {', '.join(rec['buckets'])}{cut}) and train with "
            f"**{_fmt_f(rec['filter_ratio'])}**: predicted error {rec['predicted_error']:.4f}.",
            "",
        ]
    if record.get("fit_warnings"):
        lines += ["## Fit warnings", "", *[f"- {w}" for w in record["fit_warnings"]], ""]
    if record.get("validation"):
        lines.append(validation_markdown(record))
    return "\n".join(lines)


def plot_plan(
    joint: JointPlan,
    path: str | os.PathLike[str],
    *,
    measured: Mapping[float, Mapping[str, tuple[Sequence[float], Sequence[float]]]] | None = None,
    grid: ArrayLike | None = None,
    buckets: ScoreBuckets,
    bucket_size: float,
    method: str = "utility",
) -> None:
    """Write a PNG: one panel per ratio, predicted error against examples trained (log x)
    for every candidate, the budgets as dotted lines, and ``measured`` points
    (``{f: {label: (examples, error)}}``: a bucket alone, a trained union) as markers.
    ``grid``: the examples to draw the curves at (default 60 points over the budgets'
    range, widened 2x)."""
    from matplotlib.ticker import NullFormatter

    from curatorch.plotting import pyplot, save_figure

    lo, hi = float(joint.budgets.min()) / 2, float(joint.budgets.max()) * 2
    xs = np.geomspace(lo, hi, 60) if grid is None else np.asarray(grid, dtype=np.float64)
    dense = plan_joint(
        dict(zip(joint.ratios, joint.params, strict=True)),
        bucket_size=bucket_size,
        budgets=xs,
        pools=buckets.names,
        method=method,
    )
    plt = pyplot()
    n = len(joint.ratios)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), sharey=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, f, plan in zip(axes[0], joint.ratios, dense.plans, strict=True):
        color = {}
        for c, pools in enumerate(plan.pools):
            color[buckets.label(pools)] = colors[c % len(colors)]
            ax.plot(xs, plan.errors[c], color=color[buckets.label(pools)], lw=1.5)
        for i, (label, (x, y)) in enumerate((measured or {}).get(f, {}).items()):
            # a trained candidate: a filled square in its line's colour; a bucket alone: a ring
            cand = label.removesuffix(" trained")
            style = {"marker": "s", "ms": 4.5} if cand in color else {"marker": "o", "mfc": "none"}
            shade = color.get(cand, plt.cm.Greys(0.45 + 0.5 * i / max(1, len(measured[f]))))  # type: ignore[index]
            ax.plot(x, y, ls="none", color=shade, ms=style.pop("ms", 3.5), **style)
        for b in joint.budgets:
            ax.axvline(b, color="gray", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # log minor labels overlap
        ax.set_title(_fmt_f(f))
        ax.set_xlabel("examples trained")
        ax.grid(True, which="both", alpha=0.3)
        handles = [plt.Line2D([], [], color=v, lw=1.5) for v in color.values()]
        ax.legend(handles, list(color), fontsize=6, loc="upper center",
                  bbox_to_anchor=(0.5, -0.16), ncol=1)  # fmt: skip
    axes[0][0].set_ylabel(
        "error (1 - metric)\nlines: predicted; squares: trained; rings: buckets alone"
    )
    save_figure(fig, path, dpi=110, bbox_inches="tight", parents=True)


def ratio_list(values: Sequence[float]) -> tuple[float, ...]:
    """Check JEST filter ratios (each in [0, 1), no repeats) and sort them."""
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= v < 1.0):
            raise ValueError(f"filter ratios must be in [0, 1), got {v!r}")
        out.append(float(v))
    if not out or len(set(out)) != len(out):
        raise ValueError(
            f"filter ratios must be a non-empty list without repeats, got {list(values)}"
        )
    return tuple(sorted(out))


def validation_record(
    joint: JointPlan,
    validation: Mapping[str, Any],
    *,
    buckets: ScoreBuckets,
    seeds: Sequence[int],
) -> dict[str, Any]:
    """The planner's choice at each budget against the trained candidates.

    ``validation["measured"]`` is ``{f: {label: [[error per budget] per seed]}}``
    (:func:`curatorch.experiments.plan_runs.validate_plan`). Per budget: every trained
    (candidate, ratio)'s mean measured error over the seeds, the measured best, the
    planner's choice and ``gap`` (its mean error minus the best's: the ``1 - metric``
    units, so a gap of 0.01 is 0.01 of the metric) and ``within_0.01``.
    """
    rows = []
    for j, label in enumerate(joint.budget_labels):
        trained = []
        for f, by_label in validation["measured"].items():
            for cand, per_seed in by_label.items():
                errs = [float(s[j]) for s in per_seed]
                trained.append(
                    {
                        "filter_ratio": float(f),
                        "label": cand,
                        "mean_error": float(np.mean(errs)),
                        "errors": errs,
                    }
                )
        best = min(trained, key=lambda r: r["mean_error"])
        i, c = int(joint.best_ratio[j]), int(joint.best_candidate[j])
        chosen = (joint.ratios[i], buckets.label(joint.plans[i].pools[c]))
        mine = next(r for r in trained if (r["filter_ratio"], r["label"]) == chosen)
        gap = mine["mean_error"] - best["mean_error"]
        rows.append(
            {
                "budget": label,
                "examples": float(joint.budgets[j]),
                "choice": {"filter_ratio": chosen[0], "label": chosen[1]},
                "choice_mean_error": mine["mean_error"],
                "best": {"filter_ratio": best["filter_ratio"], "label": best["label"]},
                "best_mean_error": best["mean_error"],
                "gap": gap,
                "is_best": gap <= 0.0,
                "within_0.01": gap <= 0.01,
                "trained": trained,
            }
        )
    return {"seeds": list(seeds), "budgets": rows, "seconds": validation.get("seconds", {})}


def validation_markdown(record: Mapping[str, Any]) -> str:
    """:func:`validation_record` as a Markdown table (one row per budget)."""
    v = record["validation"]
    lines = [
        f"## Validation: every candidate trained, mean of seeds {v['seeds']}",
        "",
        "| budget | planner's choice | its measured error | measured best | best error | gap "
        "| within 0.01 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in v["budgets"]:
        ch, be = r["choice"], r["best"]
        lines.append(
            f"| {r['budget']} | {ch['label']}, {_fmt_f(ch['filter_ratio'])} | "
            f"{r['choice_mean_error']:.4f} | {be['label']}, {_fmt_f(be['filter_ratio'])} | "
            f"{r['best_mean_error']:.4f} | {r['gap']:+.4f} | "
            f"{'yes' if r['within_0.01'] else 'no'} |"
        )
    return "\n".join(lines)
