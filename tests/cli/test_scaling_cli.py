from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from curatorch.cli import main
from curatorch.scaling import DEFAULT_B_GRID, DEFAULT_TAU_GRID, pool_error, read_params
from curatorch.scaling.shipped import SHIPPED_DIR
from tests.helpers import last_json
from tests.scaling.helpers import REFERENCE_UTILITY

PUBLISHED = str(SHIPPED_DIR / "published.jsonl")  # the authors' values, shipped
PREDICT = [
    "scaling",
    "predict",
    PUBLISHED,
    "--key",
    "tmars_imagenet1k_utility",
    "--bucket-size",
    "12.8M",
    "--budgets",
    "32M,64M,128M,640M",
]


def test_predict_reproduces_reference_and_json_format(capsys):
    assert main(PREDICT) == 0
    out = capsys.readouterr().out
    assert "18.25*" in out  # the table marks the best filter
    rec = last_json(out)
    assert list(rec) == ["budgets", "best"]
    assert list(rec["budgets"]) == ["32M", "64M", "128M", "640M"]
    for j, b in enumerate(rec["budgets"]):
        assert list(rec["budgets"][b]) == ["top10", "top20", "top30", "top40"]
        for c, lbl in enumerate(rec["budgets"][b]):
            assert abs(rec["budgets"][b][lbl] - REFERENCE_UTILITY[j][c]) < 1e-6
    assert rec["best"] == {"32M": "top10", "64M": "top10", "128M": "top20", "640M": "top20"}
    assert main([*PREDICT, "--json"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == [json.dumps(rec)]


def test_predict_data_method_needs_d(capsys):
    args = [
        "scaling",
        "predict",
        PUBLISHED,
        "--key",
        "tmars_imagenet1k_data",
        "--bucket-size",
        "12.8M",
        "--budgets",
        "32M",
        "--method",
        "data",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--d" in err[0]
    assert main([*args, "--d", "0.1", "--json"]) == 0
    rec = last_json(capsys.readouterr().out)
    assert abs(rec["budgets"]["32M"]["top10"] - 18.248683636949693) < 1e-6


@pytest.mark.parametrize(
    "change,needle",
    [
        (["--budgets", "32M,-1"], "--budgets"),
        (["--bucket-size", "big"], "--bucket-size"),
        (["--key", "nope"], "key 'nope' not found"),
        (["--pools", "tmars_top0to10p,zzz"], "unknown pool 'zzz'"),
    ],
)
def test_predict_bad_input_exit_2(capsys, change, needle):
    args = list(PREDICT)
    i = args.index(change[0]) if change[0] in args else len(args)
    args[i : i + 2] = change
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("curatorch: error:") and needle in err and err.count("\n") == 1


def test_malformed_params_file_exit_2(tmp_path, capsys):
    f = tmp_path / "p.jsonl"
    f.write_text(
        '{"id": "k", "names": ["a"], "a_values": [1], "b_values": [-1], "c_values": [1]}\n'
        '{"id": "k2", oops}\n'
    )
    assert (
        main(["scaling", "predict", str(f), "--key", "k", "--bucket-size", "1M", "--budgets", "2M"])
        == 2
    )
    assert "line 2, column 14" in capsys.readouterr().err


def test_fit_cli_recovers_parameters(tmp_path, capsys):
    b, tau = DEFAULT_B_GRID[[31, 19]], DEFAULT_TAU_GRID[[63, 14]]
    seen = np.array([8, 16, 24, 32, 48, 64, 80]) * 1e4
    lines = ["pool,samples_seen,accuracy,pool_size"]
    for name, bj, tj in zip(["hi", "lo"], b, tau, strict=False):
        y = pool_error(seen, pool_size=1e5, a=10.0, b=bj, tau=tj, d=0.1)
        lines += [f"{name},{n:.0f},{float(1 - e)!r},100K" for n, e in zip(seen, y, strict=False)]
    (tmp_path / "runs.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "fit.jsonl"
    assert (
        main(
            [
                "scaling",
                "fit",
                str(tmp_path / "runs.csv"),
                "--out",
                str(out),
                "--a",
                "10",
                "--d",
                "0.1",
                "--id",
                "mine",
            ]
        )
        == 0
    )
    rec = last_json(capsys.readouterr().out)
    assert rec["sse"] < 1e-20 and rec["id"] == "mine"
    (p,) = read_params(out)
    np.testing.assert_allclose(p.b, b, rtol=1e-10)
    np.testing.assert_allclose(p.tau, tau, rtol=1e-10)
    assert p.extra["pool_sizes"] == [1e5, 1e5]
    # the fitted file feeds predict
    assert (
        main(
            [
                "scaling",
                "predict",
                str(out),
                "--key",
                "mine",
                "--bucket-size",
                "100K",
                "--budgets",
                "200K,2M",
                "--json",
            ]
        )
        == 0
    )
    assert set(last_json(capsys.readouterr().out)["best"]) == {"200K", "2M"}
    # a pool_size column and --pool-size together are refused
    assert (
        main(["scaling", "fit", str(tmp_path / "runs.csv"), "--out", str(out), "--pool-size", "1M"])
        == 2
    )


def test_plot_writes_png_atomically(tmp_path, capsys):
    out = tmp_path / "sub" / "plot.png"
    assert (
        main(
            [
                "scaling",
                "plot",
                PUBLISHED,
                "--key",
                "tmars_imagenet1k_utility",
                "--bucket-size",
                "12.8M",
                "--budgets",
                "32M,640M",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [f.name for f in out.parent.iterdir()] == ["plot.png"]
    rec = last_json(capsys.readouterr().out)
    assert rec["first_best"] == "top10" and rec["switches"][0]["to"] == "top20"


def test_library_imports_no_matplotlib_torch_or_harness():
    code = (
        "import sys, curatorch.scaling; "
        "print(sorted(m for m in ('matplotlib', 'torch', 'curatorch.train', 'curatorch.cli',"
        " 'curatorch.report') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
