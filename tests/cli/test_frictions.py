"""What a new user hit from a fresh clone: configs found from any folder, bad output paths,
one-seed reports and what a comparison's exit code means."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curatorch.cli import main
from curatorch.configs import CONFIG_DIR, resolve_config, shipped_configs
from curatorch.report import compare_markdown, compare_table, pareto_markdown
from curatorch.train.config import ConfigError

REPO = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------------
# configs as package data


def test_shipped_configs_are_the_repository_configs():
    names = shipped_configs()
    assert {"smoke", "demo", "pareto", "reference", "scaling_experiment"} <= set(names)
    # the repository's configs/ is the package's folder: README paths and names agree
    assert (REPO / "configs").resolve() == CONFIG_DIR
    assert sorted(p.stem for p in (REPO / "configs").glob("*.toml")) == names


def test_resolve_config_rules(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    smoke = CONFIG_DIR / "smoke.toml"
    assert resolve_config("smoke") == smoke
    assert resolve_config("smoke.toml") == smoke
    assert resolve_config(Path("smoke")) == smoke
    # an existing path wins over a shipped name
    (tmp_path / "smoke.toml").write_text("[train]\nsteps = 1\n")
    assert resolve_config("smoke.toml") == Path("smoke.toml")
    assert resolve_config(tmp_path / "smoke.toml") == tmp_path / "smoke.toml"
    # ... and a bare name that could mean either is refused
    with pytest.raises(ConfigError, match=r"'smoke' is ambiguous"):
        resolve_config("smoke")
    with pytest.raises(ConfigError) as info:
        resolve_config("configs/smoke.toml")  # a path: not looked up among the shipped ones
    msg = str(info.value)
    assert "configs/smoke.toml not found" in msg
    assert "demo" in msg and "smoke" in msg and "pareto" in msg
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match="folder is a folder"):
        resolve_config("folder")
    with pytest.raises(ConfigError, match="nope not found"):
        resolve_config("nope")


TINY_SMOKE = [
    "--no-progress",
    "--set",
    "data.raw_size=1500",
    "--set",
    "data.eval_size=240",
    "--set",
    "data.retrieval_size=120",
    "--set",
    "data.probe_shots=2",
    "--set",
    "train.steps=2",
    "--set",
    "train.batch_size=32",
    "--set",
    "train.eval_every=2",
    "--set",
    "train.checkpoint_every=2",
]


def test_train_a_shipped_config_by_name_from_another_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "smoke", "--out", "run", *TINY_SMOKE]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 2
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["optim"]["beta2"] == 0.95  # smoke.toml's, not a default


def test_unknown_config_is_exit_2_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "configs/smoke.toml", "--out", "run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "configs/smoke.toml not found" in err[0] and "smoke" in err[0]
    assert not (tmp_path / "run").exists()


def test_demo_uses_the_shipped_config_from_any_folder(tmp_path, monkeypatch, capsys):
    import curatorch.experiments.jest_compare as jc

    seen = {}

    def fake_run_compare(cc, out, *, overwrite, progress, command):
        seen.update(cc=cc, out=out, command=command)
        return {"table": "table", "summary": {"ok": True}}

    monkeypatch.setattr(jc, "run_compare", fake_run_compare)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo.toml").write_text("not toml at all [")  # the default ignores it
    assert main(["demo", "--quick", "--no-progress"]) == 0
    assert seen["out"] == Path("runs/demo-quick")
    assert seen["command"] == "curatorch demo --quick"
    assert seen["cc"].compare.seeds == (0,)  # the shipped demo's quick overrides
    assert capsys.readouterr().out.strip().splitlines()[-1] == '{"ok": true}'


# ---------------------------------------------------------------------------------------------
# bad output paths: exit 2, one line naming the path, before any work


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        (["data", "preview", "smoke"], "file"),
        (["data", "export-shards", "smoke", "--no-progress"], "folder"),
        (["scaling", "experiment", "scaling_experiment"], "folder"),
        (["compare", "demo", "--quick", "--no-progress"], "folder"),
        (["jest", "analyze", "smoke", "--set", "strategy.reference='x'"], "folder"),
    ],
)
def test_output_path_of_the_wrong_kind_is_exit_2(argv, kind, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("mine\n")
    wrong = "a_folder" if kind == "file" else "a_file"
    assert main([*argv, "--out", wrong]) == 2
    line = _one_error_line(capsys)
    assert f"--out {wrong}" in line and ".fig-" not in line
    # below a regular file: no folder can be made there
    assert main([*argv, "--out", "a_file/sub/x.png"]) == 2
    assert "--out a_file/sub/x.png" in _one_error_line(capsys)
    assert (tmp_path / "a_file").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "a_folder"]
    assert not any((tmp_path / "a_folder").iterdir())


def test_scaling_fit_and_plot_output_paths(tmp_path, capsys):
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("")
    runs = tmp_path / "runs.csv"
    runs.write_text("pool,samples_seen,accuracy,pool_size\na,1000,0.5,1M\na,2000,0.6,1M\n")
    for out in (tmp_path / "a_folder", tmp_path / "a_file" / "p.jsonl"):
        assert main(["scaling", "fit", str(runs), "--out", str(out), "--a", "10"]) == 2
        assert f"--out {out}" in _one_error_line(capsys)
    params = tmp_path / "p.jsonl"
    params.write_text("{}\n")
    plot = ["scaling", "plot", str(params), "--key", "k", "--bucket-size", "1M"]
    assert main([*plot, "--out", str(tmp_path / "a_folder")]) == 2
    assert "is a folder" in _one_error_line(capsys)


def test_unwritable_output_folder_is_exit_2(tmp_path, monkeypatch, capsys):
    import tempfile

    real = tempfile.NamedTemporaryFile

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == tmp_path / "ro":
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    out = tmp_path / "ro" / "grid.png"
    assert main(["data", "preview", "smoke", "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert str(out) in line and "not writable" in line


# ---------------------------------------------------------------------------------------------
# one seed: no spread


def _compare_results(seeds: list[int]) -> dict:
    strategies = {}
    curves = {}
    for name, score in (("iid", 0.11), ("jest", 0.16)):
        strategies[name] = {
            "final_mean_score": score,
            "final": {"zeroshot_acc": 0.2, "fewshot_acc": 0.3, "i2t_r1": 0.1, "t2i_r1": 0.1},
            "examples_to_target": 1000.0,
            "flops_to_target": 2e9,
        }
        curves[name] = {"mean_score_std": [0.0, 0.02], "flops_total": [0.0, 4e9]}
    return {
        "summary": {
            "strategies": strategies,
            "speedup_examples": {"iid": 1.0, "jest": 2.0},
            "speedup_flops": {"iid": 1.0, "jest": 1.5},
        },
        "curves": curves,
        "target": {"baseline": "iid", "metric": "mean_score", "value": 0.11},
        "budget": {"steps": 10, "batch_size": 8, "examples": 80},
        "seeds": seeds,
    }


def test_compare_report_with_one_seed_shows_no_spread():
    one = _compare_results([0])
    for text in (compare_table(one), compare_markdown(one)):
        assert "±" not in text
        assert "final mean_score (1 seed)" in text
        assert "0.160" in text
    assert "One seed: no spread" in compare_markdown(one)
    assert "min to max" not in compare_markdown({**one, "plots": {"examples_seen": "s.png"}})
    three = _compare_results([0, 1, 2])
    assert "0.160 ± 0.020" in compare_table(three)
    assert "standard deviation over seeds" in compare_markdown(three)


def _pareto_result(seeds: list[int], accs: list[float]) -> dict:
    row = {
        "test_acc": accs,
        "test_acc/gray": accs,
        "conflict_rate/gray": [0.1] * len(accs),
        "step_time_ratio": 1.0,
    }
    return {
        "data": "digits",
        "seeds": seeds,
        "modalities": ["gray"],
        "methods": {"uniform": row, "mmpareto": row},
        "alone": {"gray": accs},
        "checks": {"mmpareto multimodal acc > uniform": {"pass": False, "detail": "50 vs 50"}},
        "cos_plot": None,
    }


def test_pareto_report_with_one_seed_shows_no_spread():
    text = pareto_markdown(_pareto_result([0], [0.5]))
    assert "±" not in text and "| 50.00 |" in text
    assert "one seed, so no spread" in text
    assert "**FAIL**" in text and "exits 0" in text  # a finding, documented as such
    assert "55.00 ± 7.07" in pareto_markdown(_pareto_result([0, 1], [0.5, 0.6]))


# ---------------------------------------------------------------------------------------------
# the exit-code rule is documented where a user looks


@pytest.mark.parametrize(
    "argv", [["--help"], ["compare", "--help"], ["demo", "--help"], ["pareto", "compare", "--help"]]
)
def test_help_states_the_comparison_exit_rule(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "every run completed and the report was written" in text
