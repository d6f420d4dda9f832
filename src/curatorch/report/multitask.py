"""The multi-task MMPareto report: pairwise-cosine curves and the Markdown tables."""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from curatorch.report.figures import pyplot, save_figure
from curatorch.report.pareto import checks_section, mean_std_percent

__all__ = ["multitask_cos_plot", "multitask_markdown"]


def multitask_cos_plot(
    curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]],
    path: str | os.PathLike[str],
    *,
    title: str = "cos(g_a, g_b) of two tasks' gradients on the shared encoder",
) -> Path:
    """Plot each task pair's gradient cosine on the shared encoder against the step: one
    panel per pair (``"a~b"``, in the order pairs first appear), one line per method
    (``curves[method][pair] = [(step, cos), ...]``, e.g. averaged over seeds). Writes a
    PNG atomically (its folder must exist) and returns its path."""
    pairs = list(dict.fromkeys(p for per in curves.values() for p in per))
    if not pairs:
        raise ValueError("curves holds no task pair; nothing to plot")
    plt = pyplot()
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.6 * len(pairs), 3.4), squeeze=False)
    for ax, pair in zip(axes[0], pairs, strict=True):
        a, _, b = pair.partition("~")
        for method, per in curves.items():
            if per.get(pair):
                steps, cos = zip(*per[pair], strict=True)
                ax.plot(steps, cos, label=method, lw=1.2)
        ax.axhline(0.0, color="k", lw=0.8, ls="--")
        ax.set(title=f"{a} vs {b}", xlabel="step", ylabel=f"cos(g_{a}, g_{b})")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    save_figure(fig, out, dpi=110)
    return out


def _rate(values: Sequence[float]) -> str:
    return f"{statistics.fmean(values):.3f}" if values else "-"


def _row(cells: Sequence[str]) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table: the header, its rule, the rows."""
    return [_row(header), "|" + "---|" * len(header), *(_row(r) for r in rows)]


def _difficulty(result: Mapping[str, Any]) -> list[str]:
    """Each task trained alone: its classes, the test split's majority-class share (what
    a constant guess scores) and its accuracy."""
    rows = [
        [
            task,
            str(info["classes"]),
            f"{100 * info['majority']:.2f}",
            mean_std_percent(result["alone"][task]) if result["alone"].get(task) else "not run",
        ]
        for task, info in result["task_info"].items()
    ]
    return [
        "## Task difficulty",
        "",
        "Each task trained alone (the shared encoder and its head, `uniform`); the majority "
        "class is the share of the test split's most frequent label, what a constant guess "
        "scores.",
        "",
        *_table(["task", "classes", "majority class", "alone acc"], rows),
    ]


def _accuracy_table(result: Mapping[str, Any]) -> list[str]:
    tasks: list[str] = result["tasks"]
    rows = []
    for method, row in result["methods"].items():
        ratio = row.get("step_time_ratio")
        accs = [mean_std_percent(row[k]) for k in (*(f"test_acc/{t}" for t in tasks), "test_acc")]
        rows.append([method, *accs, f"{ratio:.2f}" if ratio is not None else "-"])
    alone = result["alone"]
    if alone:
        every = len(alone) == len(tasks)
        per_seed = [statistics.fmean(v) for v in zip(*alone.values(), strict=True)] if every else []
        cells = [mean_std_percent(alone[t]) if t in alone else "-" for t in tasks]
        rows.append(["each task alone", *cells, mean_std_percent(per_seed), "-"])
    header = ["method", *(f"{t} acc" for t in tasks), "mean over tasks", "step time / uniform"]
    return ["## Test accuracy", "", *_table(header, rows)]


def _conflict_table(result: Mapping[str, Any]) -> list[str]:
    pairs: list[str] = result["pairs"]
    keys = ["conflict_rate", *(f"conflict_rate/{p}" for p in pairs)]
    keys += [f"mean_cos/{p}" for p in pairs]
    rows = [[m, *(_rate(row[k]) for k in keys)] for m, row in result["methods"].items()]
    header = ["method", "conflict rate any pair", *(f"conflict rate {p}" for p in pairs)]
    header += [f"mean cos {p}" for p in pairs]
    return [
        "## Gradient conflict on the shared encoder",
        "",
        f"Over the diagnosed steps (every {result['diag_every']} steps), averaged over seeds: "
        "the share of steps where some pair of tasks' gradients on the shared encoder has "
        "cosine <= 0 (any pair), the same per pair, and each pair's mean cosine.",
        "",
        *_table(header, rows),
    ]


def multitask_markdown(result: Mapping[str, Any]) -> str:
    """The Markdown report of ``curatorch pareto multitask``'s result (its summary.json)."""
    spread = "one seed, so no spread" if len(result["seeds"]) == 1 else "mean ± std over seeds"
    lines = [
        "# MMPareto in multi-task learning",
        "",
        f"Data: {result['data']}. Model: {result['model']}. Seeds: {result['seeds']}. "
        f"Accuracies are test accuracy in %, {spread}; step time is the median "
        "training-step time relative to `uniform` (same machine, same run).",
        "",
        *_difficulty(result),
        "",
        *_accuracy_table(result),
        "",
        *(_conflict_table(result) if result["pairs"] else []),
        "",
        *checks_section("curatorch pareto multitask", result.get("checks", {})),
    ]
    if result.get("cos_plot"):
        lines += ["", f"![pairwise gradient cosines]({Path(result['cos_plot']).name})", ""]
    return "\n".join(lines) + "\n"
