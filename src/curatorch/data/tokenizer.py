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

import heapq
import itertools
import os
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

__all__ = [
    "BUILTIN_TOKENIZER",
    "PAD_ID",
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "TOKENIZER_KINDS",
    "UNK_ID",
    "UNK_TOKEN",
    "HFTokenizer",
    "WordTokenizer",
    "build_tokenizer",
    "check_shard_captions",
    "check_unknown_rate",
    "check_vocab_fits",
    "load_tokenizer",
    "split_words",
    "train_tokenizer",
    "unknown_token_rate",
]

PAD_ID = 0
UNK_ID = 1
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
# the special tokens of a trained tokenizer, ids 0 .. 3 in this order
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, "<bos>", "<eos>")
TOKENIZER_KINDS = ("bpe", "wordpiece")
# ``[data] tokenizer`` value: the built-in world's own word tokenizer
BUILTIN_TOKENIZER = "builtin"
# context length of a tokenizer file that sets none (no truncation, no model_max_length)
DEFAULT_CONTEXT_LENGTH = 32

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
    def unk_id(self) -> int:
        """The id of unknown words (always :data:`UNK_ID`)."""
        return UNK_ID

    @property
    def name(self) -> str:
        """How messages name this tokenizer."""
        return f"the built-in word tokenizer ({self.vocab_size} ids)"

    def count_unknown(self, texts: Sequence[str]) -> tuple[int, int]:
        """``(unknown, total)`` pieces of ``texts``, without truncation."""
        unk = total = 0
        for text in texts:
            pieces = split_words(text)
            total += len(pieces)
            unk += sum(p not in self._stoi for p in pieces)
        return unk, total

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
    :attr:`pad_id`. Special tokens its post-processor adds (``<bos>``, ``<eos>``) are
    part of every encoded row.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        context_length: int,
        *,
        pad_token: str | None = None,
    ) -> None:
        _check_context_length(context_length)
        Tokenizer = _tokenizers().Tokenizer
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ValueError(f"path must be an existing tokenizer file, got {path!r}")
        try:
            self._tok = Tokenizer.from_file(path)
        except Exception as exc:  # tokenizers raises a bare Exception for bad JSON
            raise ValueError(f"{path} is not a Hugging Face tokenizer.json: {exc}") from exc
        self._tok.no_padding()
        self._tok.no_truncation()
        self.path = path
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
        unk = getattr(self._tok.model, "unk_token", None)
        uid = self._tok.token_to_id(unk) if unk else None
        self._unk_id: int | None = None if uid is None else int(uid)

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    @property
    def pad_id(self) -> int:
        """The id used for right padding."""
        return self._pad_id

    @property
    def unk_id(self) -> int | None:
        """The id of the model's unknown token; ``None`` if it has none (byte-level BPE
        never produces one)."""
        return self._unk_id

    @property
    def name(self) -> str:
        """How messages name this tokenizer: its file."""
        return f"tokenizer {self.path} ({self.vocab_size} ids)"

    def count_unknown(self, texts: Sequence[str]) -> tuple[int, int]:
        """``(unknown, total)`` tokens of ``texts``, without truncation nor the special
        tokens the post-processor adds."""
        unk = total = 0
        for enc in self._tok.encode_batch(list(texts), add_special_tokens=False):
            total += len(enc.ids)
            if self._unk_id is not None:
                unk += enc.ids.count(self._unk_id)
        return unk, total

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

    def __repr__(self) -> str:
        return (
            f"HFTokenizer({self.path!r}, vocab_size={self.vocab_size}, "
            f"context_length={self.context_length})"
        )


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Hugging Face tokenizers need the `tokenizers` package; install the extra "
            "with `pip install 'curatorch[text]'`"
        ) from e
    return tokenizers


