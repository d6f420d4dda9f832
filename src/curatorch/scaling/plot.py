"""Plots of the law: error against samples seen per candidate filter, with the frontier.

matplotlib (Agg backend) is imported inside the functions, never at module import. Files
are written atomically (:func:`curatorch.plotting.save_figure`); missing folders are
created.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from curatorch.plotting import pyplot, save_figure
from curatorch.scaling.io import format_count
from curatorch.scaling.plan import FilterPlan

__all__ = ["plot_comparison", "plot_filters"]


def _save(fig: Any, path: str | os.PathLike[str]) -> None:
    """PNG at 120 dpi cropped to the drawn content."""
    save_figure(fig, path, dpi=120, bbox_inches="tight", parents=True)


def plot_filters(
    plan: FilterPlan,
    path: str | os.PathLike[str],
    *,
    title: str = "",
    marks: ArrayLike | None = None,
) -> None:
    """Write a PNG of predicted error against samples seen (log x) for every candidate of
    ``plan`` (evaluate the plan on a dense budget grid), with the best-filter frontier as a
    thick dashed line and optional vertical ``marks`` (budgets of interest)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = plan.budgets
    for c, label in enumerate(plan.labels):
        ax.plot(x, plan.errors[c], label=label, lw=1.5)
    frontier = plan.errors.min(axis=0)
    ax.plot(x, frontier, "k--", lw=2.5, alpha=0.6, label="best filter")
    if marks is not None:
        for m in np.atleast_1d(np.asarray(marks, dtype=np.float64)):
            ax.axvline(m, color="gray", lw=0.8, ls=":")
            ax.text(
                m,
                ax.get_ylim()[1],
                format_count(float(m)),
                ha="center",
                va="bottom",
                fontsize=8,
                color="gray",
            )
    ax.set_xscale("log")
    ax.set_xlabel("samples seen")
    ax.set_ylabel("predicted error (1 - accuracy)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    _save(fig, path)


def plot_comparison(
    measured: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    predicted: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> None:
    """Write a PNG of measured (markers) against predicted (lines) error per pool.

    Args:
        measured: ``{label: (samples_seen, error)}`` measured points.
        predicted: ``{label: (samples_seen, error)}`` predicted curves (same labels or a
            subset).
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = list(dict.fromkeys([*measured, *predicted]))
    for i, label in enumerate(labels):
        color = colors[i % len(colors)]
        if label in predicted:
            xs, ys = predicted[label]
            ax.plot(xs, ys, "-", color=color, lw=1.5, label=f"{label} predicted")
        if label in measured:
            xs, ys = measured[label]
            ax.plot(xs, ys, "o", color=color, ms=4, label=f"{label} measured")
    ax.set_xlabel("samples seen")
    ax.set_ylabel("zero-shot error")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    if title:
        ax.set_title(title)
    _save(fig, path)
