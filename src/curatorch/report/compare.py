"""Plots, table and Markdown report of a strategy comparison (``curatorch compare``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from curatorch.report.figures import pyplot, save_figure

__all__ = ["compare_markdown", "compare_table", "plot_compare_curves"]


def plot_compare_curves(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | os.PathLike[str],
    *,
    x: str = "examples_seen",
    metric: str = "mean_score",
    labels: Mapping[str, str] | None = None,
    target: float | None = None,
    xlabel: str = "",
    seeds: int = 0,
) -> None:
    """One line per strategy: the seed-averaged ``metric`` against ``x``, with a band from
    the lowest to the highest seed (``<metric>_min`` / ``<metric>_max``), and the target
    as a dashed horizontal line."""
    plt = pyplot()
    labels = labels or {}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, c in curves.items():
        xs = list(c[x])
        (line,) = ax.plot(xs, c[metric], marker="o", markersize=3, label=labels.get(name, name))
        lo, hi = c.get(f"{metric}_min"), c.get(f"{metric}_max")
        if lo is not None and hi is not None:
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)
    if target is not None:
        ax.axhline(target, color="k", linestyle="--", linewidth=1, label="target (IID final)")
    if x == "flops_total":
        ax.set_xscale("log")
    ax.set_xlabel(xlabel or x)
    band = f", band: min–max over {seeds} seeds" if seeds > 1 else ""
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} (mean over seeds{band})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _fmt_count(v: float | None) -> str:
    if v is None:
        return "not reached"
    if abs(v) >= 1e9:
        return f"{v:.3g}"
    return f"{v:,.0f}"


def _fmt_x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}x"


def _one_seed(results: Mapping[str, Any]) -> bool:
    """True when the comparison ran one seed: there is no spread to show."""
    return len(results.get("seeds", ())) == 1


def _rows(results: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    summary = results["summary"]
    curves = results["curves"]
    labels = results.get("labels", {})
    one_seed = _one_seed(results)
    head = [
        "strategy",
        "final mean_score (1 seed)" if one_seed else "final mean_score",
        "zeroshot",
        "fewshot",
        "i2t R@1",
        "t2i R@1",
        "examples to target",
        "speedup (examples)",
        "FLOPs to target",
        "speedup (FLOPs)",
        "total FLOPs",
    ]
    rows = []
    for name, s in summary["strategies"].items():
        c = curves[name]
        f = s["final"]
        score = f"{s['final_mean_score']:.3f}"
        if not one_seed:  # the standard deviation over seeds
            score += f" ± {c.get('mean_score_std', [0.0])[-1]:.3f}"
        rows.append(
            [
                labels.get(name, name),
                score,
                f"{f.get('zeroshot_acc', float('nan')):.3f}",
                f"{f.get('fewshot_acc', float('nan')):.3f}",
                f"{f.get('i2t_r1', float('nan')):.3f}",
                f"{f.get('t2i_r1', float('nan')):.3f}",
                _fmt_count(s["examples_to_target"]),
                _fmt_x(summary["speedup_examples"][name]),
                _fmt_count(s["flops_to_target"]),
                _fmt_x(summary["speedup_flops"][name]),
                f"{c['flops_total'][-1]:.3g}",
            ]
        )
    return head, rows


def compare_table(results: Mapping[str, Any]) -> str:
    """The comparison as an aligned plain-text table (for the terminal)."""
    head, rows = _rows(results)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    t = results["target"]
    lines.append(f"target: {t['baseline']}'s final {t['metric']} = {t['value']:.4f}")
    return "\n".join(lines)


def compare_markdown(results: Mapping[str, Any]) -> str:
    """The Markdown report: setup, table, plots and how the numbers were measured."""
    head, rows = _rows(results)
    t = results["target"]
    budget = results["budget"]
    seeds = results["seeds"]
    ref = results.get("reference") or {}
    lines = [
        "# JEST comparison",
        "",
        f"Every strategy trains the same learner for {budget['steps']} steps of "
        f"{budget['batch_size']} examples ({budget['examples']:,} training examples) with "
        f"seeds {seeds}. The target is {t['baseline']}'s final {t['metric']} "
        f"(mean over seeds) = **{t['value']:.4f}**. *Examples / FLOPs to target* is where a "
        f"strategy's seed-averaged {t['metric']} first reaches it (linear interpolation "
        f"between evaluations); speedups divide {t['baseline']}'s totals by those. Total "
        f"FLOPs = training + learner scoring + reference scoring (with a cache: embedding "
        f"the pool once, counted from step 0); the reference's own training is not "
        f"included.",
        "",
    ]
    if ref.get("checkpoint"):
        fin = ref.get("final", {})
        lines += [
            f"Reference: `{ref.get('model')}`, {ref.get('steps')} steps of "
            f"{ref.get('batch_size')} on the curated pool ({ref.get('curated_size')} "
            f"examples), final mean_score {fin.get('mean_score', float('nan')):.3f}; "
            f"embedding cache `{ref.get('cache')}`.",
            "",
        ]
    elif ref.get("cache"):
        lines += [f"Reference embedding cache: `{ref['cache']}`.", ""]
    lines += [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        "(One seed: no spread over seeds.)"
        if _one_seed(results)
        else "(± is the standard deviation over seeds.)",
        "",
    ]
    plots = results.get("plots", {})
    captions = {
        "examples_seen": "Mean score against training examples"
        + ("" if _one_seed(results) else " (band: min to max over seeds)"),
        "flops_total": "Mean score against total FLOPs, scoring included",
        "learnability_matrix": "Learnability of one super-batch (examples grouped by concept)",
        "learnability_vs_chunks": "Selected-batch learnability against the number of chunks",
        "learnability_vs_filter_ratio": "Selected-batch learnability against the filter ratio",
    }
    if plots:
        lines += ["## Plots", ""]
        for key, fname in plots.items():
            lines += [f"### {captions.get(key, key)}", "", f"![{key}]({fname})", ""]
    timing = results.get("run_wall_s", {})
    if timing:
        lines += [
            "## Wall time",
            "",
            "| strategy | training wall time, all seeds (s) |",
            "|---|---|",
            *(f"| {results.get('labels', {}).get(k, k)} | {v:.0f} |" for k, v in timing.items()),
            "",
            f"Total: {results.get('wall_s', 0):.0f} s wall, "
            f"{results.get('workers', 1)} run(s) at a time with {results.get('threads')} "
            f"thread(s) each (load average at the end: {results.get('load_average')}).",
            "",
        ]
    if results.get("command"):
        lines += ["## Reproduce", "", "```bash", results["command"], "```", ""]
    return "\n".join(lines)