def _tokenizer_file(path: str | os.PathLike[str]) -> str:
    """``path`` itself (a file), or ``path/tokenizer.json`` (a model folder)."""
    p = os.fspath(path)
    if os.path.isdir(p):
        f = os.path.join(p, "tokenizer.json")
        if not os.path.isfile(f):
            raise ValueError(
                f"tokenizer folder {p} has no tokenizer.json (a Hugging Face fast tokenizer "
                f"file); train one with `curatorch data tokenizer SHARDS --out tok.json`"
            )
        return f
    if not os.path.isfile(p):
        raise ValueError(f"tokenizer {p} does not exist (a tokenizer.json or a model folder)")
    return p


def _default_context_length(file: str) -> int:
    """The context length a tokenizer file implies: its truncation ``max_length``, else
    ``model_max_length`` of a ``tokenizer_config.json`` beside it (when < 10,000), else
    :data:`DEFAULT_CONTEXT_LENGTH`."""
    import json

    try:
        with open(file, encoding="utf-8") as fh:
            trunc = json.load(fh).get("truncation") or {}
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{file} is not a Hugging Face tokenizer.json: {exc}") from exc
    if isinstance(trunc.get("max_length"), int) and trunc["max_length"] > 0:
        return int(trunc["max_length"])
    cfg = os.path.join(os.path.dirname(file), "tokenizer_config.json")
    if os.path.isfile(cfg):
        try:
            with open(cfg, encoding="utf-8") as fh:
                n = json.load(fh).get("model_max_length")
        except (OSError, ValueError, AttributeError):
            n = None
        if isinstance(n, int) and 0 < n < 10_000:
            return n
    return DEFAULT_CONTEXT_LENGTH


def load_tokenizer(path: str | os.PathLike[str], context_length: int | None = None) -> HFTokenizer:
    """Load a Hugging Face ``tokenizer.json``, or the one in a local model folder, as an
    :class:`HFTokenizer`. ``context_length`` ``None`` (or 0): the file's truncation
    length, else the folder's ``tokenizer_config.json`` ``model_max_length``, else
    :data:`DEFAULT_CONTEXT_LENGTH` (32)."""
    file = _tokenizer_file(path)
    if not context_length:
        context_length = _default_context_length(file)
    return HFTokenizer(file, context_length)


def build_tokenizer(data: Any, world: Any = None) -> WordTokenizer | HFTokenizer:
    """The tokenizer that ``data.tokenizer`` (a :class:`~curatorch.data.DataConfig`)
    names: the built-in ``world``'s for ``"builtin"``, else the file or folder it names,
    with ``data.context_length`` (0 = the file's own, see :func:`load_tokenizer`)."""
    name = data.tokenizer
    if name == BUILTIN_TOKENIZER:
        if world is None:
            raise ValueError("build_tokenizer: data.tokenizer = 'builtin' needs the world")
        return world.tokenizer
    try:
        return load_tokenizer(name, data.context_length or None)
    except ValueError as exc:
        raise ValueError(f"data.tokenizer: {exc}") from exc


# ----------------------------------------------------------------------------- checks

_RATE_BATCH = 256  # captions encoded at a time


def _count_unknown(tokenizer: Any, captions: Iterable[str]) -> tuple[int, int, int]:
    """``(unknown tokens, tokens, captions)`` of ``captions`` under ``tokenizer``."""
    if not hasattr(tokenizer, "count_unknown"):
        raise ValueError(
            f"tokenizer must have a count_unknown method (WordTokenizer, HFTokenizer), got "
            f"{type(tokenizer).__name__}"
        )
    if isinstance(captions, str):
        raise ValueError("captions must be an iterable of strings, got a single str")
    unk = total = n = 0
    batch: list[str] = []
    end = object()
    for caption in itertools.chain(captions, [end]):
        if caption is not end:
            if not isinstance(caption, str):
                raise ValueError(f"captions must be strings, got {type(caption).__name__}")
            batch.append(caption)
        if batch and (caption is end or len(batch) >= _RATE_BATCH):
            u, t = tokenizer.count_unknown(batch)
            unk, total, n = unk + u, total + t, n + len(batch)
            batch = []
    return unk, total, n


