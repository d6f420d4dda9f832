"""The MMPareto comparison report: a cos(g_m, g_u) plot and a Markdown table."""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from curatorch.report.figures import pyplot, save_figure

__all__ = ["checks_section", "mean_std_percent", "pareto_cos_plot", "pareto_markdown"]


def pareto_cos_plot(
    curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]],
    path: str | os.PathLike[str],
    *,
    title: str = "cos(g_m, g_u) during training",
) -> Path:
    """Plot ``cos(g_m, g_u)`` against the step, one panel per modality, one line per
    method (``curves[method][modality] = [(step, cos), ...]``, e.g. averaged over seeds;
    panels in the order the modalities first appear).
    Writes a PNG atomically (its folder must exist) and returns its path."""
    plt = pyplot()
    mods = list(dict.fromkeys(m for per in curves.values() for m in per))  # first-seen order
    if not mods:
        raise ValueError("curves holds no modality; nothing to plot")
    fig, axes = plt.subplots(1, len(mods), figsize=(5 * len(mods), 3.4), squeeze=False)
    for ax, mod in zip(axes[0], mods, strict=True):
        for method, per in curves.items():
            pts = per.get(mod, [])
            if pts:
                ax.plot([s for s, _ in pts], [c for _, c in pts], label=method, lw=1.2)
        ax.axhline(0.0, color="k", lw=0.8, ls="--")
        trunk = mod == "trunk"  # early fusion: the least pairwise cosine of its objectives
        ax.set_title("shared trunk" if trunk else f"{mod} encoder")
        ax.set_xlabel("step")
        ax.set_ylabel("least pairwise cos" if trunk else "cos(g_m, g_u)")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    save_figure(fig, out, dpi=110)
    return out


def mean_std_percent(values: Sequence[float]) -> str:
    """Mean ± standard deviation in %; one value has no spread and is shown alone."""
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * statistics.stdev(values):.2f}"


def checks_section(command: str, checks: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The report's ``## Checks`` lines: one ``PASS``/``FAIL`` bullet per check (``pass``
    and ``detail``), after the note that ``command`` exits 0 whatever they say."""
    lines = [
        "## Checks",
        "",
        f"Findings of this run, not errors: `{command}` exits 0 when every run completed "
        "and this report was written, whatever the checks say.",
        "",
    ]
    for name, check in checks.items():
        verdict = "PASS" if check["pass"] else "FAIL"
        lines.append(f"- **{verdict}** {name}: {check['detail']}")
    return lines


def pareto_markdown(result: Mapping[str, Any]) -> str:
    """The Markdown report of ``curatorch pareto compare``'s result (see its summary)."""
    mods: list[str] = result["modalities"]
    groups: list[str] = result.get("groups", mods)  # + the early-fusion trunk
    spread = "one seed, so no spread" if len(result["seeds"]) == 1 else "mean ± std over seeds"
    lines = [
        "# MMPareto comparison",
        "",
        f"Data: {result['data']}. Seeds: {result['seeds']}. Accuracies are test accuracy in %, "
        f"{spread}; step time is the median training-step time relative to "
        "`uniform` (same machine, same run).",
        "",
        "| method | multimodal acc | "
        + " | ".join(f"{m} head acc" for m in mods)
        + " | "
        + " | ".join(f"conflict rate {g}" for g in groups)
        + " | step time / uniform |",
        "|---|---|" + "---|" * (len(mods) + len(groups)) + "---|",
    ]
    for method, row in result["methods"].items():
        cells = [mean_std_percent(row["test_acc"])]
        cells += [mean_std_percent(row[f"test_acc/{m}"]) for m in mods]
        for g in groups:
            rates = row.get(f"conflict_rate/{g}", [])
            cells.append(f"{statistics.fmean(rates):.3f}" if rates else "-")
        ratio = row.get("step_time_ratio")
        cells.append(f"{ratio:.2f}" if ratio is not None else "-")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Each modality trained alone (its encoder and a linear head):", ""]
    lines += ["| modality | test acc |", "|---|---|"]
    for mod, accs in result["alone"].items():
        lines.append(f"| {mod} alone | {mean_std_percent(accs)} |")
    lines += ["", *checks_section("curatorch pareto compare", result.get("checks", {}))]
    if result.get("cos_plot"):
        lines += ["", f"![cos(g_m, g_u)]({Path(result['cos_plot']).name})", ""]
    return "\n".join(lines) + "\n"
