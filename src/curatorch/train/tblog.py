"""TensorBoard event files for ``train.log = "tensorboard"``: the run's records as scalars.

Every numeric field of a ``metrics.jsonl`` record is written under its own name at the
record's ``step`` (``step`` itself is the x axis; lists, strings, booleans and ``null`` are
not scalars and are left out); every numeric field of a ``diagnostics.jsonl`` record under
``diagnostics/<name>``. TensorBoard stores scalars as float32. A resumed run appends a new
event file whose ``purge_step`` hides what the interrupted session wrote after the
checkpoint it resumes from, so no step appears twice.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from curatorch.train.config import ConfigError

__all__ = ["TB_DIR", "TensorBoardLog", "require_tensorboard", "scalars"]

# the folder of the event files inside a run folder
TB_DIR = "tensorboard"


def require_tensorboard() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``; a :class:`ConfigError` naming the extra
    when the ``tensorboard`` package cannot be imported."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ConfigError(
            f"train.log = 'tensorboard' needs the tensorboard package ({exc}); install it "
            f"with `pip install 'curatorch[tb]'` or set train.log = 'jsonl'"
        ) from exc
    return SummaryWriter


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The numeric fields of ``record`` but ``step`` (booleans are not numbers here)."""
    return {
        k: float(v)
        for k, v in record.items()
        if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


class TensorBoardLog:
    """One session's event file in ``run/tensorboard``.

    Args:
        run: the run folder.
        resumed_step: the step a resumed run continues from (its checkpoint's); events
            after it written by an earlier session are purged. ``None``: a fresh run, whose
            folder's old event files (of a start that failed) are removed first.
    """

    def __init__(self, run: Path, *, resumed_step: int | None) -> None:
        writer_cls = require_tensorboard()
        self.folder = run / TB_DIR
        if resumed_step is None and self.folder.exists():
            shutil.rmtree(self.folder)
        purge = None if resumed_step is None else resumed_step + 1
        self.writer = writer_cls(log_dir=str(self.folder), purge_step=purge)

    def _write(self, record: Mapping[str, Any], prefix: str) -> None:
        step = int(record["step"])
        for name, value in scalars(record).items():
            self.writer.add_scalar(prefix + name, value, global_step=step)

    def metrics(self, record: Mapping[str, Any]) -> None:
        """A ``metrics.jsonl`` record; flushed to disk (one call per evaluation)."""
        self._write(record, "")
        self.writer.flush()

    def diagnostics(self, record: Mapping[str, Any]) -> None:
        """A ``diagnostics.jsonl`` record (flushed with the next metrics record)."""
        self._write(record, "diagnostics/")

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
