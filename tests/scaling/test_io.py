from __future__ import annotations

import numpy as np
import pytest

from curatorch.scaling import (
    PoolParams,
    Runs,
    find_params,
    format_count,
    parse_count,
    parse_counts,
    read_params,
    read_runs,
    write_params,
    write_runs,
)
from curatorch.scaling.shipped import SHIPPED_DIR

PUBLISHED = str(SHIPPED_DIR / "published.jsonl")  # the authors' values, shipped


def test_read_published_file():
    recs = read_params(PUBLISHED)
    assert [r.id for r in recs] == ["tmars_imagenet1k_data", "tmars_imagenet1k_utility"]
    u = find_params(PUBLISHED, "tmars_imagenet1k_utility")
    assert u.d == 0.1 and u.b[0] == -0.16 and len(u.names) == 5
    assert u.extra["best_a"] == 0.025
    assert find_params(PUBLISHED, "tmars_imagenet1k_data").d is None
    with pytest.raises(ValueError, match="key 'nope' not found"):
        find_params(PUBLISHED, "nope")


def test_params_roundtrip(tmp_path):
    p = PoolParams(
        id="x",
        names=("a", "b"),
        a=(0.1, 0.1),
        b=(-0.2, -0.1),
        tau=(2.0, 3.0),
        d=0.05,
        method="utility",
        extra={"best_loss": 1e-3},
    )
    write_params(tmp_path / "p.jsonl", [p])
    assert read_params(tmp_path / "p.jsonl") == [p]
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temp left


@pytest.mark.parametrize(
    "text,match",
    [
        ('{"id": "x", "names": ["a"]\n', r"line 1, column 27: invalid JSON"),
        (
            '\n{"id": "x", "names": ["a"], "a_values": [1], "b_values": [-1], "c_values": [1]}\n'
            '{"id": "y", "names": ["a"], "a_values": [1], "b_values": [0.5], "c_values": [1]}\n',
            r"line 3: b_values\[0\] must be < 0, got 0.5",
        ),
        (
            '{"id": "x", "names": ["a"], "a_values": [1], "b_values": [-1]}\n',
            r"line 1: missing field 'c_values'",
        ),
        (
            '{"id": "x", "names": ["a"], "a_values": ["1"], "b_values": [-1], "c_values": [1]}\n',
            r"line 1, field 'a_values'\[0\]: must be a number",
        ),
        (
            '{"id": "x", "names": ["a", "b"], "a_values": [1], "b_values": [-1], '
            '"c_values": [1]}\n',
            r"line 1: a_values must have one value per name \(2\)",
        ),
        ("[1, 2]\n", r"line 1, column 1: a record must be a JSON object"),
        ("", r"holds no records"),
    ],
)
def test_malformed_params_name_line_and_column(tmp_path, text, match):
    f = tmp_path / "bad.jsonl"
    f.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_params(f)


def test_read_runs_accuracy_and_error(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("pool,samples_seen,accuracy\np,1M,0.25\nq,2e6,0.5\n\np,3000000,0.75\n")
    r = read_runs(f)
    assert r.names == ("p", "q") and r.pool_size is None
    np.testing.assert_array_equal(r.pool, [0, 1, 0])
    np.testing.assert_allclose(r.samples_seen, [1e6, 2e6, 3e6])
    np.testing.assert_allclose(r.error, [0.75, 0.5, 0.25])
    out = tmp_path / "w.csv"
    runs = Runs(
        names=("p",),
        pool=np.zeros(2, dtype=np.int64),
        samples_seen=np.array([1e3, 2e3]),
        error=np.array([0.9, 0.8]),
        pool_size=np.array([500.0, 500.0]),
    )
    write_runs(out, runs)
    back = read_runs(out)
    np.testing.assert_allclose(back.error, runs.error)
    np.testing.assert_allclose(back.pool_size, runs.pool_size)


@pytest.mark.parametrize(
    "text,match",
    [
        (
            "pool,samples_seen,accuracy\np,1M,0.2\np,xx,0.3\n",
            r"line 3, column 'samples_seen': not a number: 'xx'",
        ),
        ("pool,samples_seen,error\np,1M,1.2\n", r"line 2, column 'error': must be in \[0.0, 1.0\]"),
        ("pool,samples_seen,error\np,-5,0.2\n", r"line 2, column 'samples_seen'"),
        ("pool,samples_seen,error\np,1M\n", r"line 2, column 3: expected 3 values, got 2"),
        ("pool,samples,error\n", r"line 1, column 2: unknown column 'samples'"),
        ("pool,samples_seen,error,accuracy\n", r"line 1: need exactly one of"),
        ("pool,samples_seen,error\n", r"holds no data rows"),
        ("pool,samples_seen,error\n,1M,0.2\n", r"line 2, column 'pool': empty pool name"),
    ],
)
def test_malformed_runs_name_line_and_column(tmp_path, text, match):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_runs(f)


def test_counts():
    assert parse_count("12.8M") == 12_800_000
    assert parse_count("5k") == 5000 and parse_count("1e3") == 1000 and parse_count("2B") == 2e9
    assert [v for _, v in parse_counts("32M, 640M")] == [32e6, 640e6]
    assert format_count(32e6) == "32M" and format_count(12.8e6) == "12.8M"
    for bad in ("-1M", "0", "M", "12.8X", ""):
        with pytest.raises(ValueError, match=r"^--budgets"):
            parse_count(bad, name="--budgets")
    with pytest.raises(ValueError, match="comma-separated"):
        parse_counts("32M,,64M")
