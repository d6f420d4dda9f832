"""Resource faults through ``curatorch.cli.main``: an unwritable output folder and a full
disk fail before training starts, or with one clear line (exit 1) that leaves the previous
checkpoint intact; a folder holding another run is refused without --resume/--overwrite.

A full disk is simulated by making the writes raise ``ENOSPC`` the way they do for real:
``OSError(ENOSPC)`` from Python file writes, and safetensors' own error ("... No space
left on device (os error 28)") from ``save_file`` (``scripts/fault_table.py --tmpfs``
also fills a real tmpfs).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from safetensors import SafetensorError

from curatorch.cli import main
from curatorch.train import checkpoint, contrastive, records
from curatorch.train.checkpoint import CheckpointWriteError, latest_checkpoint, load_checkpoint
from tests.helpers import PARETO_TINY, TINY

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    f = tmp_path / "tiny.toml"
    f.write_text(TINY)
    return f


def _train(cfg: Path, out: Path, *extra: str) -> int:
    return main(["train", str(cfg), "--out", str(out), "--no-progress", *extra])


def _error_line(stderr: str) -> str:
    """The one ``curatorch:`` line of a failed command (and no traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("curatorch:")]
    assert len(lines) == 1, stderr
    return lines[0]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if training gets as far as building the world."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(contrastive, "build_world", refuse)


def _fail_probe(monkeypatch, error: OSError) -> None:
    """The output folder's write probe raises ``error`` (what an unwritable or full
    folder does to the first write)."""
    real = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name == ".curatorch-write-test":
            raise error
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


# ------------------------------------------------------------------- unwritable folder


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_parent_fails_before_training(cfg_file, tmp_path, capsys, no_training):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        assert _train(cfg_file, parent / "run") == 2
    finally:
        parent.chmod(0o700)
    err = capsys.readouterr().err
    assert "not writable" in err and str(parent / "run") in err


@pytest.mark.parametrize(
    "error",
    [OSError(errno.EACCES, "Permission denied"), OSError(errno.EROFS, "Read-only file system")],
)
def test_unwritable_folder_fails_before_training(
    cfg_file, tmp_path, capsys, monkeypatch, no_training, error
):
    _fail_probe(monkeypatch, error)
    out = tmp_path / "run"
    assert _train(cfg_file, out) == 2
    err = _error_line(capsys.readouterr().err)
    assert "not writable" in err and str(out) in err and error.strerror in err
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()


def test_output_path_below_a_file_fails_before_training(cfg_file, tmp_path, capsys, no_training):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert _train(cfg_file, blocker / "run") == 2
    assert str(blocker / "run") in capsys.readouterr().err
    assert _train(cfg_file, blocker) == 2  # the output path itself is a file
    assert "not a folder" in capsys.readouterr().err
    assert blocker.read_text() == "x"


# -------------------------------------------------------------------------- full disk


def test_full_disk_at_start_fails_before_training(
    cfg_file, tmp_path, capsys, monkeypatch, no_training
):
    _fail_probe(monkeypatch, ENOSPC)
    out = tmp_path / "run"
    assert _train(cfg_file, out) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(out) in err


def _fail_checkpoint_write(monkeypatch, *, at_call: int, error: BaseException) -> list[int]:
    """``save_file`` raises ``error`` from its ``at_call``-th call on (2 calls per
    checkpoint: model, then trainer)."""
    real = checkpoint.save_file
    calls = [0]

    def save_file(*args, **kwargs):
        calls[0] += 1
        if calls[0] >= at_call:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    return calls


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The metrics records of TINY trained without a fault (one run for every case)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    (root / "tiny.toml").write_text(TINY)
    assert _train(root / "tiny.toml", root / "full") == 0
    return _lines(root / "full" / "metrics.jsonl")