def unknown_token_rate(tokenizer: Any, captions: Iterable[str]) -> float:
    """Fraction of the tokens of ``captions`` that are the unknown token, in [0, 1].

    Counted on whole captions (no truncation), without the special tokens a tokenizer
    adds; 0.0 when the captions hold no token. ``captions`` may be any iterable (read
    once, in batches).
    """
    unk, total, _ = _count_unknown(tokenizer, captions)
    return unk / total if total else 0.0


def _tokenizer_name(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "name", type(tokenizer).__name__))


def check_unknown_rate(
    tokenizer: Any, captions: Iterable[str], *, limit: float, name: str = ""
) -> float:
    """The unknown-token rate of ``captions`` (:func:`unknown_token_rate`); raises a
    one-line ``ValueError`` naming the tokenizer (``name``, else the tokenizer's own),
    the measured rate and the fix when it is above ``limit``, or when there is no
    caption to measure."""
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 0 <= limit <= 1:
        raise ValueError(f"limit must be a number in [0, 1], got {limit!r}")
    who = name or _tokenizer_name(tokenizer)
    unk, total, n = _count_unknown(tokenizer, captions)
    if n == 0:
        raise ValueError(f"{who}: no caption to measure the unknown-token rate on")
    rate = unk / total if total else 0.0
    if rate > limit:
        raise ValueError(
            f"{who} maps {rate:.1%} of the caption tokens to the unknown token ({unk} of "
            f"{total} tokens in {n} captions), above data.max_unk_ratio={limit:g}; train one "
            f"with `curatorch data tokenizer SHARDS --out tok.json` and set "
            f'data.tokenizer = "tok.json"'
        )
    return rate


# captions of the first shard samples measured before training or embedding starts
UNK_SAMPLE_CAPTIONS = 1024


def check_shard_captions(
    data: Any, tokenizer: Any, urls: Sequence[str], *, samples: int = UNK_SAMPLE_CAPTIONS
) -> float:
    """:func:`check_unknown_rate` of ``tokenizer`` on the first ``samples`` captions of
    the shards ``urls`` (in order, images not decoded), against ``data.max_unk_ratio``
    (a :class:`~curatorch.data.DataConfig`); the message names ``data.tokenizer``.
    Shards without a readable caption pass (0.0): reading them counts and reports their
    faults (:class:`~curatorch.data.ShardStream`)."""
    from curatorch.data.shards import iter_captions

    name = f"data.tokenizer = {data.tokenizer!r} ({_tokenizer_name(tokenizer)})"
    captions = list(iter_captions(urls, limit=samples))
    if not captions:
        return 0.0
    return check_unknown_rate(tokenizer, captions, limit=data.max_unk_ratio, name=name)


def check_vocab_fits(
    tokenizer: Any, *, vocab_size: int, context_length: int | None = None, name: str = ""
) -> None:
    """Refuse (one-line ``ValueError`` naming both sizes) a tokenizer with more ids than
    the model's text embedding table has rows (``vocab_size``), or rows longer than its
    ``context_length`` (positions)."""
    who = name or _tokenizer_name(tokenizer)
    if tokenizer.vocab_size > vocab_size:
        raise ValueError(
            f"{who} has a vocabulary of {tokenizer.vocab_size} ids, larger than the model's "
            f"text embedding table of {vocab_size} rows; use the tokenizer the model was "
            f"trained with, or train one with --vocab-size <= {vocab_size}"
        )
    if context_length is not None and tokenizer.context_length > context_length:
        raise ValueError(
            f"{who} writes rows of {tokenizer.context_length} tokens, longer than the model's "
            f"context length of {context_length}; set data.context_length <= {context_length}"
        )


# ----------------------------------------------------------------------------- training


def _reservoir(captions: Iterable[str], k: int, seed: int) -> list[str]:
    """A uniform sample of ``k`` of ``captions`` (all when fewer), in stream order;
    memory for ``k`` captions only."""
    rng = random.Random(seed)
    keep: list[tuple[int, str]] = []
    for i, c in enumerate(captions):
        if i < k:
            keep.append((i, c))
        else:
            j = rng.randint(0, i)
            if j < k:
                keep[j] = (i, c)
    return [c for _, c in sorted(keep)]


