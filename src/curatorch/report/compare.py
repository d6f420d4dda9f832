"""Plots, table and Markdown report of a strategy comparison (``curatorch compare``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from curatorch.report.figures import pyplot, save_figure

__all__ = ["SCORE_COLUMNS", "compare_markdown", "compare_table", "plot_compare_curves"]

# the per-score columns of the table, in this order, where the runs recorded the score
# (the built-in evaluation: the first four; held-out shards: retrieval, and zero-shot and
# few-shot with labels)
SCORE_COLUMNS = {
    "zeroshot_acc": "zeroshot",
    "fewshot_acc": "fewshot",
    "i2t_r1": "i2t R@1",
    "t2i_r1": "t2i R@1",
    "i2t_r5": "i2t R@5",
    "t2i_r5": "t2i R@5",
}


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
    target_label: str = "target (IID final)",
) -> None:
    """One line per strategy: the seed-averaged ``metric`` (any recorded score:
    ``mean_score``, ``i2t_r1`` ...) against ``x``, with a band from the lowest to the
    highest seed (``<metric>_min`` / ``<metric>_max``), and the target as a dashed
    horizontal line named ``target_label``."""
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
        ax.axhline(target, color="k", linestyle="--", linewidth=1, label=target_label)
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


def _score_columns(summary: Mapping[str, Any]) -> list[str]:
    """The :data:`SCORE_COLUMNS` some strategy's final record holds."""
    finals = [s["final"] for s in summary["strategies"].values()]
    return [m for m in SCORE_COLUMNS if any(m in f for f in finals)]


