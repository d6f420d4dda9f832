"""What a run tells its user besides ``metrics.jsonl``: TensorBoard event files
(``train.log = "tensorboard"``) holding the very scalars of the records, once per step
across a resume; and a line on stderr when the data source skipped samples."""

from __future__ import annotations

import io
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

from curatorch.cli import main
from curatorch.train import ConfigError, load_config
from curatorch.train import loop as loop_module
from curatorch.train.records import read_jsonl
from curatorch.train.tblog import scalars
from tests.helpers import records

TB = ["--set", "train.log='tensorboard'"]

# a world of 300 pairs for shards: 8 steps of 16, evaluation every 4
SMALL = """
[data]
world = "shapes"
raw_size = 300
eval_size = 50
retrieval_size = 50
probe_shots = 1
seed = 0

[model]
size = "tiny"

[train]
steps = 8
batch_size = 16
eval_every = 4
checkpoint_every = 8
seed = 0
"""


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the event files in ``folder``: ``[(step, value), ...]``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _expected(rows: list[dict], prefix: str = "") -> dict[str, list[tuple[int, float]]]:
    """What the event files should hold for these records: each numeric field per step."""
    out: dict[str, list[tuple[int, float]]] = {}
    for rec in rows:
        for name, value in scalars(rec).items():
            out.setdefault(prefix + name, []).append((rec["step"], value))
    return out


def _assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for tag, points in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag


def test_tensorboard_scalars_are_the_metrics_records(tiny_cfg_file: Path, tmp_path: Path):
    out = tmp_path / "run"
    assert main(["train", str(tiny_cfg_file), "--out", str(out), "--no-progress", *TB]) == 0
    rows = records(out)
    assert [r["step"] for r in rows] == [0, 3, 6] and rows[0]["train_loss"] is None
    got = _scalars(out / "tensorboard")
    _assert_same(got, _expected(rows))
    assert "train_loss" in got and "step" not in got and "mean_score" in got


def test_tensorboard_holds_the_diagnostics_too(pareto_cfg_file: Path, tmp_path: Path):
    out = tmp_path / "run"
    args = ["pareto", "train", str(pareto_cfg_file), "--out", str(out), "--no-progress", *TB]
    assert main(args) == 0
    diag = read_jsonl(out / "diagnostics.jsonl")
    assert diag, "the multimodal run wrote no diagnostics"
    want = {**_expected(records(out)), **_expected(diag, "diagnostics/")}
    _assert_same(_scalars(out / "tensorboard"), want)


def test_resumed_run_writes_each_step_once(tiny_cfg_file: Path, tmp_path: Path, monkeypatch):
    """Interrupted while checkpointing step 6 (records 5 and 6 already in the event file,
    the last checkpoint at step 4): the resumed run writes steps 5 and 6 again, and the
    event files hold each step once, equal to ``metrics.jsonl``."""
    out = tmp_path / "run"
    args = ["train", str(tiny_cfg_file), "--out", str(out), "--no-progress", *TB]
    args += ["--set", "train.eval_every=1"]
    real = loop_module.Trainer.checkpoint

    def checkpoint(self):
        if self.prog.step == 6:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(loop_module.Trainer, "checkpoint", checkpoint)
    assert main(args) == 130
    before = _scalars(out / "tensorboard")
    assert [s for s, _ in before["lr"]] == list(range(7))
    monkeypatch.undo()
    assert main([*args, "--resume"]) == 0
    assert len(list((out / "tensorboard").iterdir())) == 2  # one event file per session
    rows = records(out)
    assert [r["step"] for r in rows] == list(range(7))
    _assert_same(_scalars(out / "tensorboard"), _expected(rows))


def test_bad_train_log_is_refused_naming_it(tiny_cfg_file: Path, tmp_path: Path, capsys):
    with pytest.raises(ConfigError, match=r"train\.log .*'jsonl' or 'tensorboard'.*'csv'"):
        load_config(tiny_cfg_file, ["train.log='csv'"])
    out = tmp_path / "run"
    bad = ["--set", "train.log='TensorBoard'"]
    assert main(["train", str(tiny_cfg_file), "--out", str(out), "--no-progress", *bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.log" in err[0], err
    assert not out.exists()


def test_missing_tensorboard_names_the_extra(
    tiny_cfg_file: Path, tmp_path: Path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    out = tmp_path / "run"
    assert main(["train", str(tiny_cfg_file), "--out", str(out), "--no-progress", *TB]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "curatorch[tb]" in err[0] and "train.log" in err[0], err
    assert not out.exists()  # nothing written


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 300-pair world exported as three clean shards of 100."""
    root = tmp_path_factory.mktemp("skips")
    cfg = root / "small.toml"
    cfg.write_text(SMALL)
    out = root / "shards"
    export = ["data", "export-shards", str(cfg), "--out", str(out), "--no-progress"]
    assert main([*export, "--samples-per-shard", "100"]) == 0
    return out


def _corrupt_every(shard: Path, every: int) -> int:
    """Rewrite ``shard`` with every ``every``-th image replaced by garbage; how many."""
    with tarfile.open(shard) as tf:
        members = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]  # type: ignore[union-attr]
    images = [i for i, (name, _) in enumerate(members) if name.endswith(".png")]
    for i in images[::every]:
        members[i] = (members[i][0], b"not a png")
    with tarfile.open(shard, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return len(images[::every])


def _train_on(folder: Path, out: Path, capsys) -> tuple[str, list[dict]]:
    cfg = out.parent / "small.toml"
    cfg.write_text(SMALL)
    args = ["train", str(cfg), "--out", str(out), "--no-progress"]
    args += ["--set", f"data.shards='{folder}/{{000000..000002}}.tar'"]
    args += ["--set", "eval.source='world'"]  # evaluate on the world the shards come from
    capsys.readouterr()
    assert main(args) == 0
    return capsys.readouterr().err, records(out)


def test_skipped_samples_are_reported_on_stderr(shards: Path, tmp_path: Path, capsys):
    faulty = tmp_path / "faulty"
    shutil.copytree(shards, faulty)
    assert sum(_corrupt_every(faulty / f"{i:06d}.tar", 20) for i in range(3)) == 15
    err, rows = _train_on(faulty, tmp_path / "run", capsys)
    skipped = [r["data_samples_skipped"] for r in rows]
    assert skipped[0] == 0 and 0 < skipped[1] < skipped[2], skipped
    lines = [line for line in err.splitlines() if "skipped" in line]
    first, second = rows[1], rows[2]
    assert lines[0] == (
        f"step 4: skipped {first['data_samples_skipped']} more samples "
        f"({first['data_samples_skipped']} in all: corrupt_image "
        f"{first['data_skipped_corrupt_image']}) in data.shards"
    ), lines
    more = second["data_samples_skipped"] - first["data_samples_skipped"]
    assert lines[1].startswith(f"step 8: skipped {more} more sample"), lines
    total = second["data_samples_skipped"]
    seen = total + second["data_samples_ok"]
    assert f"{total} of {seen} training samples were skipped (corrupt_image {total})" in lines[2]
    assert "metrics.jsonl" in lines[2] and len(lines) == 3, lines


def test_a_clean_run_says_nothing_of_skips(shards: Path, tmp_path: Path, capsys):
    err, rows = _train_on(shards, tmp_path / "run", capsys)
    assert rows[-1]["data_samples_skipped"] == 0
    assert "skipped" not in err, err
