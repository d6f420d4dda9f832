import json

import pytest
import torch

from curatorch.data import PAD_ID, UNK_ID, WordTokenizer, split_words
from curatorch.data.tokenizer import HFTokenizer, load_tokenizer


def _tok(context_length: int = 6) -> WordTokenizer:
    return WordTokenizer(["a", "red", "circle", "img", "_", ".", "jpg", "2", "0", "4", "1"],
                         context_length)  # fmt: skip


def test_split_words_web_filename():
    assert split_words("IMG_2041.jpg") == ["img", "_", "2", "0", "4", "1", ".", "jpg"]
    assert split_words("  Top left: a RED circle ") == ["top", "left", ":", "a", "red", "circle"]


def test_specials_and_vocab_size():
    tok = _tok()
    assert (PAD_ID, UNK_ID) == (0, 1)
    assert tok.vocab_size == 11 + 2
    assert tok.token_id("a") == 2
    assert tok.token_id("zebra") == UNK_ID


def test_encode_pads_right_and_round_trips():
    tok = _tok(context_length=6)
    ids = tok.encode(["a red circle", "Red"])
    assert ids.dtype == torch.int64 and tuple(ids.shape) == (2, 6)
    assert ids[0, 3:].tolist() == [PAD_ID] * 3
    assert ids[1, 1:].tolist() == [PAD_ID] * 5
    assert tok.decode(ids) == ["a red circle", "red"]


def test_unknown_words_map_to_unk():
    tok = _tok()
    ids = tok.encode(["a blue circle"])
    assert ids[0, :3].tolist() == [tok.token_id("a"), UNK_ID, tok.token_id("circle")]
    assert tok.decode(ids) == ["a <unk> circle"]


def test_truncation():
    tok = _tok(context_length=4)
    ids = tok.encode(["IMG_2041.jpg"])
    assert tuple(ids.shape) == (1, 4)
    assert tok.decode(ids) == ["img _ 2 0"]
    assert (ids != PAD_ID).all()


def test_empty_text_is_all_pad():
    assert (_tok().encode([""]) == PAD_ID).all()


def test_json_round_trip():
    tok = _tok()
    d = json.loads(json.dumps(tok.to_json()))
    tok2 = WordTokenizer.from_json(d)
    assert tok2 == tok
    assert torch.equal(tok2.encode(["a red circle"]), tok.encode(["a red circle"]))


@pytest.mark.parametrize(
    ("vocab", "match"),
    [
        (["a", "a"], "duplicate"),
        (["<pad>"], "special"),
        (["two words"], "single"),
        (["Red"], "single"),
        ([""], "non-empty"),
    ],
)
def test_bad_vocab_is_rejected(vocab, match):
    with pytest.raises(ValueError, match=match):
        WordTokenizer(vocab, 4)


def test_bad_context_length_names_parameter():
    with pytest.raises(ValueError, match="context_length must be >= 1, got 0"):
        WordTokenizer(["a"], 0)


def test_encode_rejects_a_bare_string():
    with pytest.raises(ValueError, match="texts"):
        _tok().encode("a red circle")


def test_hf_tokenizer_wraps_tokenizers_file(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[PAD]": 0, "[UNK]": 1, "a": 2, "red": 3, "circle": 4}
    hf = tokenizers.Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    hf.pre_tokenizer = Whitespace()
    path = tmp_path / "tokenizer.json"
    hf.save(str(path))
    tok = load_tokenizer(str(path), context_length=5)
    assert isinstance(tok, HFTokenizer)
    assert tok.vocab_size == 5 and tok.context_length == 5 and tok.pad_id == 0
    ids = tok.encode(["a red circle", "a blue circle a red circle"])
    assert ids.dtype == torch.int64 and tuple(ids.shape) == (2, 5)
    assert ids[0].tolist() == [2, 3, 4, 0, 0]
    assert ids[1].tolist() == [2, 1, 4, 2, 3]  # unk + truncation
    assert tok.decode(ids[:1]) == ["a red circle"]
