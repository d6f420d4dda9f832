"""The shipped scaling inputs on the command line: the README's scaling commands run as
written (from an empty folder, through ``main``) with the documented output shape,
``scaling data`` names what ships, and a bad name exits 2 naming the known names."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from curatorch.cli import main
from curatorch.scaling import SHIPPED_DIR, read_params
from tests.helpers import last_json
from tests.scaling.helpers import REFERENCE_UTILITY

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_scaling_commands() -> list[list[str]]:
    """The commands of the README's bash block that starts with ``curatorch scaling data``,
    continuation lines joined and ``#`` comments dropped, each without ``curatorch``."""
    blocks = README.read_text(encoding="utf-8").split("```bash\n")[1:]
    block = next(b for b in blocks if b.startswith("curatorch scaling data"))
    text = block.split("```", 1)[0].replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            assert argv[:2] == ["curatorch", "scaling"], line
            commands.append(argv[1:])
    return commands


def test_readme_lists_the_shipped_names_and_the_experiment() -> None:
    commands = readme_scaling_commands()
    actions = [c[1] for c in commands]
    assert actions == ["data", "predict", "plot", "fit", "predict", "experiment"]
    assert commands[1][2] == "published" and commands[3][2] == "sample"
    assert commands[5][2] == "scaling_experiment"  # the command that made `sample`
    assert "curatorch scaling experiment scaling_experiment --out" in (
        (SHIPPED_DIR / "sample.csv").read_text(encoding="utf-8")
    )


def _check_predict(rec: dict, budgets: list[str], labels: list[str]) -> None:
    assert list(rec) == ["budgets", "best"]
    assert list(rec["budgets"]) == budgets and list(rec["best"]) == budgets
    for b in budgets:
        assert list(rec["budgets"][b]) == labels
        assert all(0 < v < 100 for v in rec["budgets"][b].values())
        assert rec["best"][b] == max(labels, key=lambda lbl: rec["budgets"][b][lbl])


def _check_output(argv: list[str], out: str) -> None:
    """The documented output of one README command (its last stdout line is JSON)."""
    rec = last_json(out)
    action = argv[1]
    if action == "data":
        assert set(rec) == {"params", "runs"}
        assert list(rec["params"]) == ["published"] and list(rec["runs"]) == ["sample"]
        assert "published" in out and "sample" in out and "2404.07177" in out
    elif action == "predict" and argv[2] == "published":
        _check_predict(rec, ["32M", "64M", "128M", "640M"], ["top10", "top20", "top30", "top40"])
        for j, b in enumerate(rec["budgets"]):
            got = list(rec["budgets"][b].values())
            assert got == pytest.approx(REFERENCE_UTILITY[j], abs=1e-9)
        assert "18.25*" in out
    elif action == "predict":  # on the fit of the sample runs
        _check_predict(rec, ["16384", "81920", "327680"], ["top25", "top50", "top75", "top100"])
        assert rec["best"]["16384"] == "top25"  # with little compute, the best bucket alone
        assert rec["best"]["327680"] != "top25"  # with more, a wider filter
    elif action == "plot":
        assert Path(rec["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert rec["first_best"] == "top10" and rec["switches"][0]["to"] == "top20"
    elif action == "fit":
        fit = read_params(rec["out"])[0]
        assert fit.names == ("top0to25p", "top25to50p", "top50to75p", "top75to100p")
        assert rec["sse"] < 0.01 and fit.b[0] < fit.b[2] < 0  # the best bucket is the most useful
    else:
        raise AssertionError(f"no check for {argv}")


def test_readme_scaling_commands_run_as_written(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # an empty folder: only shipped names can resolve
    for argv in readme_scaling_commands():
        if argv[1] == "experiment":
            continue  # ~15 minutes; it is what produced the shipped `sample`
        assert main(argv) == 0, argv
        _check_output(argv, capsys.readouterr().out)


def test_data_json_only(capsys) -> None:
    assert main(["scaling", "data", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["params"]["published"]["contents"] == [
        "tmars_imagenet1k_data",
        "tmars_imagenet1k_utility",
    ]
    assert rec["params"]["published"]["records"] == 2
    assert rec["runs"]["sample"]["points"] == 40
    assert Path(rec["runs"]["sample"]["path"]) == SHIPPED_DIR / "sample.csv"
    assert any("scaling experiment" in s for s in rec["runs"]["sample"]["source"])


def test_data_record_follows_the_published_record(capsys) -> None:
    """The data-law record says its method: predict combines with the effective-data law
    without --method, and still refuses to guess the missing d."""
    args = ["scaling", "predict", "published", "--key", "tmars_imagenet1k_data"]
    args += ["--bucket-size", "12.8M", "--budgets", "32M"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--d" in err[0]
    assert main([*args, "--d", "0.1", "--json"]) == 0
    rec = last_json(capsys.readouterr().out)
    assert rec["budgets"]["32M"]["top20"] == pytest.approx(17.135231546922782, abs=1e-9)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["predict", "tmars", "--key", "k", "--bucket-size", "1M", "--budgets", "2M"], "published"),
        (["plot", "sample", "--key", "k", "--bucket-size", "1M", "--out", "p.png"], "published"),
        (["fit", "samples", "--out", "f.jsonl"], "sample"),
        (["fit", "published", "--out", "f.jsonl"], "sample"),
    ],
)
def test_bad_name_exits_2_naming_the_known_names(tmp_path, monkeypatch, capsys, argv, needle):
    monkeypatch.chdir(tmp_path)
    assert main(["scaling", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"{argv[1]} not found" in err[0] and f"({needle};" in err[0], err[0]
    assert "curatorch scaling data" in err[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bare_name_next_to_a_local_file_is_ambiguous(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    Path("sample.csv").write_text("pool,samples_seen,error\na,1,0.5\n")
    assert main(["scaling", "fit", "sample", "--out", "f.jsonl", "--pool-size", "10"]) == 2
    err = capsys.readouterr().err
    assert "ambiguous" in err and "./sample.csv" in err
    assert not Path("f.jsonl").exists()
