"""Matplotlib on the headless Agg backend, and atomic PNG writes of figures.

matplotlib is imported on first use, never at module import, so that every subpackage
(``scaling`` and ``report`` alike) may import this module without paying for it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from curatorch.fileio import atomic_write

__all__ = ["pyplot", "save_figure"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the headless Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(
    fig: Any,
    path: str | os.PathLike[str],
    *,
    dpi: int = 100,
    bbox_inches: str | None = None,
    parents: bool = False,
) -> None:
    """Save ``fig`` as PNG at ``path`` atomically and close it (also when the write fails).

    Args:
        fig: a matplotlib figure.
        path: the PNG file; written through a temporary file in the same folder and
            ``os.replace`` (:func:`curatorch.fileio.atomic_write`).
        dpi: resolution in dots per inch.
        bbox_inches: matplotlib's ``bbox_inches`` (``"tight"`` crops to the drawn
            content); ``None`` keeps the figure size.
        parents: create missing parent folders; otherwise the folder must exist.

    Raises:
        ValueError: ``path`` is not in an existing folder (and ``parents`` is false).
        curatorch.fileio.AtomicWriteError: the file could not be written.
    """
    plt = pyplot()
    try:
        target = Path(path)
        if not parents and not os.path.isdir(os.path.dirname(os.path.abspath(target))):
            raise ValueError(f"path must be in an existing directory, got {os.fspath(path)!r}")
        atomic_write(
            target,
            lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches=bbox_inches),
            parents=parents,
        )
    finally:
        plt.close(fig)
