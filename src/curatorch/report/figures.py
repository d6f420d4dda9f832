"""Matplotlib helpers: the headless backend and atomic PNG writes.

Both live in :mod:`curatorch.plotting` (which :mod:`curatorch.scaling` uses too); they
are re-exported here as part of the report API.
"""

from __future__ import annotations

from curatorch.plotting import pyplot, save_figure

__all__ = ["pyplot", "save_figure"]
