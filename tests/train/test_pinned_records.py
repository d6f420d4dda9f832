"""Same numbers: five short runs (IID, JEST, Flexi-JEST; MMPareto, uniform) give the metrics
records the code gave before the one-loop refactor (``scripts/pin_records.py``).

Bit-identical on the machine that pinned them (``train_loss`` of the multimodal runs, new,
is compared with the sum of the pinned per-term means); the tolerance only allows for
another CPU's float reduction order. ``train_loss_mm`` was renamed
``train_loss/multimodal`` (``pin_records.RENAMED``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("pin_records", ROOT / "scripts" / "pin_records.py")
assert _spec is not None and _spec.loader is not None
pin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pin)

PINNED = json.loads(pin.PINNED.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(pin.RUNS))
def test_run_gives_the_pinned_records(name: str, tmp_path: Path) -> None:
    got = pin.run_one(name, tmp_path)
    assert got["metrics"], "the run wrote no metrics"
    diffs = pin.differences(pin.upgrade(PINNED[name]), got, where=name, rel=1e-5, abs_=1e-7)
    assert not diffs, "\n".join(diffs[:20])
