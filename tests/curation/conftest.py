"""Fixtures of the curation tests: one tiny world, two model folders, its raw pool as
three shards (built once per module)."""

from __future__ import annotations

from pathlib import Path

import pytest

from curatorch.data import World
from tests.curation.fixtures import export, save_model, tiny_world


@pytest.fixture(scope="module")
def world() -> World:
    return tiny_world()


@pytest.fixture(scope="module")
def models(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "reference": save_model(world, root / "reference", seed=1),
        "learner": save_model(world, root / "learner", seed=2),
    }


@pytest.fixture(scope="module")
def shards(world: World, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return export(world, tmp_path_factory.mktemp("shards"))
