"""Fuzzed scaling-law functions and files: valid parameters give finite predictions;
empty, negative, NaN and malformed input is a ValueError naming the argument, or the file,
line and field."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curatorch.scaling import (
    combined_error,
    effective_samples,
    fit_pools,
    parse_count,
    pool_error,
    read_params,
    read_runs,
    repetition_decay,
)
from curatorch.scaling.law import MAX_PASSES

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

finite_pos = st.floats(1e-3, 1e3)
bad_numbers = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, -1e-300])


# ------------------------------------------------------------------------------ the law


@FAST
@given(
    n=st.lists(st.floats(1.0, 1e9), min_size=1, max_size=6),
    pool=st.floats(1e3, 1e9),
    a=st.floats(1e-4, 10.0),
    b=st.lists(st.floats(-1.0, -1e-3), min_size=1, max_size=4),
    tau=st.floats(0.1, 100.0),
    d=st.floats(0.0, 1.0),
    method=st.sampled_from(["utility", "data"]),
)
def test_law_is_finite_and_positive_on_valid_input(n, pool, a, b, tau, d, method) -> None:
    arr = np.asarray(n)
    y = combined_error(arr, bucket_size=pool, a=a, b=b, tau=[tau] * len(b), d=d, method=method)
    assert y.shape == arr.shape and np.isfinite(y).all() and (y > 0).all()
    one = pool_error(arr, pool_size=pool, a=a, b=b[0], tau=tau, d=d, method=method)
    assert np.isfinite(one).all() and (one >= d).all() if method == "data" else True
    eff = effective_samples(arr, pool_size=pool, tau=tau)
    assert np.isfinite(eff).all() and (eff > 0).all() and (eff <= arr * (1 + 1e-12)).all()


@FAST
@given(
    field=st.sampled_from(["samples_seen", "pool_size", "a", "b", "tau", "d"]),
    bad=bad_numbers,
    as_list=st.booleans(),
)
def test_law_names_the_bad_argument(field: str, bad: float, as_list: bool) -> None:
    args = {"samples_seen": 1e6, "pool_size": 1e5, "a": 0.1, "b": -0.2, "tau": 2.0, "d": 0.1}
    if field == "d" and bad == 0.0:
        bad = -0.5  # d = 0 is valid
    if field == "b":
        bad = -bad if bad in (0.0,) else (abs(bad) if math.isfinite(bad) else bad)
    args[field] = [args[field], bad] if as_list and field in ("samples_seen", "pool_size") else bad
    n = args.pop("samples_seen")
    with pytest.raises(ValueError, match=field):
        pool_error(n, **args)


@pytest.mark.parametrize("empty", ["samples_seen", "b", "tau"])
def test_empty_inputs_are_named(empty: str) -> None:
    args = {"bucket_size": 1e5, "a": 0.1, "b": [-0.2], "tau": [2.0], "d": 0.1}
    n: list[float] | float = 1e6
    if empty == "samples_seen":
        n = []
    else:
        args[empty] = []
    with pytest.raises(ValueError, match=empty):
        combined_error(n, **args)


@FAST
@given(passes=st.floats(MAX_PASSES + 2, 1e300), pool=st.floats(1.0, 1e6))
def test_too_many_passes_is_a_value_error_not_an_allocation(passes: float, pool: float) -> None:
    with pytest.raises(ValueError, match="samples_seen / pool_size"):
        pool_error(passes * pool, pool_size=pool, a=0.1, b=-0.2, tau=2.0, d=0.1)


@FAST
@given(passes=st.lists(st.one_of(st.floats(0, 1e3), bad_numbers), min_size=1, max_size=4))
def test_repetition_decay(passes) -> None:
    k = np.asarray(passes)
    if (np.isfinite(k) & (k >= 0)).all():
        out = repetition_decay(k, 2.0)
        assert ((out > 0) | (k > 1000)).all() and (out <= 1).all()
    else:
        with pytest.raises(ValueError, match="passes"):
            repetition_decay(k, 2.0)


# ---------------------------------------------------------------------------------- fitting


@st.composite
def fit_inputs(draw: st.DrawFn) -> dict:
    m = draw(st.integers(1, 3))
    per = draw(st.integers(1, 4))
    pool = np.repeat(np.arange(m), per)
    sizes = draw(st.lists(st.floats(1e3, 1e7), min_size=m, max_size=m))
    n = draw(st.lists(st.floats(1e3, 1e8), min_size=m * per, max_size=m * per))
    err = draw(st.lists(st.floats(0.0, 1.0), min_size=m * per, max_size=m * per))
    return {
        "names": [f"p{i}" for i in range(m)],
        "pool": pool,
        "samples_seen": np.asarray(n),
        "error": np.asarray(err),
        "pool_size": np.asarray(sizes),
        "method": draw(st.sampled_from(["utility", "data"])),
    }


SMALL_GRIDS = {
    "a_grid": np.linspace(0.01, 0.2, 4),
    "b_grid": np.linspace(-0.01, -0.5, 5),
    "tau_grid": np.linspace(1.0, 10.0, 4),
    "d_grid": np.linspace(0.0, 0.4, 3),
}


@settings(max_examples=25, deadline=None)
@given(fit_inputs())
def test_fit_on_valid_points_is_finite(inputs: dict) -> None:
    res = fit_pools(**inputs, **SMALL_GRIDS, refine=False)
    assert math.isfinite(res.sse) and np.isfinite(res.predicted).all()
    assert res.params.names == tuple(inputs["names"])


@FAST
@given(
    inputs=fit_inputs(),
    field=st.sampled_from(["samples_seen", "error", "pool_size"]),
    bad=st.sampled_from([math.nan, math.inf, -1.0, 0.0, 2.0]),
)
def test_fit_names_the_bad_field(inputs: dict, field: str, bad: float) -> None:
    if field == "error" and bad == 0.0:
        bad = -0.5  # an error of 0 is valid
    if field == "samples_seen" and bad == 2.0:
        bad = -2.0  # 2 samples seen is valid
    if field == "pool_size" and bad == 2.0:
        bad = -2.0
    inputs[field] = inputs[field].copy()
    inputs[field][0] = bad
    with pytest.raises(ValueError, match=field):
        fit_pools(**inputs, **SMALL_GRIDS, refine=False)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"names": []}, "names"),
        ({"pool": np.array([], dtype=np.int64)}, "pool"),
        ({"pool": np.array([0.5])}, "pool"),
        ({"pool": np.array([3])}, "pool"),
        ({"samples_seen": np.array([1e6, 2e6])}, "samples_seen"),
        ({"method": "magic"}, "method"),
        ({"a": -1.0}, "a"),
        ({"d": 2.0}, "d"),
        ({"b_grid": [0.1]}, "b_grid"),
        ({"tau_grid": []}, "tau_grid"),
        ({"a_grid": [math.nan]}, "a_grid"),
        ({"names": ["x", "x"], "pool": np.array([0, 1])}, "names"),
    ],
)
def test_fit_argument_errors_name_the_argument(override: dict, named: str) -> None:
    args = {
        "names": ["x"],
        "pool": np.array([0]),
        "samples_seen": np.array([1e6]),
        "error": np.array([0.3]),
        "pool_size": 1e5,
        **SMALL_GRIDS,
        "refine": False,
    }
    args.update(override)
    if "names" in override and len(override["names"]) == 2:
        args.update(samples_seen=np.array([1e6, 1e6]), error=np.array([0.3, 0.4]))
    with pytest.raises(ValueError, match=named):
        fit_pools(**args)


# ------------------------------------------------------------------------------------ files

CELLS = [
    "p",
    "pool-b",
    "12.8M",
    "1e6",
    "5000",
    "0.25",
    "1",
    "0",
    "-1",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "",
    " ",
    "abc",
    "1.2.3",
    '"quoted, comma"',
    '"unterminated',
    "\x00",
    "\u00e9",
    "12.8Q",
    "K",
]
HEADERS = [
    "pool,samples_seen,accuracy",
    "pool,samples_seen,error",
    "pool,samples_seen,error,pool_size",
    "pool,samples_seen",
    "pool,samples_seen,accuracy,error",
    "pool,samples,error",
    "pool,pool,samples_seen,error",
    "",
]

LINE_RE = re.compile(r"line \d+")


def _check_error_names_place(msg: str, path: Path) -> None:
    assert str(path) in msg, msg
    whole_file = ("is empty", "holds no data rows", "holds no records", "cannot be read")
    assert LINE_RE.search(msg) or any(w in msg for w in whole_file), msg


@FAST
@given(
    header=st.sampled_from(HEADERS),
    rows=st.lists(st.lists(st.sampled_from(CELLS), min_size=0, max_size=5), max_size=6),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_read_runs_valid_or_names_file_and_line(tmp_path: Path, header, rows, newline) -> None:
    path = tmp_path / "runs.csv"
    text = newline.join([header, *(",".join(r) for r in rows)])
    path.write_bytes(text.encode("utf-8"))
    try:
        runs = read_runs(path)
    except ValueError as exc:
        _check_error_names_place(str(exc), path)
        return
    assert len(runs) >= 1
    assert np.isfinite(runs.samples_seen).all() and (runs.samples_seen > 0).all()
    assert np.isfinite(runs.error).all() and ((runs.error >= 0) & (runs.error <= 1)).all()
    if runs.pool_size is not None:
        assert np.isfinite(runs.pool_size).all() and (runs.pool_size > 0).all()


@pytest.mark.parametrize("where", ["header", "row"])
def test_read_runs_csv_syntax_errors_name_the_line(tmp_path: Path, where: str) -> None:
    path = tmp_path / "runs.csv"
    huge = '"' + "x" * 200_000 + '"'  # over the csv module's field size limit
    header = "pool,samples_seen,error"
    path.write_text(f"{huge}\n" if where == "header" else f"{header}\na,1,0.1\n{huge},1,0.2\n")
    with pytest.raises(ValueError, match=r"line [13]: malformed CSV"):
        read_runs(path)


def test_read_params_deeply_nested_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "params.jsonl"
    path.write_text("\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ValueError, match="line 2"):
        read_params(path)


def test_read_runs_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_bytes(b"pool,samples_seen,error\n\xff\xfe,1,0.2\n")
    with pytest.raises(ValueError, match="cannot be read"):
        read_runs(path)


VALUES = [
    0.1,
    -0.2,
    0,
    1,
    -1,
    "x",
    None,
    True,
    [],
    [0.1],
    [-0.1, -0.2],
    [1.0, 2.0],
    {"k": 1},
    1e308,
    float("nan"),
    float("inf"),
]
FIELDS = ["id", "names", "a_values", "b_values", "c_values", "d_value", "method", "extra"]


@st.composite
def param_lines(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["record", "record", "record", "junk", "blank", "array"]))
    if kind == "blank":
        return draw(st.sampled_from(["", "   "]))
    if kind == "junk":
        return draw(st.sampled_from(["{", "}", "not json", '{"id": }', "[1,", "\x00", "nan"]))
    if kind == "array":
        return json.dumps(draw(st.lists(st.sampled_from([1, "a", None]), max_size=3)))
    rec = {
        "id": draw(st.sampled_from(["fit", "fit2", "", 3])),
        "names": draw(st.sampled_from([["a"], ["a", "b"], [], ["a", "a"], [1], "a"])),
        "a_values": [0.1, 0.1],
        "b_values": [-0.1, -0.2],
        "c_values": [2.0, 3.0],
        "d_value": 0.1,
    }
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        if draw(st.booleans()):
            rec.pop(field, None)
        else:
            rec[field] = draw(st.sampled_from(VALUES))
    return json.dumps(rec)  # NaN and Infinity are written as JSON extensions


@FAST
@given(lines=st.lists(param_lines(), max_size=5))
def test_read_params_valid_or_names_file_and_line(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "params.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    try:
        records = read_params(path)
    except ValueError as exc:
        _check_error_names_place(str(exc), path)
        return
    for r in records:
        assert len(r.names) == len(r.a) == len(r.b) == len(r.tau) >= 1
        assert all(math.isfinite(v) for v in (*r.a, *r.b, *r.tau))
        assert r.d is None or (math.isfinite(r.d) and r.d >= 0)


@FAST
@given(text=st.text(alphabet="0123456789.eE+-KMBGTkmbgt nai\x00", max_size=12))
def test_parse_count_positive_or_named(text: str) -> None:
    try:
        value = parse_count(text, name="budget")
    except ValueError as exc:
        assert "budget" in str(exc)
        return
    assert math.isfinite(value) and value > 0