def _rows(results: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The table's head and rows: final mean_score, the recorded scores, and the target
    arithmetic of every strategy."""
    summary = results["summary"]
    curves = results["curves"]
    labels = results.get("labels", {})
    one_seed = _one_seed(results)
    scores = _score_columns(summary)
    head = [
        "strategy",
        "final mean_score (1 seed)" if one_seed else "final mean_score",
        *(SCORE_COLUMNS[m] for m in scores),
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
                *(f"{f[m]:.3f}" if m in f else "—" for m in scores),
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


def _reference_lines(ref: Mapping[str, Any]) -> list[str]:
    """What the reference was: trained here (on the curated pool or curated shards), a
    given model embedded once, or a given cache."""
    cache = f"embedding cache `{ref.get('cache')}`"
    if ref.get("given") and ref.get("model"):
        return [
            f"Reference: the given {ref.get('model_source', '')} model `{ref['model']}`, "
            f"embedded once into the {cache}.",
            "",
        ]
    if ref.get("checkpoint"):
        fin = ref.get("final", {})
        where = (
            f"the curated shards `{ref['shards']}`"
            if ref.get("shards")
            else f"the curated pool ({ref.get('curated_size')} examples)"
        )
        return [
            f"Reference: `{ref.get('model')}`, {ref.get('steps')} steps of "
            f"{ref.get('batch_size')} on {where}, final mean_score "
            f"{fin.get('mean_score', float('nan')):.3f}; {cache}.",
            "",
        ]
    if ref.get("cache"):
        return [f"Reference embedding cache: `{ref['cache']}`.", ""]
    return []


def _pool_words(facts: Mapping[str, Any]) -> str:
    """A training pool in words: its name, size and clean fraction (and how it was cut)."""
    if not facts:
        return "—"
    clean = facts.get("clean_fraction", 0.0)
    words = f"{facts.get('pool')} ({facts.get('size'):,} examples, clean {clean:.2f}"
    if facts.get("filter"):
        words += (
            f"; top {facts['keep_fraction']:g} of {facts.get('of'):,} by "
            f"{facts['filter']}'s {facts['by']}"
        )
    return words + ")"


def _listed_lines(results: Mapping[str, Any]) -> list[str]:
    """The listed references (what each trained on, its own final score), the pools cut
    offline, and which strategy used which."""
    refs = results.get("references") or {}
    pools = results.get("pools") or {}
    lines: list[str] = []
    if refs:
        lines += [
            "| reference | trained on | steps x batch | own final mean_score |",
            "|---|---|---|---|",
        ]
        for name, r in refs.items():
            if r.get("given"):
                lines.append(
                    f"| {r.get('label', name)} | given: `{r.get('model') or r.get('cache')}` "
                    f"| — | — |"
                )
                continue
            score = r.get("final", {}).get("mean_score")
            lines.append(
                f"| {r.get('label', name)} | {_pool_words(r.get('pool_facts') or {})} | "
                f"{r.get('steps')} x {r.get('batch_size')} | "
                f"{'—' if score is None else f'{score:.3f}'} |"
            )
        lines.append("")
    if pools:
        lines += [
            "Pools cut offline: " + "; ".join(_pool_words(f) for f in pools.values()) + ".",
            "",
        ]
    used = results.get("strategy_references") or {}
    trained = results.get("strategy_pools") or {}
    labels = results.get("labels", {})
    if used or trained:
        lines += ["| strategy | reference | training pool |", "|---|---|---|"]
        for name in labels:
            ref = used.get(name)
            ref_label = refs.get(ref, {}).get("label", ref) if ref else "—"
            pool = trained.get(name)
            pool_label = pools.get(pool, {}).get("label", pool) if pool else "data.pool"
            lines.append(f"| {labels[name]} | {ref_label} | {pool_label} |")
        lines.append("")
    return lines


def _evaluation_lines(results: Mapping[str, Any]) -> list[str]:
    """Where the runs were evaluated (from the baseline's recorded config): held-out
    shards, or the built-in world's evaluation sets."""
    base = results.get("configs", {}).get(results["target"]["baseline"], {})
    ev, data = base.get("eval", {}), base.get("data", {})
    if not data:
        return []
    if ev.get("source") == "shards" or (ev.get("source") == "auto" and ev.get("shards")):
        labels = f", classes `{ev['classes']}`" if ev.get("classes") else " (retrieval only)"
        where = f"the held-out shards `{ev['shards']}`{labels}"
        train = f"the shards `{data.get('shards')}`"
    else:
        where = f"the built-in {data.get('world')} world's evaluation sets"
        train = f"`{data['shards']}`" if data.get("shards") else f"its {data.get('pool')} pool"
    return [f"Training data: {train}; evaluation on {where}.", ""]


def _plot_lines(results: Mapping[str, Any]) -> list[str]:
    """The plots with their captions, and why the selection analysis was not run."""
    metric = results["target"]["metric"]
    plots = results.get("plots", {})
    captions = {
        "examples_seen": f"{metric} against training examples"
        + ("" if _one_seed(results) else " (band: min to max over seeds)"),
        "flops_total": f"{metric} against total FLOPs, scoring included",
        "learnability_matrix": "Learnability of one super-batch (examples grouped by concept)",
        "learnability_vs_chunks": "Selected-batch learnability against the number of chunks",
        "learnability_vs_filter_ratio": "Selected-batch learnability against the filter ratio",
    }
    lines: list[str] = []
    if plots:
        lines += ["## Plots", ""]
        for key, fname in plots.items():
            lines += [f"### {captions.get(key, key)}", "", f"![{key}]({fname})", ""]
    skipped = (results.get("analysis") or {}).get("skipped")
    if skipped:
        lines += [f"Selection analysis: {skipped}.", ""]
    return lines


def _timing_lines(results: Mapping[str, Any]) -> list[str]:
    """Each strategy's training wall time and the comparison's."""
    timing = results.get("run_wall_s", {})
    if not timing:
        return []
    return [
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


def compare_markdown(results: Mapping[str, Any]) -> str:
    """The Markdown report: setup, table, plots and how the numbers were measured."""
    head, rows = _rows(results)
    t = results["target"]
    budget = results["budget"]
    seeds = results["seeds"]
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
        f"the training data once, counted from step 0); the reference's own training is "
        f"not included.",
        "",
        *_evaluation_lines(results),
        *_reference_lines(results.get("reference") or {}),
        *_listed_lines(results),
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        "(One seed: no spread over seeds.)"
        if _one_seed(results)
        else "(± is the standard deviation over seeds.)",
        "",
        *_plot_lines(results),
        *_timing_lines(results),
    ]
    if results.get("command"):
        lines += ["## Reproduce", "", "```bash", results["command"], "```", ""]
    return "\n".join(lines)
