"""``curatorch pareto compare`` on three modalities (coloured-gray-profile digits): the
shipped ``pareto3`` config by name, a short comparison end to end, OGM-GE on three
modalities, and the configuration errors raised before anything is trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curatorch.cli import main
from curatorch.configs import resolve_config
from curatorch.train import ConfigError
from curatorch.train.multimodal import load_pareto_config, pareto_config_from_dict
from tests.helpers import last_json

# a few steps of the shipped config: enough for every report cell, fast on CPU
SHORT = [
    "--set", "train.steps=6",
    "--set", "train.eval_every=6",
    "--set", "train.checkpoint_every=6",
    "--set", "train.diag_every=2",
    "--set", "train.batch_size=32",
    "--set", "model.hidden=16",
    "--set", "model.embed_dim=8",
    "--set", "compare.seeds=[0]",
]  # fmt: skip
MODS = ("gray", "colour", "profile")


def test_pareto3_is_shipped_and_is_pareto_with_a_third_modality() -> None:
    three, two = (
        load_pareto_config(resolve_config("pareto3")),
        load_pareto_config(resolve_config("pareto")),
    )
    assert three.data.dataset == "coloured_gray_profile_digits"
    assert three.data.profile_noise == 0.05
    assert three.compare.alone == MODS
    # everything else is the two-modality experiment
    assert three.model == two.model and three.optim == two.optim and three.train == two.train
    assert three.pareto == two.pareto and three.compare.methods == two.compare.methods


def test_compare_on_three_modalities_by_name(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    methods = ["--set", 'compare.methods=["uniform", "mmpareto"]']
    args = ["pareto", "compare", "pareto3", "--out", "cmp", "--no-progress", *SHORT, *methods]
    assert main(args) == 0
    res = last_json(capsys.readouterr().out)
    for m in MODS:
        assert 0.0 <= res[f"mmpareto/test_acc/{m}"] <= 1.0 and f"alone/{m}" in res
    assert "mmpareto profile head >= profile alone" in res["checks"]
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "profile noise 0.05" in report
    header = next(line for line in report.splitlines() if line.startswith("| method"))
    assert "profile head acc" in header and "conflict rate profile" in header
    rows = [line for line in report.splitlines() if line.startswith("| mmpareto |")]
    assert len(rows) == 1 and rows[0].count("|") == header.count("|")  # every cell filled
    assert "| profile alone |" in report
    assert (tmp_path / "cmp" / "cos.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert summary["modalities"] == list(MODS)
    assert len(summary["methods"]["mmpareto"]["conflict_rate/profile"]) == 1


def test_ogm_ge_trains_three_modalities(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ogm"
    args = ["pareto", "train", "pareto3", "--out", str(out), "--no-progress", *SHORT]
    assert main([*args, "--set", "pareto.method=ogm_ge"]) == 0
    res = last_json(capsys.readouterr().out)
    assert res["modalities"] == list(MODS) and "train_loss/profile" in res
    diags = [json.loads(line) for line in (out / "diagnostics.jsonl").read_text().splitlines()]
    assert diags and all(f"ogm_coeff/{m}" in d for d in diags for m in MODS)


def test_conv_encoder_on_the_profile_is_a_config_error_before_any_run(
    tmp_path: Path, capsys
) -> None:
    out = tmp_path / "conv"
    args = ["pareto", "compare", "pareto3", "--out", str(out), "--no-progress", *SHORT]
    assert main([*args, "--set", "model.encoder=conv"]) == 2
    err = capsys.readouterr().err
    assert "model.encoder = 'conv'" in err and "profile (1, 16)" in err
    assert not out.exists()


def test_compare_checks_modalities_before_any_run() -> None:
    from curatorch.experiments.pareto_compare import _check_fits
    from curatorch.train.multimodal import build_multimodal_splits

    def cfg(*overrides: str):
        return load_pareto_config(resolve_config("pareto3"), list(overrides))

    splits = build_multimodal_splits(cfg().data)
    # without the profile the conv encoder fits: every other modality is (C, H, W)
    two = cfg("model.encoder=conv", 'data.modalities=["gray", "colour"]', 'compare.alone=["gray"]')
    assert _check_fits(two, splits) == ["gray", "colour"]
    with pytest.raises(ConfigError, match=r"model\.encoder = 'conv'.*profile \(1, 16\)"):
        _check_fits(cfg("model.encoder=conv"), splits)
    with pytest.raises(ConfigError, match=r"compare\.alone names 'colour'"):
        _check_fits(cfg('data.modalities=["gray"]'), splits)
    with pytest.raises(ConfigError, match=r"data\.modalities names \['sound'\]"):
        _check_fits(cfg('data.modalities=["sound"]', "compare.alone=[]"), splits)


@pytest.mark.parametrize("bad", [-0.05, float("nan"), float("inf")])
def test_profile_noise_is_a_config_error_naming_it(bad: float) -> None:
    raw = {"data": {"dataset": "coloured_gray_profile_digits", "profile_noise": bad}}
    with pytest.raises(ConfigError, match=r"data\.profile_noise"):
        pareto_config_from_dict(raw)
