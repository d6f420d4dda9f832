import dataclasses

import pytest

from curatorch.data import DataConfig, available_worlds, build_world, register_world
from curatorch.data import registry as registry_module


def test_defaults_are_the_specified_ones():
    cfg = DataConfig()
    assert (cfg.misaligned, cfg.near_miss, cfg.boilerplate, cfg.degraded) == (
        0.35, 0.15, 0.10, 0.10,
    )  # fmt: skip
    assert (cfg.world, cfg.image_size, cfg.raw_size, cfg.curated_fraction) == (
        "shapes", 16, 50_000, 0.05,
    )  # fmt: skip
    assert cfg.pool == "raw" and cfg.zipf_exponent == 1.0 and cfg.seed == 0
    assert (cfg.eval_size, cfg.retrieval_size, cfg.probe_shots) == (2000, 1000, 10)
    cfg.validate()
    assert cfg.curated_size == 2500


def test_curated_size_is_at_least_one():
    assert DataConfig(raw_size=3, curated_fraction=0.01).curated_size == 1


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DataConfig().seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"misaligned": 1.2}, "data.misaligned must be in [0, 1], got 1.2"),
        ({"near_miss": -0.1}, "data.near_miss must be in [0, 1], got -0.1"),
        ({"misaligned": 0.5, "near_miss": 0.5, "degraded": 0.2}, "must sum to <= 1"),
        ({"image_size": 24}, "data.image_size must be 16 or 32 for the built-in worlds, got 24"),
        ({"raw_size": 0}, "data.raw_size must be >= 1, got 0"),
        ({"eval_size": 0}, "data.eval_size must be >= 1, got 0"),
        ({"retrieval_size": -5}, "data.retrieval_size must be >= 1, got -5"),
        ({"probe_shots": 0}, "data.probe_shots must be >= 1, got 0"),
        ({"pool": "web"}, "data.pool must be 'raw' or 'curated', got 'web'"),
        ({"world": "shape"}, "data.world must be one of"),
        ({"curated_fraction": 0.0}, "data.curated_fraction must be in (0, 1], got 0.0"),
        ({"zipf_exponent": -1.0}, "data.zipf_exponent must be >= 0, got -1.0"),
        ({"seed": -1}, "data.seed must be >= 0, got -1"),
        ({"raw_size": 10.5}, "data.raw_size must be an int, got 10.5"),
        ({"degraded": float("nan")}, "data.degraded must be a finite number"),
    ],
)
def test_validate_names_the_field_and_value(changes, message):
    cfg = DataConfig(**changes)
    with pytest.raises(ValueError) as e:
        cfg.validate()
    assert message in str(e.value)


def test_build_world_validates():
    with pytest.raises(ValueError, match=r"data\.misaligned"):
        build_world(DataConfig(misaligned=2.0))


def test_registry_lists_builtin_worlds():
    assert {"shapes", "digits"} <= set(available_worlds())


def test_register_world_dispatches_by_exact_name():
    calls = []

    def builder(cfg):
        calls.append(cfg)
        return "built"

    register_world("tiny_test_world", builder)
    try:
        assert "tiny_test_world" in available_worlds()
        with pytest.raises(ValueError, match="already registered"):
            register_world("tiny_test_world", builder)
        cfg = DataConfig(world="tiny_test_world")
        assert build_world(cfg) == "built" and calls == [cfg]
        # no substring matching
        with pytest.raises(ValueError, match=r"data\.world"):
            DataConfig(world="tiny_test").validate()
    finally:
        registry_module._WORLDS.pop("tiny_test_world", None)


def test_register_world_rejects_bad_arguments():
    with pytest.raises(ValueError, match="name"):
        register_world("", lambda cfg: cfg)
    with pytest.raises(ValueError, match="builder"):
        register_world("x_not_callable", 3)  # type: ignore[arg-type]
