"""Reports: plots, previews and the Markdown report."""

from curatorch.report.compare import compare_markdown, compare_table, plot_compare_curves
from curatorch.report.figures import pyplot, save_figure
from curatorch.report.jest_plots import (
    plot_learnability_matrix,
    plot_vs_chunks,
    plot_vs_filter_ratio,
)
from curatorch.report.multitask import multitask_cos_plot, multitask_markdown
from curatorch.report.pareto import pareto_cos_plot, pareto_markdown
from curatorch.report.preview import preview_grid

__all__ = [
    "compare_markdown",
    "compare_table",
    "multitask_cos_plot",
    "multitask_markdown",
    "pareto_cos_plot",
    "pareto_markdown",
    "plot_compare_curves",
    "plot_learnability_matrix",
    "plot_vs_chunks",
    "plot_vs_filter_ratio",
    "preview_grid",
    "pyplot",
    "save_figure",
]
