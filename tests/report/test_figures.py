"""Atomic writes (:mod:`curatorch.fileio`) and figure saving (:mod:`curatorch.plotting`),
which :mod:`curatorch.report` and :mod:`curatorch.scaling` share."""

from __future__ import annotations

import errno
import fnmatch
import os
import struct
from pathlib import Path

import pytest

from curatorch.fileio import (
    AtomicWriteError,
    atomic_temp_glob,
    atomic_write,
    atomic_write_bytes,
    atomic_write_dir,
    atomic_write_text,
)
from curatorch.plotting import pyplot, save_figure
from curatorch.report import save_figure as report_save_figure


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_write_text_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "twö")
    assert target.read_text(encoding="utf-8") == "twö"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert os.listdir(tmp_path) == ["a.json"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_the_temp_file_is_a_sibling_matching_the_glob(tmp_path: Path) -> None:
    seen: list[Path] = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_text("x")

    atomic_write(tmp_path / "config.json", write)
    (tmp,) = seen
    assert tmp.parent == tmp_path and fnmatch.fnmatchcase(tmp.name, atomic_temp_glob("config.json"))
    assert not tmp.exists()


def test_a_failed_write_removes_the_temp_and_names_the_file(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")

    def full(tmp: Path) -> None:
        tmp.write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(AtomicWriteError) as info:
        atomic_write(target, full)
    assert info.value.errno == errno.ENOSPC and info.value.strerror == "No space left on device"
    assert str(info.value) == f"cannot write {target}: No space left on device"

    def broken(tmp: Path) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):  # other errors pass unchanged
        atomic_write(target, broken)
    assert os.listdir(tmp_path) == ["f.txt"] and target.read_text() == "old"


def test_a_missing_folder_is_an_error_unless_parents(tmp_path: Path) -> None:
    target = tmp_path / "gone" / "f.txt"
    with pytest.raises(OSError, match=str(target)) as info:
        atomic_write_text(target, "x")
    assert info.value.errno == errno.ENOENT
    atomic_write_text(target, "x", parents=True)
    assert target.read_text() == "x"


def test_atomic_write_dir_replaces_a_folder(tmp_path: Path) -> None:
    target = tmp_path / "cache"

    def write(content: str, name: str = "cache"):
        def fill(tmp: Path) -> None:
            assert fnmatch.fnmatchcase(tmp.name, atomic_temp_glob(name))
            (tmp / "a.txt").write_text(content)

        return fill

    assert atomic_write_dir(target, write("1")) == target
    atomic_write_dir(target, write("2"))
    assert (target / "a.txt").read_text() == "2" and os.listdir(tmp_path) == ["cache"]

    def refuse(old: Path) -> None:
        raise ValueError(f"{old} is not mine")

    with pytest.raises(ValueError, match="not mine"):
        atomic_write_dir(target, write("3"), existing=refuse)
    assert (target / "a.txt").read_text() == "2" and os.listdir(tmp_path) == ["cache"]

    def full(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(AtomicWriteError, match=r"cannot write .*cache: No space"):
        atomic_write_dir(target, full)
    assert os.listdir(tmp_path) == ["cache"]
    atomic_write_dir(tmp_path / "new" / "deep", write("4", "deep"), parents=True)
    assert (tmp_path / "new" / "deep" / "a.txt").read_text() == "4"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_save_figure_writes_a_png_at_the_dpi_and_closes_the_figure(tmp_path: Path) -> None:
    assert report_save_figure is save_figure
    plt = pyplot()
    for dpi, bbox, size in ((100, None, (400, 300)), (50, None, (200, 150))):
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot([0, 1], [0, 1])
        save_figure(fig, tmp_path / "f.png", dpi=dpi, bbox_inches=bbox)
        assert not plt.fignum_exists(fig.number)
        assert _png_size(tmp_path / "f.png") == size
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    save_figure(fig, tmp_path / "sub" / "t.png", dpi=100, bbox_inches="tight", parents=True)
    width, height = _png_size(tmp_path / "sub" / "t.png")
    assert width < 400 and height < 300  # cropped to the drawn content
    assert sorted(os.listdir(tmp_path)) == ["f.png", "sub"]


def test_save_figure_needs_an_existing_folder_and_still_closes(tmp_path: Path) -> None:
    plt = pyplot()
    fig = plt.figure()
    with pytest.raises(ValueError, match="existing directory"):
        save_figure(fig, tmp_path / "missing" / "x.png")
    assert not plt.fignum_exists(fig.number)
