"""Plots and Markdown report of the reference-curation study (``curatorch study
reference``): JEST's gain over IID against its reference's own score, and the offline
filter's effect on IID and JEST."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from curatorch.report.figures import pyplot, save_figure

__all__ = ["plot_gain_vs_reference", "plot_offline_filter", "study_markdown"]

_PARTS = (
    ("curation", "(a) curation of the reference's data, same steps"),
    ("training", "(b) reference training length, same data"),
)


def _annotation(part: str, row: Mapping[str, Any]) -> str:
    if part == "training":
        return f"{row['reference_steps']} steps"
    return str(row["reference_label"])


def plot_gain_vs_reference(record: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """One panel per part with rows, (a) and (b): JEST's gain over IID (final score
    difference) against its reference's own final score, each point named by its
    reference. Error bars: one standard error of the JEST strategy's final score over
    seeds (the baseline's, common to every point, is in the caption)."""
    plt = pyplot()
    parts = [(k, title) for k, title in _PARTS if record.get(k)]
    fig, axes = plt.subplots(1, len(parts), figsize=(5.6 * len(parts), 4.6), squeeze=False)
    metric = record.get("metric", "mean_score")
    for ax, (key, title) in zip(axes[0], parts, strict=True):
        rows = record[key]
        for r in rows:  # one colour and legend entry per reference: no labels overlap
            ax.errorbar(
                [r["reference_score"]],
                [r["gain"]],
                yerr=[r["final_se"]],
                fmt="o",
                capsize=3,
                label=_annotation(key, r),
            )
        ax.axhline(0.0, color="k", linewidth=0.8, linestyle=":")
        ax.legend(fontsize=8, loc="best")
        ax.set_xlabel(f"reference's own final {metric}")
        ax.set_ylabel(f"JEST's gain over IID (final {metric})")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    base = record.get("baseline", {})
    fig.text(
        0.5,
        0.01,
        f"error bars: one standard error of JEST's final score over seeds {record.get('seeds')}; "
        f"the IID baseline's ({base.get('final', 0):.3f} ± {base.get('final_se', 0):.3f}) "
        "shifts every point alike",
        ha="center",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    save_figure(fig, path)


def plot_offline_filter(record: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """(c): each strategy's final score on the raw and on the offline-filtered pool (bars,
    error bars: one standard error over seeds)."""
    plt = pyplot()
    rows = record["filter"]
    fig, ax = plt.subplots(figsize=(1.8 + 1.8 * len(rows), 4.2))
    width = 0.38
    xs = list(range(len(rows)))
    for offset, which, label in (
        (-width / 2, "raw", "raw pool"),
        (width / 2, "filtered", "offline-filtered pool"),
    ):
        ax.bar(
            [x + offset for x in xs],
            [r[f"final_{which}"] for r in rows],
            width,
            yerr=[r[f"final_{which}_se"] for r in rows],
            capsize=3,
            label=label,
        )
    ax.set_xticks(xs, [str(r["label"]) for r in rows])
    ax.set_ylabel(f"final {record.get('metric', 'mean_score')}")
    pool = rows[0] if rows else {}
    ax.set_title(
        f"(c) offline filter: {pool.get('pool')} ({pool.get('pool_size')} examples, clean "
        f"{pool.get('pool_clean_fraction', 0):.2f})",
        fontsize=10,
    )
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _pm(value: float | None, se: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:+.3f}" if se is None else f"{value:+.3f} ± {se:.3f}"


def _score(value: float | None, se: float | None = None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if not se else f"{value:.3f} ± {se:.3f}"


def _reference_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| reference | trained on | examples | clean | steps | reference's own score "
        "| JEST final | gain over IID | speedup (examples) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        speed = r.get("speedup_examples")
        size = r.get("pool_size")
        lines.append(
            f"| {r['reference_label']} | {r.get('pool')} | "
            f"{'—' if size is None else f'{size:,}'} | {_score(r.get('pool_clean_fraction'))} | "
            f"{r.get('reference_steps')} | {_score(r.get('reference_score'))} | "
            f"{_score(r['final'], r['final_se'])} | {_pm(r['gain'], r['gain_se'])} | "
            f"{'—' if speed is None else f'{speed:.2f}x'} |"
        )
    return [*lines, ""]


def _filter_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| strategy | raw pool | offline-filtered pool | gain from the filter |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {_score(r['final_raw'], r['final_raw_se'])} | "
            f"{_score(r['final_filtered'], r['final_filtered_se'])} | "
            f"{_pm(r['dependence'], r['dependence_se'])} |"
        )
    return [*lines, ""]


def _finding_lines(f: Mapping[str, Any]) -> list[str]:
    if not f or f.get("verdict") == "not measured":
        return ["Not measured: the study names no strategies for this part.", ""]
    numbers = ", ".join(
        f"{k} = {v}" for k, v in f.items() if k not in ("claim", "verdict") and v is not None
    )
    return [f"**Finding:** {f['claim']}: **{f['verdict']}** ({numbers}).", ""]


def study_markdown(record: Mapping[str, Any]) -> str:
    """The study's Markdown report: a table and a verdict per part, the plots, the wall
    time and the command."""
    b, base = record["budget"], record["baseline"]
    metric = record["metric"]
    f = record.get("findings", {})
    lines = [
        "# Reference-curation study (JEST paper, Figure 5 and Table 3)",
        "",
        f"Every learner trains {b['steps']} steps of {b['batch_size']} ({b['examples']:,} "
        f"examples) with seeds {record['seeds']}. *Gain over IID* is a JEST strategy's final "
        f"{metric} minus the IID baseline's ({base['strategy']}: "
        f"{_score(base['final'], base['final_se'])}), "
        "both means over seeds; ± is one standard error over seeds. A difference is *clear* "
        "when it exceeds twice its standard error.",
        "",
    ]
    for key, title in _PARTS:
        if record.get(key):
            lines += [
                f"## {title}",
                "",
                *_reference_table(record[key]),
                *_finding_lines(f.get(key, {})),
            ]
    if record.get("filter"):
        lines += ["## (c) offline pre-filter of the training pool", ""]
        lines += [*_filter_table(record["filter"]), *_finding_lines(f.get("filter", {}))]
    for key, fname in (record.get("plots") or {}).items():
        lines += [f"![{key}]({fname})", ""]
    if record.get("wall_s") is not None:
        lines += [
            "## Wall time",
            "",
            f"{record['wall_s']:.0f} s in all ({record.get('threads')} torch thread(s) per "
            f"run; load average at the end {record.get('load_average')}).",
            "",
        ]
    if record.get("command"):
        lines += ["## Reproduce", "", "```bash", record["command"], "```", ""]
    return "\n".join(lines)
