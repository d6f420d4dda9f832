"""Tokenizers for real captions: trained on web shards, unknown-token rate checks,
``[data] tokenizer``, vocabulary checks against a model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from curatorch.data import (
    SPECIAL_TOKENS,
    DataConfig,
    build_tokenizer,
    check_shard_captions,
    check_unknown_rate,
    check_vocab_fits,
    iter_captions,
    load_tokenizer,
    train_tokenizer,
    unknown_token_rate,
    web_pairs,
    write_web_shards,
)
from curatorch.data.shapes import shapes_tokenizer


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("web")
    write_web_shards(out, pairs=300, shard_size=100, seed=0, image_size=16)
    return [str(p) for p in sorted(out.glob("*.tar"))]


@pytest.fixture(scope="module")
def held_out() -> list[str]:  # other seed: other samples, the generator's captions
    return [p.caption for p in web_pairs(500, seed=1)]


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_trained_tokenizer_knows_held_out_captions(
    shards: list[str], held_out: list[str], tmp_path: Path, kind: str
) -> None:
    out = tmp_path / "tok.json"
    info = train_tokenizer(iter_captions(shards), out, vocab_size=1000, kind=kind)
    assert info["captions"] == 300 and 32 < info["vocab_size"] <= 1000
    tok = load_tokenizer(out)
    assert tok.context_length == 32 and tok.pad_id == 0 and tok.unk_id == 1
    assert [tok._tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    rate = check_unknown_rate(tok, held_out, limit=0.01)
    assert rate <= 0.01
    ids = tok.encode(["Photo of the letter M in coral ink over a wooden surface"])
    assert ids[0, 0] == 2 and tok.decode(ids)[0].startswith("photo of the letter m")


def test_builtin_tokenizer_is_refused_with_the_measured_rate(held_out: list[str]) -> None:
    builtin = shapes_tokenizer()
    rate = unknown_token_rate(builtin, held_out)
    assert rate > 0.4  # most words of these captions are not in the shapes vocabulary
    with pytest.raises(ValueError) as exc:
        check_unknown_rate(builtin, held_out, limit=0.05)
    msg = str(exc.value)
    assert "\n" not in msg and f"{rate:.1%}" in msg and "built-in word tokenizer" in msg
    assert "curatorch data tokenizer SHARDS --out tok.json" in msg


def test_training_is_deterministic_and_max_captions_is_seeded(
    shards: list[str], tmp_path: Path
) -> None:
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    for path, seed in ((a, 0), (b, 0), (c, 1)):
        info = train_tokenizer(
            iter_captions(shards), path, vocab_size=200, max_captions=100, seed=seed
        )
        assert info["trained_on"] == 100
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_data_tokenizer_names_a_file_or_a_folder(shards: list[str], tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    train_tokenizer(iter_captions(shards), folder / "tokenizer.json", vocab_size=300)
    (folder / "tokenizer_config.json").write_text('{"model_max_length": 24}')
    data = DataConfig(shards=shards[0], tokenizer=str(folder))
    data.validate()
    tok = build_tokenizer(data)
    assert tok.context_length == 24 and tuple(tok.encode(["a"]).shape) == (1, 24)
    tok = build_tokenizer(dataclasses.replace(data, context_length=40))
    assert tok.context_length == 40
    assert check_shard_captions(data, tok, shards) <= 0.01


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"tokenizer": ""}, "data.tokenizer must be 'builtin' or the path"),
        ({"context_length": -1}, "data.context_length must be an int >= 0, got -1"),
        ({"context_length": 16}, "data.context_length=16 applies to a tokenizer file"),
        ({"max_unk_ratio": 1.5}, r"data.max_unk_ratio must be in \[0, 1\], got 1.5"),
        ({"tokenizer": "tok.json", "shards": ""}, "needs data.shards"),
    ],
)
def test_bad_tokenizer_config_names_the_field(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(DataConfig(shards="x.tar"), **changes).validate()


def test_missing_tokenizer_file_or_folder_is_one_line(tmp_path: Path) -> None:
    data = DataConfig(shards="x.tar", tokenizer=str(tmp_path / "nope.json"))
    with pytest.raises(ValueError, match=r"data.tokenizer: tokenizer .*nope.json does not exist"):
        build_tokenizer(data)
    with pytest.raises(ValueError, match=r"has no tokenizer\.json"):
        build_tokenizer(dataclasses.replace(data, tokenizer=str(tmp_path)))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"is not a Hugging Face tokenizer\.json"):
        build_tokenizer(dataclasses.replace(data, tokenizer=str(bad)))


def test_vocabulary_larger_than_the_embedding_table_is_refused(
    shards: list[str], tmp_path: Path
) -> None:
    train_tokenizer(iter_captions(shards), tmp_path / "t.json", vocab_size=300)
    tok = load_tokenizer(tmp_path / "t.json")
    check_vocab_fits(tok, vocab_size=tok.vocab_size, context_length=32)
    with pytest.raises(ValueError) as exc:
        check_vocab_fits(tok, vocab_size=100)
    msg = str(exc.value)
    assert f"{tok.vocab_size} ids" in msg and "100 rows" in msg and "\n" not in msg
    with pytest.raises(ValueError, match="longer than the model's context length of 16"):
        check_vocab_fits(tok, vocab_size=10_000, context_length=16)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vocab_size": 10}, "vocab_size must be an int >= 32, got 10"),
        ({"vocab_size": 100, "kind": "unigram"}, "kind must be one of"),
        ({"vocab_size": 100, "max_captions": -1}, "max_captions must be an int >= 0"),
    ],
)
def test_bad_training_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        train_tokenizer(["a caption"], tmp_path / "t.json", **kwargs)
    with pytest.raises(ValueError, match="captions is empty"):
        train_tokenizer([], tmp_path / "t.json", vocab_size=64)
    assert not (tmp_path / "t.json").exists()
