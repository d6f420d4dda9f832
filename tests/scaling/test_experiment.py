from __future__ import annotations

import json

import pytest
import torch

from curatorch.cli import main
from curatorch.experiments import load_scaling_config, split_buckets
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
        ("scaling.passes='x'", "scaling.passes must be like 10"),
        ("train.nope=1", "unknown config key train.nope"),
    ],
)
def test_config_errors_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_scaling_config(CONFIG, [override])


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