@pytest.mark.parametrize(
    "error",
    [
        ENOSPC,
        SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        ),
    ],
    ids=["oserror", "safetensors"],
)
@pytest.mark.parametrize("at_call", [3, 4], ids=["model-file", "trainer-file"])
def test_full_disk_during_a_checkpoint_keeps_the_previous_one(
    cfg_file, tmp_path, capsys, monkeypatch, error, at_call, uninterrupted
):
    """TINY checkpoints every 2 steps: the step-2 checkpoint is written, the step-4 one
    hits a full disk. One line, exit 1, no temp folder left, step 2 still loads; once there
    is space again, --resume finishes with the metrics of an uninterrupted run."""
    out = tmp_path / "run"
    _fail_checkpoint_write(monkeypatch, at_call=at_call, error=error)
    capsys.readouterr()
    assert _train(cfg_file, out) == 1
    err = _error_line(capsys.readouterr().err)
    assert "cannot write checkpoint step 4" in err and "No space left on device" in err
    assert "step_00000002 is intact" in err
    ckpts = out / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step_00000002"]
    assert load_checkpoint(latest_checkpoint(out)).state["step"] == 2
    monkeypatch.undo()  # space freed
    assert _train(cfg_file, out, "--resume") == 0
    assert _lines(out / "metrics.jsonl") == uninterrupted


def test_full_disk_while_pointing_latest_keeps_the_previous_one(tmp_path, monkeypatch) -> None:
    import torch

    model = {"w": torch.ones(3)}
    save = checkpoint.save_checkpoint
    save(tmp_path, step=1, model_state=model, trainer_tensors={}, state={})
    real = checkpoint.atomic_write_text

    def atomic_write_text(path, text):
        if Path(path).name == "latest":
            raise ENOSPC
        return real(path, text)

    monkeypatch.setattr(checkpoint, "atomic_write_text", atomic_write_text)
    with pytest.raises(CheckpointWriteError, match="step_00000001 is intact") as info:
        save(tmp_path, step=2, model_state={"w": torch.zeros(3)}, trainer_tensors={}, state={})
    assert info.value.errno == errno.ENOSPC
    # the new folder is complete but unannounced: the run resumes from step 1
    assert load_checkpoint(latest_checkpoint(tmp_path)).state["step"] == 1


def test_full_disk_while_appending_metrics_names_the_file(
    cfg_file, tmp_path, capsys, monkeypatch
) -> None:
    class FullFile:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, text):
            raise ENOSPC

    monkeypatch.setattr(records, "open", FullFile, raising=False)
    out = tmp_path / "run"
    assert _train(cfg_file, out) == 1
    err = _error_line(capsys.readouterr().err)
    assert str(out / "metrics.jsonl") in err and "No space left on device" in err


def test_write_errors_keep_their_errno(tmp_path: Path) -> None:
    err = checkpoint._write_error(
        SafetensorError("I/O error: No space left on device (os error 28)"), "x"
    )
    assert err.errno == errno.ENOSPC and "No space left on device" in str(err)
    missing = tmp_path / "gone" / "file"
    with pytest.raises(OSError, match=str(missing)):
        checkpoint.atomic_write_text(missing, "text")


# --------------------------------------------------------------- a folder holding a run


@pytest.mark.parametrize("trainer", ["two-tower", "pareto"])
def test_folder_holding_a_run_is_refused_without_resume_or_overwrite(tmp_path, capsys, trainer):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY if trainer == "two-tower" else PARETO_TINY)
    prefix = ["train"] if trainer == "two-tower" else ["pareto", "train"]
    out = tmp_path / "run"

    def run(*extra: str) -> int:
        return main([*prefix, str(cfg), "--out", str(out), "--no-progress", *extra])

    assert run() == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert run() == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert run("--resume", "--overwrite") == 2
    assert run("--resume", "--set", "train.seed=7") == 2  # another run's config
    assert "train.seed" in capsys.readouterr().err
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # nothing touched
    assert run("--resume") == 0  # a finished run resumes to its summary
    assert run("--overwrite") == 0
