"""Reports: plots, previews and the Markdown report."""

from curatorch.report.preview import preview_grid

__all__ = ["preview_grid"]
