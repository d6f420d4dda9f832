"""Registry of the built-in worlds: world name -> builder."""

from __future__ import annotations

from collections.abc import Callable

from curatorch.data.config import DataConfig
from curatorch.data.dataset import World
from curatorch.data.digits import build_digits_world
from curatorch.data.shapes import build_shapes_world

__all__ = ["available_worlds", "build_world", "register_world"]

WorldBuilder = Callable[[DataConfig], World]

_WORLDS: dict[str, WorldBuilder] = {
    "shapes": build_shapes_world,
    "digits": build_digits_world,
}


def register_world(name: str, builder: WorldBuilder, *, replace: bool = False) -> None:
    """Register ``builder`` under ``name``.

    Raises ``ValueError`` if ``name`` is empty or already registered (unless
    ``replace=True``), or if ``builder`` is not callable.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not callable(builder):
        raise ValueError(f"builder must be callable, got {builder!r}")
    if name in _WORLDS and not replace:
        raise ValueError(f"name {name!r} is already registered; pass replace=True to replace it")
    _WORLDS[name] = builder


def available_worlds() -> list[str]:
    """Registered world names, sorted."""
    return sorted(_WORLDS)


def build_world(cfg: DataConfig) -> World:
    """Validate ``cfg`` and build the world registered as ``cfg.world``."""
    if not isinstance(cfg, DataConfig):
        raise ValueError(f"cfg must be a DataConfig, got {type(cfg).__name__}")
    cfg.validate()
    return _WORLDS[cfg.world](cfg)
