"""IID and JEST learn on img2dataset-layout web shards with free-form captions: a
tokenizer trained by ``curatorch data tokenizer``, a reference trained on clean shards and
embedded by ``curatorch embed``, retrieval on held-out shards well above chance."""

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


def _cli(*argv: str, progress_flag: bool = True) -> None:
    """Run a curatorch command; exit 0 expected (``data tokenizer`` has no progress bar)."""
    assert main([*argv, "--no-progress"] if progress_flag else list(argv)) == 0


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


def test_iid_and_jest_learn_retrieval_on_web_shards(web: Path, capsys) -> None:
    cfg = str(web / "web.toml")
    # the reference: half the steps on the clean shards (its own r1 is not the claim)
    _cli("train", cfg, "--out", str(web / "ref"), "--set",
         f"data.shards='{web}/clean/{{00000..00000}}.tar'", "--set", "train.steps=75",
         "--set", "train.eval_every=75", "--set", "train.checkpoint_every=75")  # fmt: skip
    _cli("embed", str(web / "ref"), "--config", cfg, "--out", str(web / "cache"))
    _cli("train", cfg, "--out", str(web / "iid"))
    _cli("train", cfg, "--out", str(web / "jest"), "--set", "strategy.name='jest'",
         "--set", f"strategy.reference='{web / 'cache'}'")  # fmt: skip
    chance = 1 / 100
    for name in ("iid", "jest"):
        last = _final(web / name)
        assert last["eval_samples"] == 100 and last["step"] == 150
        r1 = (last["i2t_r1"] + last["t2i_r1"]) / 2
        # measured here: IID 0.06 and JEST 0.095, i.e. 6x and 9.5x chance
        assert r1 >= 3 * chance, (name, r1)
    assert _final(web / "jest")["flops_learner_scoring"] > 0
