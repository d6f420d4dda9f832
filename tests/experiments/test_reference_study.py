"""The reference-curation study: the [study] schema against its comparison, the verdicts
of the three findings from given numbers, and a tiny study run twice (same seeds, same
report)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from curatorch.experiments.reference_study import (
    StudySection,
    findings,
    load_study_config,
    parse_study_config,
    run_reference_study,
)
from curatorch.train import ConfigError
from tests.helpers import STUDY_TINY

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _raw() -> dict:
    import tomllib

    return tomllib.loads(STUDY_TINY)


def test_study_config_parses() -> None:
    sc = parse_study_config(_raw())
    assert sc.study == StudySection(
        curation=("jest-weak", "jest"),
        training=("jest-short", "jest"),
        raw=("iid", "jest"),
        filtered=("iid-top50", "jest-top50"),
    )
    assert sc.baseline == "iid"
    quick = parse_study_config(_raw(), ["study.training=['jest-short', 'jest-weak']"], quick=True)
    assert quick.study.training == ("jest-short", "jest-weak")
    assert quick.compare.base.train.steps == 2 and quick.compare.compare.seeds == (0,)


def _study(raw: dict) -> dict:
    return raw["study"]


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda r: r.pop("study"), "a study config needs a [study] table"),
        (lambda r: _study(r).update(bogus=1), "unknown config key study.bogus"),
        (lambda r: _study(r).update(curation="jest"), "study.curation must be a list"),
        (lambda r: _study(r).update(curation=["jest", "nope"]), "study.curation: unknown strategy"),
        (lambda r: _study(r).update(curation=["jest"]), "study.curation needs at least two"),
        (
            lambda r: _study(r).update(training=["jest", "iid"]),
            "study.training: strategy 'iid' must select with a compare.references entry",
        ),
        (
            lambda r: _study(r).update(curation=["jest", "jest-top50"]),
            "study.curation: strategy 'jest-top50' trains on pool 'top50'",
        ),
        (lambda r: _study(r).update(baseline="jest"), "study.baseline: 'jest' must be IID"),
        (lambda r: _study(r).update(baseline="iid-top50"), "on pool 'top50'"),
        (lambda r: _study(r).update(filtered=["iid-top50"]), "pair strategies by position"),
        (
            lambda r: _study(r).update(filtered=["iid", "jest-top50"]),
            "study.raw[0] ('iid') must train on data.pool and study.filtered[0] ('iid')",
        ),
        (
            lambda r: _study(r).update(raw=["jest-weak", "jest"]),
            "study.raw[0] ('jest-weak') and study.filtered[0] ('iid-top50') must differ only",
        ),
        (
            lambda r: r.update(study={}),
            "[study] names no strategies",
        ),
        (
            lambda r: r["compare"].update(only=["jest"]),
            "study.curation: strategy 'jest-weak' is left out by compare.only",
        ),
    ],
)
def test_bad_study_names_the_key(mutate, needle: str) -> None:
    raw = _raw()
    mutate(raw)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        parse_study_config(raw)


def test_bad_override_names_the_key() -> None:
    with pytest.raises(ConfigError, match=re.escape("unknown config key study.nope in --set")):
        parse_study_config(_raw(), ["study.nope=1"])
    with pytest.raises(ConfigError, match=re.escape("unknown config key compare.nope in --set")):
        parse_study_config(_raw(), ["compare.nope=1"])


@pytest.mark.parametrize("quick", [False, True])
def test_shipped_study_config_loads(quick: bool) -> None:
    """The shipped study, and its comparison alone (without [study]) as a compare config."""
    import tomllib

    from curatorch.experiments.jest_compare import parse_compare_config

    path = ROOT / "configs" / "reference_study.toml"
    sc = load_study_config(path, quick=quick)
    assert len(sc.study.training) == 5 and len(sc.study.curation) == 3
    raw = tomllib.loads(path.read_text())
    raw.pop("study")
    cc = parse_compare_config(raw, quick=quick)
    assert [s.name for s in cc.compare.active] == [s.name for s in sc.compare.compare.active]


def _row(ref: str, score: float, gain: float, se: float = 0.002, steps: int = 10) -> dict:
    return {
        "reference": ref,
        "reference_score": score,
        "reference_steps": steps,
        "gain": gain,
        "final_se": se,
    }


def _filter_rows(dep_iid: float, dep_jest: float, se: float = 0.002) -> list[dict]:
    return [
        {
            "selects": False,
            "dependence": dep_iid,
            "dependence_se": se,
            "final_raw": 0.10,
            "final_filtered": 0.10 + dep_iid,
        },
        {
            "selects": True,
            "dependence": dep_jest,
            "dependence_se": se,
            "final_raw": 0.15,
            "final_filtered": 0.15 + dep_jest,
        },
    ]


@pytest.mark.parametrize(
    ("rows", "verdict"),
    [
        ([_row("w", 0.15, 0.02), _row("s", 0.12, 0.05)], "holds"),
        (
            [_row("w", 0.15, 0.02), _row("s", 0.12, 0.021)],
            "not shown (within seed noise): the strongest curation gives the larger gain with "
            "the weaker reference",
        ),
        (
            [_row("w", 0.12, 0.02), _row("s", 0.15, 0.05)],
            "partly: the strongest curation gives the larger gain, but its reference is not weaker",
        ),
        (
            [_row("w", 0.12, 0.02, 0), _row("s", 0.15, 0.05, 0)],
            "not shown (one seed: no error estimate): the strongest curation gives the larger "
            "gain, but its reference is not weaker",
        ),
        (
            [_row("w", 0.15, 0.05), _row("s", 0.12, 0.02)],
            "does not hold: the strongest curation does not give the larger gain",
        ),
    ],
)
def test_curation_verdicts(rows: list[dict], verdict: str) -> None:
    f = findings({"curation": rows, "training": [], "filter": []})
    assert f["curation"]["verdict"] == verdict
    assert f["training"]["verdict"] == "not measured"
    assert f["curation"]["gain_strong_minus_weak"] == round(rows[1]["gain"] - rows[0]["gain"], 4)


def test_training_and_filter_verdicts() -> None:
    rising = [_row(f"r{i}", 0.1 + 0.01 * i, 0.01 * i, steps=10 * (i + 1)) for i in range(4)]
    f = findings({"curation": [], "training": rising, "filter": _filter_rows(0.03, 0.0)})
    assert f["training"]["verdict"] == "holds"
    assert f["training"]["spearman_reference_score_gain"] == 1.0
    assert f["training"]["best_reference"] == "r3" and f["training"]["worst_reference"] == "r0"
    assert f["filter"]["verdict"] == "holds"
    assert f["filter"]["jest_raw_minus_iid_filtered"] == pytest.approx(0.02)
    falling = [_row(f"r{i}", 0.1 + 0.01 * i, -0.01 * i) for i in range(4)]
    assert findings({"curation": [], "training": falling, "filter": []})["training"][
        "verdict"
    ].startswith("does not hold")
    for deps, verdict in (
        ((0.03, 0.015), "partly: JEST gains from the filter too"),
        ((-0.01, 0.0), "does not hold: IID does not gain"),
        ((-0.001, 0.0), "not shown (within seed noise): IID does not gain"),
        ((0.02, 0.03), "does not hold: JEST gains from the filter as much as IID"),
        ((0.003, 0.0), "not shown (within seed noise): IID gains more from the filter than JEST"),
    ):
        got = findings({"curation": [], "training": [], "filter": _filter_rows(*deps)})
        assert got["filter"]["verdict"].startswith(verdict)


_VOLATILE = ("wall_s", "run_wall_s", "load_average", "command", "references", "pools")


def test_tiny_study_twice_gives_the_same_report(tmp_path: Path) -> None:
    raw = _raw()
    raw["compare"]["seeds"] = [0]
    sc = parse_study_config(raw)
    records = []
    for name in ("a", "b"):
        out = tmp_path / name
        result = run_reference_study(sc, out, progress=False, log=lambda _: None)
        record = result["study"]
        assert json.loads((out / "study.json").read_text()) == record
        for f in ("study.md", "report.md", "gain_vs_reference.png", "offline_filter.png"):
            assert (out / f).is_file(), f
        assert (out / "gain_vs_reference.png").read_bytes()[:4] == b"\x89PNG"
        records.append({k: v for k, v in record.items() if k not in _VOLATILE})
        # what each reference trained on
        pools = {k: v["pool_facts"]["pool"] for k, v in record["references"].items()}
        assert pools == {"strong": "curated", "weak": "top50", "short": "curated"}
    assert records[0] == records[1]
    rec = records[0]
    assert [r["strategy"] for r in rec["curation"]] == ["jest-weak", "jest"]
    assert [r["reference_steps"] for r in rec["training"]] == [2, 4]
    assert rec["curation"][0]["pool_size"] == 600 and rec["curation"][1]["pool_size"] == 240
    assert rec["filter"][0]["raw"] == "iid" and rec["filter"][1]["filtered"] == "jest-top50"
    base = rec["baseline"]["final"]
    for row in rec["curation"] + rec["training"]:
        assert row["gain"] == pytest.approx(row["final"] - base, abs=1e-4)
    assert set(rec["findings"]) == {"curation", "training", "filter"}
    assert "one seed: no error estimate" in rec["findings"]["curation"]["noise"]
    md = (tmp_path / "a" / "study.md").read_text()
    assert "## (a) curation of the reference's data" in md and "**Finding:**" in md
