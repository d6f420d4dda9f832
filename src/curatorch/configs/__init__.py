"""The TOML experiment configs shipped with curatorch (package data), and how a config
argument is resolved to a file.

``resolve_config("smoke")`` is the shipped ``smoke.toml`` from any working folder; a path
that exists is used as it is. The repository's ``configs/`` folder is a link to this one.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CONFIG_DIR", "resolve_config", "shipped_configs"]

CONFIG_DIR = Path(__file__).resolve().parent
"""The folder holding the shipped ``*.toml`` configs."""


def shipped_configs() -> list[str]:
    """Names of the shipped configs (file names without ``.toml``), sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def _shipped_name(text: str) -> str | None:
    """``text`` as the name of a shipped config (``smoke`` or ``smoke.toml``), else None."""
    if not text or os.sep in text or (os.altsep and os.altsep in text):
        return None
    stem = text[: -len(".toml")] if text.endswith(".toml") else text
    return stem if stem and (CONFIG_DIR / f"{stem}.toml").is_file() else None


def resolve_config(name_or_path: str | os.PathLike[str]) -> Path:
    """The config file that ``name_or_path`` names.

    1. An existing file is used as it is (a path relative to the working folder wins over
       a shipped config of the same name).
    2. Otherwise a bare name, ``smoke`` or ``smoke.toml``, is the shipped config of that
       name (``curatorch.configs.CONFIG_DIR / "smoke.toml"``). A bare ``smoke`` while
       ``./smoke.toml`` exists is ambiguous and refused.
    3. Otherwise :class:`~curatorch.train.config.ConfigError` naming the path and listing
       the shipped names.
    """
    from curatorch.train.config import ConfigError  # on first use: train imports torch

    text = os.fspath(name_or_path)
    path = Path(text)
    if path.is_file():
        return path
    name = _shipped_name(text)
    if name is not None:
        local = Path(f"{text}.toml")
        if not text.endswith(".toml") and local.is_file():
            raise ConfigError(
                f"config {text!r} is ambiguous: {local} exists here and {name!r} is also a "
                f"shipped config; pass ./{local} or {CONFIG_DIR / (name + '.toml')}"
            )
        return CONFIG_DIR / f"{name}.toml"
    names = ", ".join(shipped_configs())
    what = "is a folder, not a TOML file" if path.is_dir() else "not found"
    raise ConfigError(
        f"config {text} {what}; pass a TOML file or the name of a shipped config ({names})"
    )
