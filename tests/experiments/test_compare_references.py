"""``[[compare.references]]`` and ``[[compare.pools]]``: schema errors naming the key,
dependency order, the offline cut, the pool record beside a run, and a tiny comparison
whose strategies name references and pools (reused, refused on another pool, the same
in worker processes)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from curatorch.cli import main
from curatorch.data import PairDataset, save_embedding_cache
from curatorch.experiments.compare_references import (
    PoolSpec,
    ReferenceRun,
    check_pool_record,
    cut_pool,
    needed_references,
)
from curatorch.experiments.jest_compare import parse_compare_config
from curatorch.train import ConfigError, OutputDirError
from tests.helpers import STUDY_TINY, compare_once


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _raw() -> dict:
    import tomllib

    raw = tomllib.loads(STUDY_TINY)
    raw.pop("study")
    return raw


def _c(raw: dict) -> dict:
    return raw["compare"]


def test_config_parses_references_pools_and_links() -> None:
    cc = parse_compare_config(_raw())
    c = cc.compare
    assert [r.name for r in c.references] == ["strong", "weak", "short"]
    assert c.references[1].pool == "top50" and c.references[2].steps == 2
    assert c.pools == (PoolSpec(name="top50", filter="strong", keep_fraction=0.5),)
    by_name = {s.name: s for s in c.strategies}
    assert by_name["jest-top50"].reference == "strong" and by_name["jest-top50"].pool == "top50"
    assert by_name["iid"].reference == "" and by_name["iid"].pool == ""
    # every strategy names a listed reference: the comparison trains no reference of its own
    assert not c.needs_default_reference(cc.runs)
    quick = parse_compare_config(_raw(), quick=True)
    assert quick.compare.reference_steps_scale == 0.5
    assert quick.compare.reference_steps_for(4) == 2 and quick.compare.reference_steps_for(0) == 0


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda r: _c(r)["references"][0].update(bogus=1), "compare.references[0].bogus"),
        (lambda r: _c(r)["pools"][0].update(bogus=1), "compare.pools[0].bogus"),
        (lambda r: _c(r)["references"][0].pop("name"), "compare.references[0].name is required"),
        (lambda r: _c(r)["pools"][0].pop("name"), "compare.pools[0].name is required"),
        (lambda r: _c(r)["references"][1].update(pool="nope"), "compare.references[1].pool must"),
        (lambda r: _c(r)["references"][1].update(steps=-1), "compare.references[1].steps"),
        (lambda r: _c(r)["references"].append({"name": "weak"}), "names must be unique"),
        (lambda r: _c(r)["references"][0].update(name="a b"), "compare.references[0].name"),
        (
            lambda r: _c(r)["references"][2].update(path="some/cache"),
            "compare.references[2] ('short'): path gives the reference; steps",
        ),
        (lambda r: _c(r)["pools"][0].update(filter="nope"), "compare.pools[0].filter must name"),
        (lambda r: _c(r)["pools"][0].update(by="learnability"), "compare.pools[0].by must be"),
        (lambda r: _c(r)["pools"][0].update(keep_fraction=0), "compare.pools[0].keep_fraction"),
        (lambda r: _c(r)["pools"][0].update(keep_fraction=1.5), "compare.pools[0].keep_fraction"),
        (lambda r: _c(r)["pools"][0].update(name="raw"), "is a pool of the world"),
        (lambda r: _c(r)["pools"][0].update(filter="weak"), "form a cycle: weak -> pool top50"),
        (lambda r: _c(r).update(references=3), "compare.references must be a list of tables"),
        (lambda r: _c(r).update(reference_steps_scale=0), "compare.reference_steps_scale"),
        (
            lambda r: _c(r)["strategies"][1].update(reference="nope"),
            "compare.strategies[1] ('jest-weak').reference must name",
        ),
        (
            lambda r: _c(r)["strategies"][0].update(reference="strong"),
            "strategy 'iid' with score 'learnability' uses no reference",
        ),
        (
            lambda r: _c(r)["strategies"][1]["strategy"].update(reference="a/cache"),
            "reference (a compare.references name) and strategy.reference (a path)",
        ),
        (
            lambda r: _c(r)["strategies"][4].update(pool="nope"),
            "compare.strategies[4] ('iid-top50').pool must name",
        ),
        (
            lambda r: r["data"].update(shards="x/{000000..000001}.tar"),
            "compare.references ['strong', 'weak', 'short']: a reference trained",
        ),
    ],
)
def test_bad_entries_name_the_key(mutate, needle: str) -> None:
    raw = _raw()
    mutate(raw)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        parse_compare_config(raw)


def test_needed_references_come_after_what_they_need() -> None:
    refs = [
        ReferenceRun("weak", pool="top50"),
        ReferenceRun("strong"),
        ReferenceRun("other", pool="raw"),
        ReferenceRun("given", path="x"),
    ]
    pools = [PoolSpec("top50", filter="strong"), PoolSpec("top10", filter="other")]
    order = needed_references(refs, pools, named=["weak", "given"], pools_named=["top50"])
    assert order == (["strong", "weak", "given"], ["top50"])
    # a strategy's pool brings its filter; nothing else is prepared
    assert needed_references(refs, pools, named=[], pools_named=["top10"]) == (["other"], ["top10"])


def _pool(n: int = 10) -> PairDataset:
    from curatorch.data import build_world
    from curatorch.data.config import DataConfig

    world = build_world(DataConfig(raw_size=n, eval_size=10, retrieval_size=10, probe_shots=1))
    return world.raw


def _cache(tmp_path: Path, pool: PairDataset, cosines: list[float]) -> Path:
    """A cache whose pairs have these image-text cosines (unit vectors in 2-d)."""
    angle = torch.arccos(torch.tensor(cosines))
    image = torch.tensor([[1.0, 0.0]]).repeat(len(cosines), 1)
    text = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return save_embedding_cache(
        tmp_path / "cache", ids=pool.ids, image=image, text=text, logit_scale=10.0, logit_bias=-5.0
    )


def test_cut_pool_keeps_the_top_fraction_with_ties_by_key(tmp_path: Path) -> None:
    pool = _pool(10)
    cos = [0.1, 0.9, 0.5, 0.9, -0.2, 0.3, 0.9, 0.0, 0.7, 0.2]
    cache = _cache(tmp_path, pool, cos)
    cut = cut_pool(PoolSpec("top", filter="r", keep_fraction=0.3), cache=cache, pool=pool)
    assert cut.index.tolist() == [1, 3, 6]  # the three 0.9s, in pool order
    cut = cut_pool(PoolSpec("top", filter="r", keep_fraction=0.2), cache=cache, pool=pool)
    assert cut.index.tolist() == [1, 3]  # ties: the smaller keys first
    assert cut.facts["size"] == 2 and cut.facts["of"] == 10
    assert cut.facts["cut"] == pytest.approx(0.9, abs=1e-3)
    clean = (pool.noise[cut.index] == 0).float().mean().item()
    assert cut.facts["clean_fraction"] == pytest.approx(clean, abs=1e-4)
    # ref_loss ranks the same way here (one temperature and bias): low loss is best
    by_loss = cut_pool(
        PoolSpec("l", filter="r", by="ref_loss", keep_fraction=0.2), cache=cache, pool=pool
    )
    assert by_loss.index.tolist() == [1, 3] and by_loss.record["sha256"] == cut.record["sha256"]
    assert np.isclose(by_loss.facts["cut"], np.log1p(np.exp(-(10 * 0.9 - 5))), atol=1e-2)


def test_pool_record_refuses_a_run_of_another_pool(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "s" / "seed0"
    a = {"pool": "top50", "size": 5, "sha256": "a"}
    check_pool_record(run, a, overwrite=False)  # nothing there yet: recorded
    assert json.loads((run.parent / "seed0.pool.json").read_text()) == a
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    check_pool_record(run, a, overwrite=False)  # the same pool: fine
    with pytest.raises(
        OutputDirError, match=r"trained on pool 'top50' \(5 examples\), not on data"
    ):
        check_pool_record(run, None, overwrite=False)
    with pytest.raises(OutputDirError, match="not on pool 'top20'"):
        check_pool_record(run, {**a, "pool": "top20"}, overwrite=False)
    check_pool_record(run, None, overwrite=True)  # --overwrite: the record goes
    assert not (run.parent / "seed0.pool.json").exists()
    with pytest.raises(OutputDirError, match=r"trained on data\.pool, not on pool 'top50'"):
        check_pool_record(run, a, overwrite=False)


CMP_TINY = STUDY_TINY.split("[study]")[0].replace("seeds = [0, 1]", "seeds = [0]")


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """CMP_TINY (every reference, pool and strategy, one seed) compared once, in this
    process: its config file and folder, the printed summary and ``results.json`` as
    first written."""
    ran = compare_once(tmp_path_factory.mktemp("compare_references"), CMP_TINY)
    ran["last"] = ran.pop("summary")
    return ran


def test_compare_with_references_and_pools(compared: dict, capsys) -> None:
    cfg, out, last, res = compared["cfg"], compared["out"], compared["last"], compared["res"]
    assert set(res["references"]) == {"strong", "weak", "short"}
    assert res["reference"] is None and not (out / "reference").exists()
    pool = json.loads((out / "pools" / "top50.json").read_text())
    assert pool["size"] == 600 and pool["of"] == 1200 and pool["filter"] == "strong"
    assert res["references"]["weak"]["pool_facts"]["sha256"] == pool["sha256"]
    assert res["references"]["strong"]["pool_facts"]["size"] == 240  # the curated pool
    assert res["strategy_pools"] == {"iid-top50": "top50", "jest-top50": "top50"}
    for name, ref in (("jest", "strong"), ("jest-weak", "weak"), ("jest-top50", "strong")):
        assert res["configs"][name]["strategy"]["reference"] == str(
            out / "references" / ref / "reference-cache"
        )
    assert (
        json.loads((out / "runs" / "iid-top50" / "seed0.pool.json").read_text())["pool"] == "top50"
    )
    assert not (out / "runs" / "iid" / "seed0.pool.json").exists()
    assert (out / "references" / "weak" / "reference.pool.json").is_file()
    report = (out / "report.md").read_text()
    assert "raw top half" in report and "top 0.5 of 1,200 by strong's cosine" in report
    # the same command reuses every run and reference
    assert main(["compare", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == last
    # another cut of the pool: the reference and the runs trained on it are refused
    args = ["compare", str(cfg), "--out", str(out), "--no-progress"]
    assert main([*args, "--set", "compare.only=['iid-top50']"]) == 0
    capsys.readouterr()
    cut = cfg.with_name("cut40.toml")  # compared's own config file is left as it is
    cut.write_text(CMP_TINY.replace("keep_fraction = 0.5", "keep_fraction = 0.4"))
    assert main(["compare", str(cut), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "reference holds a run trained on pool 'top50' (600 examples)" in err
    assert "--overwrite" in err


def test_runs_are_the_same_in_worker_processes(compared: dict, tmp_path: Path, capsys) -> None:
    """``compare.workers = 2``: IID on the full and on the cut pool and JEST from a listed
    reference (three runs, so one worker trains two) give the curves ``compared`` trained
    one after another in this process (test_compare.py: a run failing in a worker)."""
    out = tmp_path / "w2"
    args = ["compare", str(compared["cfg"]), "--out", str(out), "--no-progress"]
    args += ["--set", "compare.workers=2", "--set", "compare.only=['iid-top50', 'jest']"]
    assert main(args) == 0
    capsys.readouterr()
    curves = json.loads((out / "results.json").read_text())["curves"]
    assert set(curves) == {"iid", "iid-top50", "jest"}
    assert curves == {name: compared["res"]["curves"][name] for name in curves}
    assert curves["iid"]["mean_score"] != curves["iid-top50"]["mean_score"]