def _pipeline(tok: Any) -> Any:
    """Set the text pipeline of a trained tokenizer: NFKC, lowercase, words and
    punctuation split, digits one by one, ``<bos> ... <eos>`` around each caption."""
    hf = _tokenizers()
    n, p = hf.normalizers, hf.pre_tokenizers
    tok.normalizer = n.Sequence([n.NFKC(), n.Lowercase()])
    tok.pre_tokenizer = p.Sequence([p.Whitespace(), p.Digits(individual_digits=True)])
    bos, eos = SPECIAL_TOKENS[2], SPECIAL_TOKENS[3]
    tok.post_processor = hf.processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, 2), (eos, 3)]
    )
    return tok


def _word_counts(captions: Iterable[str]) -> tuple[Counter[str], int]:
    """Counts of the pre-tokenized words of ``captions`` (read once) and the number of
    captions read."""
    probe = _pipeline(_tokenizers().Tokenizer(_tokenizers().models.WordLevel({}, unk_token="?")))
    norm, pre = probe.normalizer, probe.pre_tokenizer
    counts: Counter[str] = Counter()
    n = 0
    for caption in captions:
        if not isinstance(caption, str):
            raise ValueError(f"captions must be strings, got {type(caption).__name__}")
        n += 1
        counts.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(caption)))
    return counts, n


