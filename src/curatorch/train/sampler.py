"""Deterministic data order: a fresh seeded permutation of the pool every epoch.

The sampler's whole state is ``(epoch, offset)``, so a resumed run draws exactly the
examples an uninterrupted run would have drawn.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["EpochSampler"]


class EpochSampler:
    """Draws example indices in ``[0, size)`` without replacement within each epoch.

    Epoch ``e`` uses the permutation from a generator seeded with ``(seed, e)``; a draw that
    crosses an epoch boundary takes the rest of the epoch and continues in the next.
    """

    def __init__(self, size: int, *, seed: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.offset = 0
        self._perm: torch.Tensor | None = None

    def _permutation(self) -> torch.Tensor:
        if self._perm is None:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._perm = torch.randperm(self.size, generator=gen)
        return self._perm

    def draw(self, n: int) -> torch.Tensor:
        """The next ``n`` indices, int64 ``[n]``."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        parts = []
        while n > 0:
            perm = self._permutation()
            take = min(n, self.size - self.offset)
            parts.append(perm[self.offset : self.offset + take])
            self.offset += take
            n -= take
            if self.offset == self.size:
                self.epoch += 1
                self.offset = 0
                self._perm = None
        return torch.cat(parts)

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "seed": self.seed, "epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("size") != self.size:
            raise ValueError(
                f"sampler state is for a pool of {state.get('size')} examples, "
                f"this pool has {self.size}"
            )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.offset = int(state["offset"])
        self._perm = None
