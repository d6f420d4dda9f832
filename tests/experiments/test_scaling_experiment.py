from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from curatorch.cli import main
from curatorch.experiments import load_scaling_config, split_buckets
from curatorch.experiments.scaling import scaling_config_from_dict
from curatorch.train import ConfigError

CONFIG = "configs/scaling_experiment.toml"


def test_config_loads_with_overrides():
    cfg = load_scaling_config(CONFIG, ["scaling.passes=4", "train.batch_size=64"])
    assert cfg.scaling.passes == 4 and cfg.base.train.batch_size == 64
    assert cfg.scaling.combos == (2, 3, 4) and cfg.base.optim.min_lr_ratio == 1.0


@pytest.mark.parametrize(
    "override,match",
    [
        ("scaling.nope=1", "unknown config key scaling.nope"),
        ("scaling.combos=[5]", r"scaling.combos entries must be in \[2, 4\], got 5"),
        ("scaling.passes='x'", "scaling.passes must be an integer, got str 'x'"),
        ("scaling.fit_d=1", "scaling.fit_d must be a boolean, got int 1"),
        ("scaling.combos=[2, 'x']", r"scaling.combos\[1\] must be an integer"),
        ("train.nope=1", "unknown config key train.nope"),
        ("nope.passes=1", r"unknown config section \[nope\]"),
        ("scaling=1", "--set expects section.key=value"),
    ],
)
def test_config_errors_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_scaling_config(CONFIG, [override])


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"reference_steps": "300"}, "scaling.reference_steps must be an integer, got str"),
        ({"tolerance": True}, "scaling.tolerance must be a number, got bool"),
        ({"method": 1}, "scaling.method must be a string"),
        ({"bogus": 1}, "unknown config key scaling.bogus"),
        ({"d": 2.0}, r"scaling.d must be in \[0, 1\]"),
    ],
)
def test_wrong_types_in_the_file_name_the_key(tmp_path, table, match):
    """The [scaling] table goes through the shared schema machinery (one ConfigError)."""
    import tomllib

    raw = tomllib.loads(Path(CONFIG).read_text())
    raw["scaling"].update(table)
    with pytest.raises(ConfigError, match=match):
        scaling_config_from_dict(raw)


def test_config_round_trips_the_shared_sections():
    cfg = load_scaling_config(CONFIG)
    assert isinstance(cfg.scaling.tau_max, float) and cfg.scaling.tau_max == 50.0
    assert cfg.base.data.raw_size == 32768 and cfg.base.train.threads == 1
    with pytest.raises(ConfigError, match=r"\[scaling\] must be a table"):
        scaling_config_from_dict({"scaling": 3})


def test_split_buckets():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.7, 0.2, 0.8, 0.0, 0.05])
    names, index = split_buckets(scores, buckets=2, multiple=2)
    assert names == ["top0to50p", "top50to100p"]
    assert index[0].tolist() == [1, 6, 4, 2] and index[1].tolist() == [3, 5, 0, 8]
    with pytest.raises(ValueError, match=r"^buckets"):
        split_buckets(scores, buckets=20)


@pytest.mark.slow
def test_experiment_end_to_end_tiny(tmp_path, capsys):
    args = [
        "scaling",
        "experiment",
        CONFIG,
        "--out",
        str(tmp_path / "exp"),
        "--set",
        "data.raw_size=512",
        "--set",
        "data.eval_size=96",
        "--set",
        "data.retrieval_size=32",
        "--set",
        "train.batch_size=32",
        "--set",
        "scaling.buckets=2",
        "--set",
        "scaling.combos=[2]",
        "--set",
        "scaling.passes=2",
        "--set",
        "scaling.reference_steps=4",
    ]
    assert main(args) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(rec["max_abs_diff_per_union"]) == {"top100"}
    assert (tmp_path / "exp" / "comparison.png").is_file()
    assert (tmp_path / "exp" / "fit.jsonl").is_file()
