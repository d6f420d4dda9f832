"""Tokenizers for captions.

:class:`WordTokenizer` is the built-in word-level tokenizer used by the procedural
worlds: it lowercases, splits text with one regular expression into words, single
digits and single punctuation characters, and maps each piece to an id in a fixed
vocabulary. :class:`HFTokenizer` wraps a Hugging Face ``tokenizers`` file for real
data; it needs the optional extra ``curatorch[text]``.

Both produce ``[n, context_length]`` int64 tensors, right-padded with the pad id and
truncated to ``context_length``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "PAD_ID",
    "PAD_TOKEN",
    "UNK_ID",
    "UNK_TOKEN",
    "HFTokenizer",
    "WordTokenizer",
    "load_tokenizer",
    "split_words",
]

PAD_ID = 0
UNK_ID = 1
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"

# Letters (a run), a single digit, or a single punctuation/symbol character ("_" included).
_WORD_RE = re.compile(r"[^\W\d_]+|\d|[^\w\s]|_")


def split_words(text: str) -> list[str]:
    """Split ``text`` the way :class:`WordTokenizer` does.

    Lowercases, then splits into runs of letters, single digits and single punctuation
    characters; whitespace is dropped. ``"IMG_2041.jpg"`` becomes
    ``["img", "_", "2", "0", "4", "1", ".", "jpg"]``.
    """
    return _WORD_RE.findall(text.lower())


def _check_context_length(context_length: int) -> None:
    if isinstance(context_length, bool) or not isinstance(context_length, int):
        raise ValueError(f"context_length must be an int, got {context_length!r}")
    if context_length < 1:
        raise ValueError(f"context_length must be >= 1, got {context_length}")


def _check_ids(ids: torch.Tensor) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor):
        raise ValueError(f"ids must be a torch.Tensor, got {type(ids).__name__}")
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2:
        raise ValueError(f"ids must have shape [n, L], got {tuple(ids.shape)}")
    return ids


class WordTokenizer:
    """Word-level tokenizer over a fixed vocabulary.

    Args:
        vocab: the words, excluding the special tokens. Id 0 is ``<pad>`` and id 1 is
            ``<unk>``; ``vocab[i]`` gets id ``i + 2``. Words must be unique, non-empty,
            and each must be a single piece under :func:`split_words` (so that every
            word can actually be produced by :meth:`encode`).
        context_length: length of every encoded row, in tokens.
    """

    def __init__(self, vocab: Sequence[str], context_length: int) -> None:
        _check_context_length(context_length)
        words = list(vocab)
        seen: set[str] = set()
        for w in words:
            if not isinstance(w, str) or not w:
                raise ValueError(f"vocab entries must be non-empty strings, got {w!r}")
            if w in (PAD_TOKEN, UNK_TOKEN):
                raise ValueError(f"vocab must exclude the special tokens, got {w!r}")
            if split_words(w) != [w]:
                raise ValueError(
                    f"vocab entry {w!r} is not a single lowercase token under split_words"
                )
            if w in seen:
                raise ValueError(f"vocab has a duplicate entry {w!r}")
            seen.add(w)
        self._words: list[str] = words
        self._itos: list[str] = [PAD_TOKEN, UNK_TOKEN, *words]
        self._stoi: dict[str, int] = {w: i for i, w in enumerate(self._itos)}
        self.context_length: int = context_length

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included."""
        return len(self._itos)

    @property
    def pad_id(self) -> int:
        """The id used for right padding (always :data:`PAD_ID`)."""
        return PAD_ID

    @property
    def vocab(self) -> list[str]:
        """The vocabulary without the specials (a copy)."""
        return list(self._words)

    def token_id(self, word: str) -> int:
        """Id of a single word; :data:`UNK_ID` if it is not in the vocabulary."""
        return self._stoi.get(word, UNK_ID)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Encode strings into ``[n, context_length]`` int64 ids.

        Unknown words map to :data:`UNK_ID`; rows are truncated to ``context_length``
        and right-padded with :data:`PAD_ID`.
        """
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, got a single str")
        out = torch.full((len(texts), self.context_length), PAD_ID, dtype=torch.int64)
        get = self._stoi.get
        for i, text in enumerate(texts):
            ids = [get(w, UNK_ID) for w in split_words(text)][: self.context_length]
            if ids:
                out[i, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return out

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Decode ``[n, L]`` ids into strings: words joined by spaces, pads dropped."""
        ids = _check_ids(ids)
        itos = self._itos
        n_ids = len(itos)
        out = []
        for row in ids.tolist():
            words = []
            for t in row:
                if t == PAD_ID:
                    continue
                if not 0 <= t < n_ids:
                    raise ValueError(f"ids contains {t}, outside [0, {n_ids})")
                words.append(itos[t])
            out.append(" ".join(words))
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable description that :meth:`from_json` reads back."""
        return {
            "type": "word",
            "vocab": list(self._words),
            "context_length": self.context_length,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WordTokenizer:
        """Inverse of :meth:`to_json`."""
        if not isinstance(d, dict):
            raise ValueError(f"d must be a dict, got {type(d).__name__}")
        if d.get("type", "word") != "word":
            raise ValueError(f"d['type'] must be 'word', got {d.get('type')!r}")
        for key in ("vocab", "context_length"):
            if key not in d:
                raise ValueError(f"d is missing the key {key!r}")
        return cls(d["vocab"], int(d["context_length"]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WordTokenizer):
            return NotImplemented
        return self._words == other._words and self.context_length == other.context_length

    def __hash__(self) -> int:
        return hash((tuple(self._words), self.context_length))

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size}, context_length={self.context_length})"


class HFTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer with the :class:`WordTokenizer` interface.

    Args:
        path: a ``tokenizer.json`` file, read with ``tokenizers.Tokenizer.from_file``.
        context_length: length of every encoded row, in tokens.
        pad_token: the padding token. If ``None``, the first of ``"<pad>"``, ``"[PAD]"``
            and ``"<|pad|>"`` found in the vocabulary is used, else id 0.

    Note that the pad id of an arbitrary tokenizer need not be :data:`PAD_ID`; read
    :attr:`pad_id`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        context_length: int,
        *,
        pad_token: str | None = None,
    ) -> None:
        _check_context_length(context_length)
        try:
            from tokenizers import Tokenizer
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "HFTokenizer needs the `tokenizers` package; install the extra "
                "with `pip install 'curatorch[text]'`"
            ) from e
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ValueError(f"path must be an existing tokenizer file, got {path!r}")
        self._tok = Tokenizer.from_file(path)
        self._tok.no_padding()
        self._tok.no_truncation()
        self.context_length: int = context_length
        if pad_token is not None:
            pid = self._tok.token_to_id(pad_token)
            if pid is None:
                raise ValueError(f"pad_token {pad_token!r} is not in the vocabulary of {path}")
            self._pad_id = int(pid)
        else:
            self._pad_id = 0
            for cand in ("<pad>", "[PAD]", "<|pad|>"):
                pid = self._tok.token_to_id(cand)
                if pid is not None:
                    self._pad_id = int(pid)
                    break

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    @property
    def pad_id(self) -> int:
        """The id used for right padding."""
        return self._pad_id

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Encode strings into ``[n, context_length]`` int64 ids, truncated and right-padded."""
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, got a single str")
        out = torch.full((len(texts), self.context_length), self._pad_id, dtype=torch.int64)
        for i, enc in enumerate(self._tok.encode_batch(list(texts))):
            ids = enc.ids[: self.context_length]
            if ids:
                out[i, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return out

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Decode ``[n, L]`` ids into strings, pads dropped."""
        ids = _check_ids(ids)
        rows = [[t for t in row if t != self._pad_id] for row in ids.tolist()]
        return list(self._tok.decode_batch(rows))


def load_tokenizer(path: str | os.PathLike[str], context_length: int) -> HFTokenizer:
    """Load a Hugging Face ``tokenizer.json`` as an :class:`HFTokenizer`."""
    return HFTokenizer(path, context_length)
