"""Small builders shared by the curation tests and the ``score``/``filter`` CLI tests: a
tiny built-in world, untrained tiny two-tower models saved as model folders, and the
world's raw pool exported as shards."""

from __future__ import annotations

from pathlib import Path

import torch

from curatorch.data import DataConfig, World, build_world, export_shards
from curatorch.models import TwoTowerAdapter, build_model
from curatorch.train import config_from_dict, model_config_for

DATA = {"world": "shapes", "raw_size": 120, "eval_size": 48, "retrieval_size": 24}
DATA_TOML = "[data]\n" + "".join(
    f"{k} = {v!r}\n".replace("'", '"') for k, v in {**DATA, "probe_shots": 1}.items()
)
PER_SHARD = 40  # the raw pool of 120 in 3 shards


def tiny_world() -> World:
    """The tiny world of :data:`DATA` (120 raw pairs, about 30% of them clean)."""
    return build_world(DataConfig(**DATA, probe_shots=1))


def save_model(world: World, folder: Path, *, seed: int) -> Path:
    """An untrained tiny two-tower for ``world`` (weights seeded by ``seed``), saved as a
    model folder that ``curatorch score`` loads."""
    cfg = config_from_dict({"data": {**DATA, "probe_shots": 1}, "model": {"size": "tiny"}})
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(model_config_for(cfg, world))
    return TwoTowerAdapter(model.eval()).save(folder)


def export(world: World, folder: Path) -> list[str]:
    """The raw pool as shards ``000000.tar`` ... of :data:`PER_SHARD` pairs."""
    return [str(p) for p in export_shards(world.raw, folder, samples_per_shard=PER_SHARD)]
