"""The shipped scaling inputs: the authors' published parameters (checked against their
lines verbatim), the sample runs table (parses, names the command that made it), name
resolution and its refusals, comment lines in run tables, and the package-data globs."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from curatorch.scaling import (
    SHIPPED_DIR,
    Runs,
    describe_shipped,
    find_params,
    read_params,
    read_runs,
    resolve_scaling_file,
    runs_comment,
    shipped_files,
    shipped_names,
    write_runs,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# results/parameter_values.jsonl of github.com/locuslab/scaling_laws_data_filtering at
# commit cf5ced18734f16fafd09f0b12a3ca7ed0752b35a, byte for byte (no newline at the end)
UPSTREAM = (
    '{"id": "tmars_imagenet1k_data", "best_a": 0.022, "best_loss" :  2.529372953280392e-05, '
    '"b_values" :  [-0.18227272727272728, -0.14484848484848487, -0.13530303030303031, '
    '-0.09757575757575758, -0.141969696969697], "c_values" :  [4.0, 4.363636363636363, '
    '2.909090909090909, 1.4545454545454546, 3.4545454545454546], "a_values" :  [0.022, 0.022, '
    '0.022, 0.022, 0.022], "names": ["tmars_top0to10p", "tmars_top10to20p", '
    '"tmars_top20to30p", "tmars_top30to40p", "tmars_top0to40p_random25p"]}\n'
    '{"id": "tmars_imagenet1k_utility", "best_a": 0.025, "best_loss": 2.8984396075529056e-05, '
    '"b_values" :  [-0.16, -0.125, -0.1, -0.085, -0.12000000000000001], "c_values" :  '
    "[6.7272727272727275, 8.545454545454547, 5.2727272727272725, 2.2727272727272725, 6.0], "
    '"a_values" :  [0.025, 0.025, 0.025, 0.025, 0.025], "d_value": 0.1, "names": '
    '["tmars_top0to10p", "tmars_top10to20p", "tmars_top20to30p", "tmars_top30to40p", '
    '"tmars_top0to40p_random25p"]}'
)
UPSTREAM_SHA256 = "a7548617c341ca6c317d8ddf0ab108b9b268a8480e1b04ab7ff6fc65d6b6e943"
ROOT = Path(__file__).resolve().parents[2]


def test_upstream_transcript_is_the_authors_file() -> None:
    assert hashlib.sha256(UPSTREAM.encode("utf-8")).hexdigest() == UPSTREAM_SHA256


def test_published_values_equal_the_authors() -> None:
    path = resolve_scaling_file("published", kind="params")
    assert path == SHIPPED_DIR / "published.jsonl"
    shipped = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    upstream = [json.loads(line) for line in UPSTREAM.splitlines()]
    assert [r["id"] for r in shipped] == [r["id"] for r in upstream]
    for ours, theirs in zip(shipped, upstream, strict=True):
        assert {k: ours[k] for k in theirs} == theirs  # every value, exactly
        assert set(ours) - set(theirs) == {"method", "source"}  # curatorch's notes only
        assert ours["method"] == ours["id"].rsplit("_", 1)[1]
        assert (
            "2404.07177" in ours["source"]
            and "cf5ced18734f16fafd09f0b12a3ca7ed0752b35a" in (ours["source"])
        )
    records = read_params(path)
    utility = find_params(path, "tmars_imagenet1k_utility")
    assert utility.method == "utility" and utility.d == 0.1 and utility.a == (0.025,) * 5
    assert records[0].method == "data" and records[0].d is None


def test_sample_runs_parse_and_name_their_command() -> None:
    path = resolve_scaling_file("sample", kind="runs")
    runs = read_runs(path)
    assert runs.names == ("top0to25p", "top25to50p", "top50to75p", "top75to100p")
    assert len(runs) == 40 and runs.pool_size is not None
    assert np.all(runs.pool_size == 8192)
    assert np.all((runs.error >= 0) & (runs.error <= 1))
    for j in range(4):  # one point per pass, 10 passes of 8,192 samples
        assert runs.samples_seen[runs.pool == j].tolist() == [8192.0 * k for k in range(1, 11)]
    comment = runs_comment(path)
    assert any("curatorch scaling experiment scaling_experiment --out" in c for c in comment)
    assert any("bucket_runs.csv" in c for c in comment)


def test_listing_names_every_shipped_file() -> None:
    assert shipped_names("params") == ["published"]
    assert shipped_names("runs") == ["sample"]
    files = {(f.kind, f.name): f for f in shipped_files()}
    assert set(files) == {("params", "published"), ("runs", "sample")}
    pub = files["params", "published"]
    assert pub.contents == ("tmars_imagenet1k_data", "tmars_imagenet1k_utility")
    assert pub.rows == 2 and len(pub.source) == 1 and "Goyal" in pub.source[0]
    assert files["runs", "sample"].rows == 40
    with pytest.raises(ValueError, match=r"no shipped runs table \(CSV\) named 'zz'.*sample"):
        describe_shipped("runs", "zz")


def test_every_shipped_file_is_package_data() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = cfg["tool"]["setuptools"]["package-data"]["curatorch"]
    pkg = SHIPPED_DIR.parents[1]  # src/curatorch
    for f in sorted(SHIPPED_DIR.iterdir()):
        rel = f.relative_to(pkg).as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} is not package data"


@pytest.mark.parametrize("text", ["published", "published.jsonl"])
def test_names_resolve_from_any_folder(tmp_path, monkeypatch, text) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_scaling_file(text, kind="params") == SHIPPED_DIR / "published.jsonl"
    assert resolve_scaling_file("sample.csv", kind="runs") == SHIPPED_DIR / "sample.csv"


def test_existing_file_wins_and_bare_name_is_ambiguous(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("published").write_text("{}\n")
    assert resolve_scaling_file("published", kind="params") == Path("published")
    Path("published").unlink()
    Path("sample.csv").write_text("pool,samples_seen,error\na,1,0.5\n")
    assert resolve_scaling_file("sample.csv", kind="runs") == Path("sample.csv")
    with pytest.raises(ValueError, match=r"RUNS 'sample' is ambiguous: sample.csv exists here"):
        resolve_scaling_file("sample", kind="runs")


@pytest.mark.parametrize(
    "text,kind,needle",
    [
        ("nope", "params", r"PARAMS nope not found; .*shipped one \(published;"),
        ("nope.csv", "runs", r"RUNS nope.csv not found; .*\(sample;"),
        ("sample", "params", r"PARAMS sample not found"),  # a name of the other kind
        ("sub/published", "params", r"PARAMS sub/published not found"),
    ],
)
def test_unknown_name_lists_the_shipped_names(tmp_path, monkeypatch, text, kind, needle) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=needle):
        resolve_scaling_file(text, kind=kind)


def test_folder_and_bad_kind_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="is a folder, not a file"):
        resolve_scaling_file(tmp_path, kind="runs", option="RUNS")
    with pytest.raises(ValueError, match=r"kind must be one of \['params', 'runs'\]"):
        resolve_scaling_file("published", kind="fits")


def test_runs_comments_round_trip_and_keep_line_numbers(tmp_path) -> None:
    runs = Runs(
        names=("a", "b"),
        pool=np.array([0, 1], dtype=np.int64),
        samples_seen=np.array([10.0, 20.0]),
        error=np.array([0.5, 0.25]),
    )
    f = tmp_path / "r.csv"
    write_runs(f, runs, comment=["made by: test", "", "  two spaces"])
    assert f.read_text().splitlines()[:4] == [
        "# made by: test",
        "#",
        "#   two spaces",
        "pool,samples_seen,error",
    ]
    assert runs_comment(f) == ["made by: test", "", "  two spaces"]
    back = read_runs(f)
    assert back.names == runs.names and back.error.tolist() == [0.5, 0.25]
    f.write_text('# note, with "quote\n# more\npool,samples_seen,error\na,1,0.5\nb,x,0.1\n')
    with pytest.raises(ValueError, match=r"r.csv: line 5, column 'samples_seen': not a number"):
        read_runs(f)
    f.write_text("# note\npool,seen,error\n")
    with pytest.raises(ValueError, match=r"r.csv: line 2, column 2: unknown column 'seen'"):
        read_runs(f)
    with pytest.raises(ValueError, match=r"comment\[1\] must be one line"):
        write_runs(f, runs, comment=["ok", "two\nlines"])
