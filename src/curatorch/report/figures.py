"""Matplotlib helpers: the headless backend and atomic PNG writes."""

from __future__ import annotations

import os
import tempfile
from typing import Any

__all__ = ["pyplot", "save_figure"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the headless Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 100) -> None:
    """Save ``fig`` as PNG at ``path`` atomically (temp file in the same folder, then
    ``os.replace``) and close it. The folder must exist."""
    plt = pyplot()
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        plt.close(fig)
        raise ValueError(f"path must be in an existing directory, got {path!r}")
    fd, tmp = tempfile.mkstemp(suffix=".png", prefix=".fig-", dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual mode
    try:
        fig.savefig(tmp, format="png", dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        plt.close(fig)