def _learn_merges(
    counts: Counter[str], *, room: int, min_frequency: int, kind: str
) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """Byte-pair merges over the words ``counts``: ``(alphabet, merges, new pieces)``.

    BPE marks a word's last character with ``</w>``; WordPiece marks every character but
    the first with ``##``. The most frequent adjacent pair is merged first, ties going
    to the smallest pair in string order (the ``tokenizers`` trainers break ties by ids
    given in hash order, so their files differ from process to process); stops when
    ``room`` new pieces exist or no pair is seen ``min_frequency`` times.
    """
    words = sorted(counts)
    if kind == "bpe":
        seqs = [[*w[:-1], w[-1] + "</w>"] for w in words]
        join = lambda a, b: a + b  # noqa: E731
    else:
        seqs = [[w[0], *("##" + c for c in w[1:])] for w in words]
        join = lambda a, b: a + b.removeprefix("##")  # noqa: E731
    freq = [counts[w] for w in words]
    alphabet = sorted({sym for seq in seqs for sym in seq} - set(SPECIAL_TOKENS))
    pairs: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for i, seq in enumerate(seqs):
        for pair in itertools.pairwise(seq):
            pairs[pair] += freq[i]
            where.setdefault(pair, set()).add(i)
    heap = [(-c, pair) for pair, c in pairs.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    known, new = set(alphabet), []
    while len(new) < room and heap:
        neg, pair = heapq.heappop(heap)
        if pairs.get(pair, 0) != -neg:  # stale entry
            if pairs.get(pair, 0) > 0:
                heapq.heappush(heap, (-pairs[pair], pair))
            continue
        if -neg < min_frequency:
            break
        merges.append(pair)
        piece = join(*pair)
        if piece not in known:
            known.add(piece)
            new.append(piece)
        for i in sorted(where.pop(pair, ())):
            seqs[i] = _apply_merge(seqs[i], pair, piece, freq[i], pairs, where, heap, i)
        pairs.pop(pair, None)
    return alphabet, merges, new


def _apply_merge(
    old: list[str],
    pair: tuple[str, str],
    piece: str,
    f: int,
    pairs: Counter[tuple[str, str]],
    where: dict[tuple[str, str], set[int]],
    heap: list[tuple[int, tuple[str, str]]],
    i: int,
) -> list[str]:
    """Word ``i``'s symbols ``old`` with ``pair`` merged into ``piece``; the pair counts
    (``f`` = the word's count), the pair -> words index and the heap updated."""
    seq, j = [], 0
    while j < len(old):
        if j + 1 < len(old) and (old[j], old[j + 1]) == pair:
            seq.append(piece)
            j += 2
        else:
            seq.append(old[j])
            j += 1
    for p in itertools.pairwise(old):
        pairs[p] -= f
    for p in itertools.pairwise(seq):
        pairs[p] += f
        where.setdefault(p, set()).add(i)
        heapq.heappush(heap, (-pairs[p], p))
    return seq


def _build(kind: str, vocab: dict[str, int], merges: list[tuple[str, str]]) -> Any:
    hf = _tokenizers()
    if kind == "bpe":
        model = hf.models.BPE(vocab, merges, unk_token=UNK_TOKEN, end_of_word_suffix="</w>")
        decoder = hf.decoders.BPEDecoder(suffix="</w>")
    else:
        model = hf.models.WordPiece(vocab, unk_token=UNK_TOKEN, continuing_subword_prefix="##")
        decoder = hf.decoders.WordPiece()
    tok = _pipeline(hf.Tokenizer(model))
    tok.decoder = decoder
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return tok


def train_tokenizer(
    captions: Iterable[str],
    out: str | os.PathLike[str],
    *,
    vocab_size: int,
    kind: str = "bpe",
    min_frequency: int = 2,
    max_captions: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Train a Hugging Face tokenizer on ``captions`` and write ``tokenizer.json`` to ``out``.

    Offline and streamed: ``captions`` is read once, as it comes (with ``max_captions``
    > 0, a seeded uniform sample of that many is kept in memory instead). The result is
    a function of the captions and the arguments. Ids 0-3 are :data:`SPECIAL_TOKENS`
    (``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``); every encoded caption is wrapped in
    ``<bos> ... <eos>``. The file is written atomically.

    Args:
        captions: the training text, one caption per item.
        out: the file to write (``tok.json``).
        vocab_size: the vocabulary size to reach, specials included (>= 32); the
            trained vocabulary may be smaller when the captions have fewer pieces.
        kind: ``"bpe"`` or ``"wordpiece"``.
        min_frequency: pieces seen fewer times are not merged.
        max_captions: train on a uniform sample of this many captions (0 = all).
        seed: seed of that sample.

    Returns:
        ``out``, ``kind``, ``vocab_size`` (trained), ``captions`` (read) and ``trained_on``.
    """
    from curatorch.fileio import atomic_write

    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"kind must be one of {list(TOKENIZER_KINDS)}, got {kind!r}")
    for key, value, lo in (
        ("vocab_size", vocab_size, 32),
        ("min_frequency", min_frequency, 1),
        ("max_captions", max_captions, 0),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{key} must be an int >= {lo}, got {value!r}")
    if isinstance(captions, str):
        raise ValueError("captions must be an iterable of strings, got a single str")
    seen = [0]

    def counted(items: Iterable[str]) -> Iterator[str]:
        for c in items:
            seen[0] += 1
            yield c

    stream: Iterable[str] = counted(captions)
    if max_captions:
        stream = _reservoir(stream, max_captions, seed)
    counts, _ = _word_counts(stream)
    if seen[0] == 0:
        raise ValueError("captions is empty: no text to train a tokenizer on")
    room = max(0, vocab_size - len(SPECIAL_TOKENS))
    alphabet, merges, pieces = _learn_merges(
        counts, room=room, min_frequency=min_frequency, kind=kind
    )
    pieces = pieces[: max(0, room - len(alphabet))]
    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *alphabet, *pieces])}
    if kind == "bpe":  # the merges that make the kept pieces
        merges = [m for m in merges if m[0] + m[1] in vocab]
    tok = _build(kind, vocab, merges)
    atomic_write(out, lambda tmp: tok.save(os.fspath(tmp)))
    trained_on = min(seen[0], max_captions) if max_captions else seen[0]
    return {
        "out": os.fspath(out),
        "kind": kind,
        "vocab_size": int(tok.get_vocab_size(with_added_tokens=True)),
        "captions": seen[0],
        "trained_on": trained_on,
    }
