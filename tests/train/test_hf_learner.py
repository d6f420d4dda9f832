"""A Hugging Face SiglipModel as the learner of the one loop: trained from a config or a
saved folder on img2dataset-layout shards, evaluated on held-out shards, saved so that
``from_pretrained`` loads it, used with JEST and an HF reference cache; bad inputs named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from curatorch.cli import main
from tests.helpers import TINY, last_json, tiny_hf_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

SIGLIP = tiny_hf_config("siglip", vocab_size=800, context_length=32)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    from curatorch.data import iter_captions, write_web_shards
    from curatorch.data.shards import expand_shards
    from curatorch.data.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("hf_learner")
    write_web_shards(root / "train", pairs=240, shard_size=80, seed=0, image_size=16)
    write_web_shards(
        root / "eval", pairs=40, shard_size=40, seed=3, image_size=16, misaligned=0,
        boilerplate=0, degraded=0,
    )  # fmt: skip
    train = str(root / "train" / "{00000..00002}.tar")
    train_tokenizer(iter_captions(expand_shards(train)), root / "tok.json", vocab_size=600)
    (root / "siglip.json").write_text(json.dumps(SIGLIP))
    (root / "tiny.toml").write_text(TINY)
    return {"root": root, "train": train, "eval": str(root / "eval" / "{00000..00000}.tar")}


def _pattern(web: dict, key: str) -> str:
    return str(web[key])


def _train(web: dict, out: Path, *sets: str) -> int:
    base = [
        f"data.shards='{_pattern(web, 'train')}'",
        f"data.tokenizer='{web['root'] / 'tok.json'}'",
        "data.image_size=16",
        f"eval.shards='{_pattern(web, 'eval')}'",
        "model.source='hf'",
        "train.steps=2",
        "train.eval_every=2",
        "train.checkpoint_every=2",
        "train.batch_size=16",
        *sets,
    ]
    argv = ["train", str(web["root"] / "tiny.toml"), "--out", str(out), "--no-progress"]
    return main([*argv, *[x for s in base for x in ("--set", s)]])


def test_hf_learner_trains_evaluates_and_saves_a_from_pretrained_folder(web, capsys) -> None:
    out = web["root"] / "iid"
    assert _train(web, out, f"model.hf_config='{web['root'] / 'siglip.json'}'") == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["step"] == 2 and summary["model_folder"] == str(out / "model")
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["scores_used"] == ["i2t_r1", "t2i_r1"] and last["eval_samples"] == 40
    model = transformers.SiglipModel.from_pretrained(str(out / "model"), local_files_only=True)
    assert model.config.text_config.vocab_size == 800
    # continue from the saved folder, with JEST and a reference cache written by that model
    cache = web["root"] / "cache"
    cfg = web["root"] / "embed.toml"
    cfg.write_text(
        f'[data]\nshards = "{_pattern(web, "train")}"\n'
        f'tokenizer = "{web["root"] / "tok.json"}"\nimage_size = 16\n'
    )
    embed = ["embed", str(out / "model"), "--config", str(cfg), "--out", str(cache)]
    assert main([*embed, "--no-progress"]) == 0
    assert last_json(capsys.readouterr().out)["model_kind"] == "hf-siglip"
    jest = web["root"] / "jest"
    sets = (
        f"model.path='{out / 'model'}'",
        "strategy.name='jest'",
        f"strategy.reference='{cache}'",
    )
    assert _train(web, jest, *sets, "strategy.chunks=4") == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["method"] == "jest" and summary["flops_learner_scoring"] > 0


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (("strategy.name='flexi-jest'", "strategy.score='hard-learner'"), "FlexiViT learner"),
        (("data.image_size=32",), "differs from the model's image size 16"),
    ],
)
def test_hf_learner_bad_input_is_one_line(web, capsys, sets, needle) -> None:
    cfg = f"model.hf_config='{web['root'] / 'siglip.json'}'"
    assert _train(web, web["root"] / "bad", cfg, *sets) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err


def test_tokenizer_larger_than_the_model_is_refused(web, capsys) -> None:
    small = {**SIGLIP, "text_config": {**SIGLIP["text_config"], "vocab_size": 100}}
    path = web["root"] / "small.json"
    path.write_text(json.dumps(small))
    assert _train(web, web["root"] / "small", f"model.hf_config='{path}'") == 2
    err = capsys.readouterr().err
    assert "token ids but the model's text embedding table has 100 rows" in err


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        ((), "needs exactly one of model.path"),
        (("model.path='x'", "model.hf_config='y'"), "needs exactly one of model.path"),
        (("model.hf_config='y'", "model.patch_sizes=[4]"), "has its own patch size"),
        (("model.source='curatorch'", "model.path='x'"), "need model.source = 'hf'"),
        (("model.source='timm'",), "model.source must be one of"),
        (("model.hf_config='y'", "model.hf_text_padding='left'"), "model.hf_text_padding must"),
        (("model.source='curatorch'", "model.hf_text_padding='masked'"), "need model.source"),
    ],
)
def test_model_section_is_validated(web, capsys, sets, needle) -> None:
    assert _train(web, web["root"] / "cfg", *sets) == 2
    assert needle in capsys.readouterr().err


def test_masked_text_padding_is_trained_saved_and_read_back(web, capsys) -> None:
    """model.hf_text_padding = 'masked': the learner masks pads, its saved folder says so,
    and a reference embedded from that folder is read the same way (same fingerprint)."""
    from curatorch.models import ADAPTER_FILE, load_model_adapter

    out = web["root"] / "masked"
    cfg = f"model.hf_config='{web['root'] / 'siglip.json'}'"
    assert _train(web, out, cfg, "model.hf_text_padding='masked'") == 0
    capsys.readouterr()
    record = json.loads((out / "model" / ADAPTER_FILE).read_text())
    assert record["text_padding"] == "masked"
    loaded = load_model_adapter("hf", out / "model")
    assert loaded.text_padding == "masked"
    clip = tiny_hf_config("clip", vocab_size=800, context_length=32)
    (web["root"] / "clip.json").write_text(json.dumps(clip))
    sets = (f"model.hf_config='{web['root'] / 'clip.json'}'", "model.hf_text_padding='masked'")
    capsys.readouterr()  # the loads' progress bars
    assert _train(web, web["root"] / "clip", *sets) == 2
    err = capsys.readouterr().err.strip()
    assert "model.hf_text_padding applies to SigLIP models" in err and "\n" not in err


def test_an_hf_runs_checkpoint_points_to_its_saved_folder(web) -> None:
    from curatorch.train import CheckpointError
    from curatorch.train.reference import load_trained_model

    out = web["root"] / "iid"  # written by the first test of this module
    if not out.exists():
        assert _train(web, out, f"model.hf_config='{web['root'] / 'siglip.json'}'") == 0
    with pytest.raises(CheckpointError, match=r"Hugging Face learner.*RUN/model"):
        load_trained_model(out)
