"""Fitted scaling-law parameters of a set of pools (the authors' published record)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PoolParams"]


def _check_vector(name: str, values: tuple[float, ...], *, kind: str) -> None:
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name}[{i}] must be a finite number, got {v!r}")
        if kind == "positive" and not v > 0:
            raise ValueError(f"{name}[{i}] must be > 0, got {v!r}")
        if kind == "negative" and not v < 0:
            raise ValueError(f"{name}[{i}] must be < 0, got {v!r}")


@dataclass(frozen=True)
class PoolParams:
    """Scaling-law parameters of ``m`` pools, in the published JSON-lines schema.

    Attributes:
        id: name of the fit (``tmars_imagenet1k_utility``).
        names: ``[m]`` pool names.
        a: ``[m]`` sample-count scales (``a_values``; > 0, shared within a fit).
        b: ``[m]`` utility exponents (``b_values``; < 0).
        tau: ``[m]`` half-lives under repetition, in passes (``c_values``; > 0).
        d: irreducible error (``d_value``; >= 0) or ``None`` when the record has none (the
            published effective-data fit).
        method: which law the parameters were fitted with, when known (``"utility"`` or
            ``"data"``); the published records say it only in their ``id``.
        extra: other fields of the record (``best_a``, ``best_loss``, ``pool_sizes`` ...),
            written back unchanged.
    """

    id: str
    names: tuple[str, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]
    tau: tuple[float, ...]
    d: float | None = None
    method: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"id must be a non-empty string, got {self.id!r}")
        m = len(self.names)
        if m == 0:
            raise ValueError("names must not be empty")
        for i, n in enumerate(self.names):
            if not isinstance(n, str) or not n:
                raise ValueError(f"names[{i}] must be a non-empty string, got {n!r}")
        if len(set(self.names)) != m:
            raise ValueError(f"names must be unique, got {list(self.names)}")
        for name, values, kind in (
            ("a_values", self.a, "positive"),
            ("b_values", self.b, "negative"),
            ("c_values", self.tau, "positive"),
        ):
            if len(values) != m:
                raise ValueError(
                    f"{name} must have one value per name ({m}), got {len(values)}: {list(values)}"
                )
            _check_vector(name, values, kind=kind)
        if self.d is not None and (
            isinstance(self.d, bool)
            or not isinstance(self.d, (int, float))
            or not math.isfinite(self.d)
            or self.d < 0
        ):
            raise ValueError(f"d_value must be a finite number >= 0, got {self.d!r}")
        if self.method is not None and self.method not in ("utility", "data"):
            raise ValueError(f"method must be 'utility' or 'data', got {self.method!r}")

    def index(self, name: str) -> int:
        """Position of pool ``name``; ``ValueError`` listing the known names otherwise."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(
                f"unknown pool {name!r} (pools of {self.id}: {list(self.names)})"
            ) from None

    def to_record(self) -> dict[str, Any]:
        """The record in the published schema (``a_values``, ``b_values``, ``c_values`` ...)."""
        rec: dict[str, Any] = {"id": self.id, "names": list(self.names)}
        rec["a_values"] = list(self.a)
        rec["b_values"] = list(self.b)
        rec["c_values"] = list(self.tau)
        if self.d is not None:
            rec["d_value"] = self.d
        if self.method is not None:
            rec["method"] = self.method
        rec.update(self.extra)
        return rec
