"""`curatorch compare` and `demo`: config schema, target arithmetic, tiny end-to-end runs."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from curatorch.cli import main
from curatorch.experiments.jest_compare import (
    aggregate_runs,
    parse_compare_config,
    summarize,
    to_target,
)
from curatorch.train import ConfigError
from tests.helpers import compare_once

TINY = """
[data]
world = "shapes"
raw_size = 1500
eval_size = 200
retrieval_size = 100
probe_shots = 2
curated_fraction = 0.2

[model]
size = "tiny"
attention = "math"

[optim]
warmup_steps = 2

[train]
threads = 1
steps = 6
batch_size = 16
eval_every = 3
checkpoint_every = 6

[eval]
batch_size = 256

[strategy]
chunks = 4

[compare]
seeds = [0, 1]
reference_steps = 4
analyze_seeds = 1
quick = ["train.steps=3", "compare.seeds=[0]", "compare.analyze=false"]

[[compare.strategies]]
name = "iid"
strategy = { name = "iid" }

[[compare.strategies]]
name = "jest"
label = "JEST f=0.5"
strategy = { name = "jest", filter_ratio = 0.5 }

[[compare.strategies]]
name = "flexi"
strategy = { name = "flexi-jest", filter_ratio = 0.5 }
"""


@pytest.fixture(autouse=True)
def _restore_threads():
    # train.threads = 1 (as in the demo) sets torch's global thread count: put it back
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _raw() -> dict:
    import tomllib

    return tomllib.loads(TINY)


def test_config_parses_and_derives_runs() -> None:
    cc = parse_compare_config(_raw())
    assert [s.name for s in cc.compare.strategies] == ["iid", "jest", "flexi"]
    assert set(cc.runs["jest"]) == {0, 1}
    jest = cc.runs["jest"][1]
    assert jest.strategy.name == "jest" and jest.strategy.filter_ratio == 0.5
    assert jest.train.seed == 1
    # same learner and training budget for every strategy
    for runs in cc.runs.values():
        for cfg in runs.values():
            assert (cfg.train.steps, cfg.train.batch_size, cfg.model) == (
                6,
                16,
                cc.base.model,
            )


def test_overrides_for_both_tables_and_quick() -> None:
    cc = parse_compare_config(
        _raw(), ["compare.seeds=[3]", "train.steps=4", "compare.only=['jest']"]
    )
    assert cc.compare.seeds == (3,)
    assert cc.base.train.steps == 4
    assert [s.name for s in cc.compare.active] == ["iid", "jest"]  # baseline always runs
    quick = parse_compare_config(_raw(), quick=True)
    assert quick.compare.seeds == (0,) and quick.base.train.steps == 3
    assert not quick.compare.analyze


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda r: r["compare"].update(bogus=1), "compare.bogus"),
        (lambda r: r["compare"]["strategies"][1].update(train={"steps": 9}), "strategies[1].train"),
        (lambda r: r["compare"].update(metric="loss"), "compare.metric"),
        (lambda r: r["compare"].update(baseline="nope"), "compare.baseline"),
        (lambda r: r["compare"].update(seeds=[0, 0]), "compare.seeds"),
        (lambda r: r["compare"].update(workers=0), "compare.workers"),
        (lambda r: r["compare"].update(workers="2"), "compare.workers"),
        (lambda r: r["compare"]["strategies"][1]["strategy"].update(bogus=1), "strategy.bogus"),
        (lambda r: r["compare"]["strategies"].append({"name": "iid"}), "unique"),
        (lambda r: r.update(bogus={}), "[bogus]"),
    ],
)
def test_bad_config_names_the_key(mutate, needle: str) -> None:
    raw = _raw()
    mutate(raw)
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        parse_compare_config(raw)


def test_bad_compare_override_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"compare\.nope"):
        parse_compare_config(_raw(), ["compare.nope=1"])


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("compare.nope=1", "unknown config key compare.nope in --set"),
        ("strategy.nope=1", "unknown config key strategy.nope in --set"),
        ("nope.x=1", "unknown config section [nope] in --set"),
        ("compare.seeds", "--set expects section.key=value"),
        ("compare.seeds=['a']", "compare.seeds[0] must be an integer"),
        ("compare.analyze=2", "compare.analyze must be a boolean"),
        ("compare.strategies=3", "compare.strategies must be a list of tables"),
    ],
)
def test_set_is_checked_against_the_fields(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        parse_compare_config(_raw(), [override])


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda r: r["compare"]["strategies"][1].update(bogus=1), "compare.strategies[1].bogus"),
        (
            lambda r: r["compare"]["strategies"][1]["strategy"].update(filter_ratio="x"),
            "compare.strategies[1].strategy.filter_ratio must be a number",
        ),
        (
            lambda r: r["compare"]["strategies"][2].update(optim={"lr": "fast"}),
            "compare.strategies[2].optim.lr must be a number",
        ),
        (
            lambda r: r["compare"]["strategies"][1].update(strategy=3),
            "[compare.strategies[1].strategy]",
        ),
        (
            lambda r: r["compare"]["strategies"][1].pop("name"),
            "compare.strategies[1].name is required",
        ),
        (lambda r: r["compare"]["strategies"].append(7), "[compare.strategies[3]] must be a table"),
        (lambda r: r["compare"]["strategies"][1].update(label=1), "compare.strategies[1].label"),
        (
            lambda r: r["compare"]["strategies"][1]["strategy"].update(chunks=0),
            "compare.strategies[1] ('jest'): strategy.chunks must be >= 1",
        ),
        (lambda r: r["compare"].update(quick=["compare.nope=1"]), "compare.quick: unknown"),
        (lambda r: r["compare"].update(quick="train.steps=1"), "compare.quick must be a list"),
    ],
)
def test_bad_strategy_entries_name_the_key(mutate, needle: str) -> None:
    raw = _raw()
    mutate(raw)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        parse_compare_config(raw, quick=True)


def test_no_placeholder_reference_until_the_reference_exists() -> None:
    """A strategy needing the comparison's reference has none until run_compare has one:
    its config is validated in everything else, and refused in full until filled in."""
    raw = _raw()
    raw["compare"]["strategies"].append(
        {"name": "own", "strategy": {"name": "jest", "reference": "some/cache"}}
    )
    cc = parse_compare_config(raw)
    jest = cc.runs["jest"][0]
    assert jest.strategy.reference == "" and jest.strategy.needs_reference
    assert cc.runs["iid"][0].strategy.reference == ""
    with pytest.raises(ConfigError, match=r"strategy\.reference is required"):
        jest.validate()
    filled = cc.run_config("jest", 0, reference="out/reference-cache")
    assert filled.strategy.reference == "out/reference-cache"
    assert dataclasses.replace(filled, strategy=jest.strategy) == jest  # nothing else changes
    assert cc.run_config("iid", 1, reference="out/reference-cache").strategy.reference == ""
    # a strategy naming its own reference keeps it
    assert cc.run_config("own", 0, reference="x").strategy.reference == "some/cache"
    # the entries' tables override the shared sections, whose other values they keep
    assert jest.strategy.chunks == 4 and jest.strategy.filter_ratio == 0.5
    assert cc.compare.strategies[1].strategy == jest.strategy


def test_to_target_interpolates_and_reports_never() -> None:
    assert to_target([0, 10, 20], [0.0, 0.2, 0.6], 0.4) == pytest.approx(15.0)
    assert to_target([0, 10], [0.5, 0.6], 0.4) == 0.0
    assert to_target([0, 10], [0.1, 0.2], 0.4) is None


def test_summary_speedups() -> None:
    def rec(step: int, score: float, flops: float) -> dict:
        m = dict.fromkeys(("zeroshot_acc", "fewshot_acc", "i2t_r1", "t2i_r1"), score)
        return {
            "step": step,
            "examples_seen": step * 10,
            "flops_total": flops,
            "mean_score": score,
            **m,
        }

    metrics = ["mean_score", "zeroshot_acc"]
    iid = aggregate_runs(
        {
            0: [rec(0, 0, 0), rec(10, 0.2, 100), rec(20, 0.4, 200)],
            1: [rec(0, 0, 0), rec(10, 0.2, 100), rec(20, 0.4, 200)],
        },
        metrics,
    )
    fast = aggregate_runs(
        {
            0: [rec(0, 0, 50), rec(10, 0.3, 300), rec(20, 0.6, 550)],
            1: [rec(0, 0, 50), rec(10, 0.5, 300), rec(20, 0.8, 550)],
        },
        metrics,
    )
    assert fast["mean_score"] == pytest.approx([0.0, 0.4, 0.7])
    assert fast["mean_score_min"][1] == pytest.approx(0.3)
    s = summarize({"iid": iid, "fast": fast}, baseline="iid")
    assert s["strategies"]["fast"]["examples_to_target"] == 100
    assert s["speedup_examples"]["fast"] == pytest.approx(2.0)
    assert s["strategies"]["fast"]["flops_to_target"] == pytest.approx(300)
    assert s["speedup_flops"]["fast"] == pytest.approx(200 / 300, abs=1e-3)
    assert s["speedup_examples"]["iid"] == pytest.approx(1.0)
    # a score that dips below its untrained start: step 0 does not reach the target
    dip = aggregate_runs(
        {0: [rec(0, 0.5, 0), rec(10, 0.1, 100), rec(20, 0.3, 200)]}, ["mean_score"]
    )
    base = aggregate_runs({0: [rec(0, 0.5, 0), rec(10, 0.2, 100), rec(20, 0.4, 200)]}, metrics)
    d = summarize({"iid": base, "dip": dip}, baseline="iid")
    assert d["strategies"]["dip"]["examples_to_target"] is None
    assert d["strategies"]["iid"]["examples_to_target"] == 200
    assert set(s) == {"strategies", "speedup_examples", "speedup_flops"}


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """TINY compared end to end once, in this process (``compare.workers = 1``): its
    config file and folder, the printed summary and ``results.json`` as first written."""
    ran = compare_once(tmp_path_factory.mktemp("compare"), TINY)
    ran["result"] = ran.pop("summary")
    return ran


def test_compare_end_to_end(compared: dict, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, out, result = compared["cfg"], compared["out"], compared["result"]
    assert set(result) == {"strategies", "speedup_examples", "speedup_flops"}
    assert set(result["strategies"]) == {"iid", "jest", "flexi"}
    for s in result["strategies"].values():
        assert set(s) == {"examples_to_target", "flops_to_target", "final_mean_score", "final"}
        assert 0.0 <= s["final_mean_score"] <= 1.0
        assert s["final"]["mean_score"] == s["final_mean_score"]
    assert result["strategies"]["iid"]["examples_to_target"] is not None
    for name in (
        "report.md",
        "results.json",
        "score_vs_examples.png",
        "score_vs_flops.png",
        "learnability_matrix.png",
        "learnability_vs_chunks.png",
        "learnability_vs_filter_ratio.png",
    ):
        assert (out / name).is_file(), name
    assert (out / "score_vs_flops.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "JEST f=0.5" in report and "score_vs_flops.png" in report
    # JEST's total FLOPs include scoring: more than IID's for the same examples
    res = compared["res"]
    assert res["curves"]["jest"]["flops_total"][-1] > res["curves"]["iid"]["flops_total"][-1]
    assert res["curves"]["jest"]["examples_seen"] == res["curves"]["iid"]["examples_seen"]
    # the recorded configs name the reference the runs used, not the parser's placeholder
    assert res["configs"]["jest"]["strategy"]["reference"] == str(out / "reference-cache")
    # a second call reuses the finished runs
    assert main(["compare", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    # another budget in the same folder: refused with a hint, nothing retrained silently
    rc = main(["compare", str(cfg), "--out", str(out), "--no-progress", "--set", "train.steps=5"])
    assert rc == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_run_failing_in_a_worker_is_one_line(compared: dict, capsys) -> None:
    """``compare.workers = 2`` with a run that fails in its worker process (here: another
    budget in a folder of finished runs) exits 2 with one line. That runs trained in
    workers equal those trained one after another: test_compare_references.py."""
    args = ["compare", str(compared["cfg"]), "--out", str(compared["out"]), "--no-progress"]
    args += ["--set", "compare.workers=2", "--set", "train.steps=5"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and err.count("\n") == 1, err


def test_demo_quick_with_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cmp.toml"
    cfg.write_text(TINY)
    out = tmp_path / "demo"
    rc = main(["demo", "--quick", "--config", str(cfg), "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert f"report: {out / 'report.md'}" in text
    res = json.loads((out / "results.json").read_text())
    assert res["seeds"] == [0] and res["budget"]["steps"] == 3
    assert "--quick" in res["command"]


def test_cli_config_error_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "cmp.toml"
    cfg.write_text(TINY.replace("analyze_seeds = 1", "analyze_seeds = 1\nwhat = 2"))
    assert main(["compare", str(cfg), "--out", str(tmp_path / "o")]) == 2


@pytest.mark.parametrize("name", ["demo.toml", "paper_sweep.toml", "flexi_fine_patches.toml"])
@pytest.mark.parametrize("quick", [False, True])
def test_shipped_compare_configs_load(name: str, quick: bool) -> None:
    from curatorch.experiments.jest_compare import load_compare_config

    root = Path(__file__).resolve().parents[2]
    cc = load_compare_config(root / "configs" / name, quick=quick)
    assert cc.runs and all(cc.runs[s] for s in cc.runs)
