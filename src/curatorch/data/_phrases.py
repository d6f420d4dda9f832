"""Vectorised caption assembly from interned phrases.

A caption is a row of *phrase ids* ``[S]`` (0 = the empty phrase). Each phrase is a
short word sequence; :meth:`PhraseBook.token_table` turns the book into a
``[P, Lmax]`` table of token ids padded with ``PAD_ID``. :func:`assemble_tokens`
gathers ``[n, S, Lmax]`` tokens and compacts the pads of every row to the right with a
cumulative-sum scatter, which builds a million captions in about a second — far faster
than formatting and tokenizing a million strings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from curatorch.data.tokenizer import PAD_ID, WordTokenizer, split_words

__all__ = ["PhraseBook", "SynonymTable", "assemble_tokens"]


class SynonymTable:
    """Phrase ids of the synonyms of each value of one attribute.

    ``ids[v, k]`` is the k-th synonym of value ``v``; ``counts[v]`` synonyms are valid.
    """

    def __init__(self, ids: np.ndarray, counts: np.ndarray, max_len: int) -> None:
        self.ids = ids  # [V, Kmax] int64
        self.counts = counts  # [V] int64
        self.max_len = max_len  # longest synonym, in tokens

    def pick(self, values: np.ndarray, draws: np.ndarray) -> np.ndarray:
        """Phrase ids for ``values`` ``[m]`` with synonym choice ``draws % counts[value]``."""
        return self.ids[values, draws % self.counts[values]]


class PhraseBook:
    """Interns phrases (word sequences); phrase 0 is the empty phrase."""

    def __init__(self) -> None:
        self._phrases: list[tuple[str, ...]] = [()]
        self._index: dict[tuple[str, ...], int] = {(): 0}

    def __len__(self) -> int:
        return len(self._phrases)

    def add(self, text: str) -> int:
        """Id of ``text`` (split with :func:`split_words`), interning it if new."""
        key = tuple(split_words(text))
        pid = self._index.get(key)
        if pid is None:
            pid = len(self._phrases)
            self._phrases.append(key)
            self._index[key] = pid
        return pid

    def length(self, pid: int) -> int:
        """Length of phrase ``pid`` in tokens."""
        return len(self._phrases[pid])

    def table(self, synonyms: Sequence[Sequence[str]]) -> SynonymTable:
        """Intern a synonym list per value and return their :class:`SynonymTable`."""
        kmax = max(len(s) for s in synonyms)
        ids = np.zeros((len(synonyms), kmax), dtype=np.int64)
        counts = np.zeros(len(synonyms), dtype=np.int64)
        max_len = 0
        for v, syns in enumerate(synonyms):
            if not syns:
                raise ValueError(f"value {v} has no synonyms")
            for k, s in enumerate(syns):
                ids[v, k] = self.add(s)
                max_len = max(max_len, self.length(int(ids[v, k])))
            counts[v] = len(syns)
        return SynonymTable(ids, counts, max_len)

    def words(self) -> list[str]:
        """All words of all phrases, sorted."""
        return sorted({w for p in self._phrases for w in p})

    def token_table(self, tokenizer: WordTokenizer) -> torch.Tensor:
        """``[P, Lmax]`` int64 token ids of every phrase, padded with ``PAD_ID``."""
        lmax = max(1, max(len(p) for p in self._phrases))
        out = torch.full((len(self._phrases), lmax), PAD_ID, dtype=torch.int64)
        for i, p in enumerate(self._phrases):
            for j, w in enumerate(p):
                out[i, j] = tokenizer.token_id(w)
        return out


def assemble_tokens(
    phrase_ids: np.ndarray,
    table: torch.Tensor,
    context_length: int,
    *,
    chunk: int = 65536,
) -> torch.Tensor:
    """Concatenate phrases row by row into right-padded token rows.

    Args:
        phrase_ids: ``[n, S]`` integer phrase ids (0 = empty).
        table: ``[P, Lmax]`` token ids per phrase, from :meth:`PhraseBook.token_table`.
        context_length: output width; longer rows are truncated.

    Returns:
        ``[n, context_length]`` int64 tokens, pads (``PAD_ID``) on the right.
    """
    n, s = phrase_ids.shape
    lmax = table.shape[1]
    out = torch.empty((n, context_length), dtype=torch.int64)
    for start in range(0, n, chunk):
        pid = torch.from_numpy(np.ascontiguousarray(phrase_ids[start : start + chunk]))
        m = pid.shape[0]
        tok = table[pid.long()].reshape(m, s * lmax)  # [m, S * Lmax]
        keep = tok != PAD_ID
        pos = keep.cumsum(1) - 1  # target column of each kept token
        # pads and truncated tokens go to a dump column that is dropped afterwards
        pos = torch.where(keep & (pos < context_length), pos, context_length)
        buf = torch.full((m, context_length + 1), PAD_ID, dtype=torch.int64)
        buf.scatter_(1, pos, tok)
        out[start : start + m] = buf[:, :context_length]
    return out
