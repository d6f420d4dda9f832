from pathlib import Path

import pytest

from curatorch.train import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["smoke.toml", "reference.toml"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(CONFIGS / name)
    assert isinstance(cfg, ExperimentConfig)
    # round trip through plain dicts
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_unknown_key_is_named(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[train]\nstpes = 3\n")
    with pytest.raises(ConfigError, match=r"train\.stpes"):
        load_config(f)


def test_unknown_section_is_named() -> None:
    with pytest.raises(ConfigError, match=r"\[trian\]"):
        config_from_dict({"trian": {}})


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"train": {"steps": "ten"}}, "train.steps"),
        ({"train": {"steps": 1.5}}, "train.steps"),
        ({"train": {"steps": True}}, "train.steps"),
        ({"optim": {"lr": "fast"}}, "optim.lr"),
        ({"model": {"patch_sizes": 4}}, "model.patch_sizes"),
        ({"train": {"eval_at_start": 1}}, "train.eval_at_start"),
    ],
)
def test_wrong_types_are_named(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_from_dict(raw)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"optim": {"beta2": 1.0}}, "optim.beta2"),
        ({"optim": {"lr": -1.0}}, "optim.lr"),
        ({"train": {"steps": 0}}, "train.steps"),
        ({"train": {"precision": "fp8"}}, "train.precision"),
        ({"train": {"collective_timeout_s": 0}}, "train.collective_timeout_s"),
        ({"train": {"collective_timeout_s": float("inf")}}, "train.collective_timeout_s"),
        ({"strategy": {"name": "magic"}}, "strategy.name"),
        ({"data": {"misaligned": 1.2}}, "misaligned"),
        ({"model": {"patch_sizes": [4, 8], "train_patch_size": 2}}, "model.train_patch_size"),
    ],
)
def test_invalid_values_are_named(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_from_dict(raw)


def test_int_widens_to_float_and_lists_to_tuples() -> None:
    cfg = config_from_dict({"optim": {"lr": 1}, "model": {"patch_sizes": [4, 8]}})
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.model.patch_sizes == (4, 8)


def test_overrides_parse_toml_values() -> None:
    raw = apply_overrides(
        {"train": {"steps": 5}},
        ["train.steps=7", "optim.lr=3e-4", "strategy.name=iid", "model.patch_sizes=[4, 8]"],
    )
    cfg = config_from_dict(raw)
    assert cfg.train.steps == 7
    assert cfg.optim.lr == 3e-4
    assert cfg.strategy.name == "iid"
    assert cfg.model.patch_sizes == (4, 8)


@pytest.mark.parametrize("bad", ["train.stepz=3", "nosuch.key=1", "steps=3", "train.steps"])
def test_bad_overrides_are_named(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"set|unknown"):
        apply_overrides({}, [bad])


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    f = tmp_path / "bad.toml"
    f.write_text("[train\nsteps=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(f)
