"""IID and JEST learn on img2dataset-layout web shards with free-form captions: a
tokenizer trained by ``curatorch data tokenizer``, a reference trained on clean shards and
embedded by ``curatorch embed``, retrieval on held-out shards well above chance.

``make test`` runs IID's learning claim and JEST's whole path at a few steps (reference,
cache, selection from the shards' super-batches, evaluation on the held-out shards);
``-m slow`` runs JEST's learning claim (150 steps, a reference of 75)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curatorch.cli import main

CONFIG = """
[data]
shards = "{root}/train/{{00000..00001}}.tar"
tokenizer = "{root}/tok.json"
image_size = 16

[model]
size = "tiny"

[optim]
lr = 3e-3
warmup_steps = 10

[train]
steps = 150
batch_size = 64
eval_every = 150
checkpoint_every = 150
threads = 1

[eval]
shards = "{root}/eval/{{00000..00000}}.tar"

[strategy]
chunks = 4
filter_ratio = 0.5
"""
CHANCE = 1 / 100  # retrieval among the 100 held-out pairs


def _cli(*argv: str, progress_flag: bool = True) -> None:
    """Run a curatorch command; exit 0 expected (``data tokenizer`` has no progress bar)."""
    assert main([*argv, "--no-progress"] if progress_flag else list(argv)) == 0


def _steps(n: int) -> list[str]:
    """``--set`` train.steps, eval_every and checkpoint_every to ``n``."""
    keys = ("steps", "eval_every", "checkpoint_every")
    return [x for k in keys for x in ("--set", f"train.{k}={n}")]


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("web_learning")
    make = ["data", "make-web-shards", "--image-size", "16"]
    _cli(*make, "--out", str(root / "train"), "--pairs", "1600", "--shard-size", "800")
    _cli(*make, "--out", str(root / "clean"), "--pairs", "400", "--shard-size", "400",
         "--seed", "1", "--clean-fraction", "1")  # fmt: skip
    _cli(*make, "--out", str(root / "eval"), "--pairs", "100", "--shard-size", "100",
         "--seed", "2", "--clean-fraction", "1")  # fmt: skip
    _cli("data", "tokenizer", str(root / "train"), "--out", str(root / "tok.json"),
         "--vocab-size", "600", progress_flag=False)  # fmt: skip
    (root / "web.toml").write_text(CONFIG.format(root=root))
    return root


def _final(run: Path) -> dict:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])


def _r1(last: dict) -> float:
    return (last["i2t_r1"] + last["t2i_r1"]) / 2


def _jest(web: Path, name: str, *, reference_steps: int, steps: int) -> dict:
    """A reference trained on the clean shards, ``curatorch embed``'s cache of it over the
    training shards, JEST from that cache: the JEST run's last record."""
    cfg = str(web / "web.toml")
    _cli("train", cfg, "--out", str(web / f"{name}_ref"), "--set",
         f"data.shards='{web}/clean/{{00000..00000}}.tar'", *_steps(reference_steps))  # fmt: skip
    _cli("embed", str(web / f"{name}_ref"), "--config", cfg, "--out", str(web / f"{name}_cache"))
    _cli("train", cfg, "--out", str(web / name), "--set", "strategy.name='jest'",
         "--set", f"strategy.reference='{web / f'{name}_cache'}'", *_steps(steps))  # fmt: skip
    return _final(web / name)


def test_iid_learns_retrieval_on_web_shards(web: Path) -> None:
    _cli("train", str(web / "web.toml"), "--out", str(web / "iid"))
    last = _final(web / "iid")
    assert last["eval_samples"] == 100 and last["step"] == 150
    assert last["data_samples_ok"] == 150 * 64 and last["data_samples_skipped"] == 0
    assert _r1(last) >= 3 * CHANCE, _r1(last)  # measured here: 0.06, i.e. 6x chance


def test_jest_trains_on_web_shards_from_an_embedded_reference(web: Path) -> None:
    """JEST's whole path on the web shards at 4 steps (its learning: the slow test)."""
    last = _jest(web, "jest_short", reference_steps=4, steps=4)
    assert last["eval_samples"] == 100 and last["step"] == 4
    assert last["examples_seen"] == 4 * 64
    assert last["data_samples_ok"] == 4 * 128  # super-batches of b / (1 - 0.5)
    assert last["flops_learner_scoring"] > 0 and last["flops_reference_scoring"] > 0
    assert last["flops_total"] == (
        last["flops_train"] + last["flops_learner_scoring"] + last["flops_reference_scoring"]
    )


@pytest.mark.slow
def test_jest_learns_retrieval_on_web_shards(web: Path) -> None:
    last = _jest(web, "jest", reference_steps=75, steps=150)
    assert last["eval_samples"] == 100 and last["step"] == 150
    assert last["flops_learner_scoring"] > 0
    assert _r1(last) >= 3 * CHANCE, _r1(last)  # measured here: 0.095, i.e. 9.5x chance
