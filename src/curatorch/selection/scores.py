"""Pair scores for data selection, computed block by block from embeddings.

For a super-batch of ``B`` image–text pairs and one model with L2-normalised embeddings
``x_i`` (images) and ``y_j`` (texts), temperature ``t`` and bias ``b``, the per-pair
sigmoid-contrastive loss is

    L_ij = softplus(-z_ij (t x_i·y_j + b)),   z_ii = +1, z_ij = -1 (i != j).

A *score matrix* ``A`` [B, B] combines a learner's and a reference model's losses:

- ``learnability``:   A = L_learner - L_reference   (JEST's default)
- ``easy-reference``: A = -L_reference
- ``hard-learner``:   A = L_learner

A batch ``S`` scores ``sum_{i,j in S} A_ij``, so a candidate ``k`` outside ``S`` adds
``A_kk + sum_{j in S} (A_kj + A_jk)``: its *conditional score*. :class:`PairScorer`
computes the diagonal and the row/column blocks that this sum needs without ever
forming the ``B x B`` matrix (except in :meth:`PairScorer.dense`, for tests).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from curatorch.selection.kernels import KERNELS, PRECISIONS, pair_softplus_sums, resolve_kernel

__all__ = ["SCORES", "ModelEmbeddings", "PairScorer", "matmul_precision"]

SCORES = ("learnability", "easy-reference", "hard-learner")


def _scalar(value: float | Tensor, name: str) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        value = float(value.detach())
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


@dataclass(frozen=True)
class ModelEmbeddings:
    """One model's view of a super-batch.

    Attributes:
        image: ``[B, D]`` L2-normalised image embeddings.
        text: ``[B, D]`` L2-normalised text embeddings (row i pairs with image i).
        logit_scale: the temperature ``t`` (already exponentiated), a positive scalar.
        logit_bias: the bias ``b``.

    Raises ValueError naming the field for embeddings that are not floating-point ``[B, D]``
    tensors of one shape, or hold NaN, inf or rows whose norm overflows their dtype.
    """

    image: Tensor
    text: Tensor
    logit_scale: float | Tensor
    logit_bias: float | Tensor

    def __post_init__(self) -> None:
        for name in ("image", "text"):
            value = getattr(self, name)
            if not isinstance(value, Tensor) or not value.is_floating_point():
                raise ValueError(
                    f"{name} embeddings must be a floating-point tensor, got "
                    f"{getattr(value, 'dtype', type(value).__name__)}"
                )
        if self.image.ndim != 2 or self.text.ndim != 2:
            raise ValueError(
                f"image and text embeddings must be [B, D], got {tuple(self.image.shape)} "
                f"and {tuple(self.text.shape)}"
            )
        if self.image.shape != self.text.shape:
            raise ValueError(
                f"image and text embeddings must have the same shape, got "
                f"{tuple(self.image.shape)} and {tuple(self.text.shape)}"
            )
        if _scalar(self.logit_scale, "logit_scale") <= 0:
            raise ValueError(f"logit_scale must be > 0, got {self.logit_scale}")
        _scalar(self.logit_bias, "logit_bias")
        # the largest row norm of each (one read-back): rows with NaN or inf, or too large
        # for their dtype, are refused here; PairScorer bounds its logits with these norms
        norms = [0.0, 0.0]
        if self.image.shape[0]:
            both = [
                torch.linalg.vector_norm(t.detach(), dim=1).amax() for t in (self.image, self.text)
            ]
            norms = torch.stack([n.double() for n in both]).tolist()
        for name, norm in zip(("image", "text"), norms, strict=True):
            if not math.isfinite(norm):
                raise ValueError(
                    f"{name} embeddings must be finite with row norms within the range of "
                    f"{getattr(self, name).dtype}, got a row of norm {norm} (L2-normalise them)"
                )
        object.__setattr__(self, "_max_norms", tuple(norms))

    def __len__(self) -> int:
        return self.image.shape[0]


class PairScorer:
    """Blocks of the score matrix ``A`` of one super-batch (see the module docstring).

    Args:
        learner: the learner's embeddings (required for ``learnability`` and
            ``hard-learner``).
        reference: the reference model's embeddings (required for ``learnability`` and
            ``easy-reference``). Keyword-only, so learner and reference cannot be swapped
            by position: swapping them would invert JEST.
        score: one of :data:`SCORES`.
        dtype: the dtype the blocks are computed in (default: the embeddings' dtype,
            with float16/bfloat16 promoted to float32).
        kernel: how the per-chunk blocks of :meth:`cross_sums` are computed, one of
            ``"auto"``, ``"eager"``, ``"blocked"``, ``"compiled"``
            (:mod:`curatorch.selection.kernels`); ``"auto"`` keeps small super-batches
            on the plain ``"eager"`` formula.
        precision: the matrix products of :meth:`cross_sums`: ``"highest"`` (in
            ``dtype``), ``"tf32"`` (CUDA only: TF32 tensor cores) or ``"bf16"``
            (bfloat16 operands, products rounded to bfloat16); softplus and sums stay in
            ``dtype`` and the samplers accumulate in float64.
        tile: candidates per tile for the tiled kernels (default: cache-sized).

    Raises ValueError naming ``logit_scale`` when a model's ``logit_scale``, ``logit_bias``
    and embedding norms make pair losses whose sums could overflow ``dtype`` (so scores
    are never inf or NaN).
    """

    def __init__(
        self,
        *,
        learner: ModelEmbeddings | None = None,
        reference: ModelEmbeddings | None = None,
        score: str = "learnability",
        dtype: torch.dtype | None = None,
        kernel: str = "auto",
        precision: str = "highest",
        tile: int | None = None,
    ) -> None:
        if score not in SCORES:
            raise ValueError(f"score must be one of {list(SCORES)}, got {score!r}")
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {list(KERNELS)}, got {kernel!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
            raise ValueError(f"tile must be an int >= 1 or None, got {tile!r}")
        self.kernel, self.precision, self.tile = kernel, precision, tile
        need_learner = score in ("learnability", "hard-learner")
        need_reference = score in ("learnability", "easy-reference")
        if need_learner and learner is None:
            raise ValueError(f"score {score!r} needs learner embeddings, got learner=None")
        if need_reference and reference is None:
            raise ValueError(f"score {score!r} needs reference embeddings, got reference=None")
        self.score = score
        # (sign, model) terms: A = sum(sign * L_model)
        self._terms: list[tuple[float, ModelEmbeddings]] = []
        if need_learner:
            self._terms.append((1.0, learner))  # type: ignore[arg-type]
        if need_reference:
            self._terms.append((-1.0, reference))  # type: ignore[arg-type]
        sizes = {len(m) for _, m in self._terms}
        if len(sizes) != 1:
            raise ValueError(
                f"learner and reference embeddings must cover the same super-batch, got sizes "
                f"{len(learner) if learner is not None else None} and "
                f"{len(reference) if reference is not None else None}"
            )
        self.size = sizes.pop()
        first = self._terms[0][1].image
        if dtype is None:
            dtype = first.dtype if first.dtype in (torch.float32, torch.float64) else torch.float32
        self.dtype = dtype
        self.device = first.device
        if precision == "tf32" and self.device.type != "cuda":
            raise ValueError(
                f"precision='tf32' needs CUDA embeddings, got them on {self.device.type}"
            )
        self._models = [
            (
                sign,
                m.image.to(dtype),
                m.text.to(dtype),
                _scalar(m.logit_scale, "logit_scale"),
                _scalar(m.logit_bias, "logit_bias"),
            )
            for sign, m in self._terms
        ]
        # every block, row sum and sub-batch total stays finite in ``dtype``: pair logits are
        # at most t |x| |y| + |b|, their losses at most that + log 2, and no sum has more
        # than B^2 of them per model
        limit = torch.finfo(dtype).max
        for (_, m), (_, _, _, t, b) in zip(self._terms, self._models, strict=True):
            ni, nt = m._max_norms  # type: ignore[attr-defined]
            logit = t * ni * nt + abs(b)
            if (
                t > limit
                or ni * nt > limit
                or 2.0 * len(self._terms) * self.size**2 * (logit + 1.0) > limit
            ):
                raise ValueError(
                    f"logit_scale={t} and logit_bias={b} with embedding norms up to {ni:.3g} "
                    f"(image) and {nt:.3g} (text) give pair logits up to {logit:.3g}, whose "
                    f"sums over a super-batch of {self.size} overflow {dtype}: L2-normalise "
                    f"the embeddings, lower logit_scale or pass dtype=torch.float64"
                )

    def diagonal(self) -> Tensor:
        """``A_kk`` for every example: ``[B]``."""
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        for sign, img, txt, t, b in self._models:
            logits = t * (img * txt).sum(dim=1) + b
            out += sign * F.softplus(-logits)  # positive pairs: z = +1
        return out

    def rows(self, chosen: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Each model's ``(image, text)`` embedding rows at ``chosen``: ``[n, D]`` each.

        What another data-parallel rank needs to condition its own candidates on these
        examples (:meth:`cross_sums_from`).
        """
        return [(img[chosen], txt[chosen]) for _, img, txt, _, _ in self._models]

    def cross_sums(self, chosen: Tensor) -> Tensor:
        """``sum_{c in chosen} (A_ck + A_kc)`` for every ``k`` not in ``chosen``: ``[B]``.

        Entries for ``k`` in ``chosen`` are not meaningful (they treat the pair (k, k) as a
        negative); selection masks them. Costs two ``[n, D] x [D, B]`` products per model,
        where ``n = len(chosen)``; peak extra memory is one ``[n, B]`` block.
        """
        return self.cross_sums_from(self.rows(chosen))

    def cross_sums_from(self, rows: list[tuple[Tensor, Tensor]]) -> Tensor:
        """``sum_c (A_ck + A_kc)`` over examples ``c`` given by their embeddings: ``[B]``.

        ``rows`` holds one ``(image [n, D], text [n, D])`` pair per model, in this
        scorer's model order (as :meth:`rows` returns them), for examples that need not be
        in this super-batch (for instance chosen on another rank). Every pair ``(c, k)``
        is treated as a negative.
        """
        if len(rows) != len(self._models):
            raise ValueError(
                f"rows must hold {len(self._models)} (image, text) pairs, got {len(rows)}"
            )
        n = rows[0][0].shape[0] if rows else 0
        kind = resolve_kernel(self.kernel, rows=n, columns=self.size, device=self.device)
        if kind != "eager" or self.precision != "highest":
            return self._fused_cross_sums(rows)
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        for (sign, img, txt, t, b), (c_img, c_txt) in zip(self._models, rows, strict=True):
            # rows: image c vs every text k -> A_ck ; columns: text c vs every image k -> A_kc
            rows_blk = torch.addmm(txt.new_tensor(b).expand(1, 1), c_img, txt.T, alpha=t)
            out.add_(F.softplus(rows_blk).sum(dim=0), alpha=sign)  # negatives: z = -1
            del rows_blk
            cols = torch.addmm(txt.new_tensor(b).expand(1, 1), c_txt, img.T, alpha=t)
            out.add_(F.softplus(cols).sum(dim=0), alpha=sign)
        return out

    def _operands(self) -> list[tuple[Tensor, Tensor]]:
        """Each model's candidate embeddings in the products' dtype (bf16 copies made once)."""
        if self.precision != "bf16":
            return [(img, txt) for _, img, txt, _, _ in self._models]
        if getattr(self, "_bf16", None) is None:
            self._bf16 = [
                (img.to(torch.bfloat16), txt.to(torch.bfloat16))
                for _, img, txt, _, _ in self._models
            ]
        return self._bf16

    def _fused_cross_sums(self, rows: list[tuple[Tensor, Tensor]]) -> Tensor:
        """:meth:`cross_sums_from` by the tiled kernels of
        :mod:`curatorch.selection.kernels` (or in reduced precision)."""
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        operands = self._operands()
        with matmul_precision(self.precision):
            for (sign, _, _, t, b), (c_img, c_txt), (img, txt) in zip(
                self._models, rows, operands, strict=True
            ):
                sums = pair_softplus_sums(
                    c_img.to(img.dtype),
                    c_txt.to(txt.dtype),
                    img,
                    txt,
                    scale=t,
                    bias=b,
                    kernel=self.kernel,
                    tile=self.tile,
                    out_dtype=self.dtype,
                )
                out.add_(sums, alpha=sign)
        return out

    def row_col_sums(self, block_size: int = 1024) -> Tensor:
        """Each example's row-and-column score ``sum_j A_kj + sum_j A_jk - A_kk``: ``[B]``.

        The score of every pair that involves ``k`` (its own pair counted once), computed
        in blocks of ``block_size`` rows, so peak extra memory is ``[block_size, B]``.
        """
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        diag = self.diagonal()
        for sign, img, txt, t, b in self._models:
            for start in range(0, self.size, block_size):
                stop = min(start + block_size, self.size)
                logits = torch.addmm(
                    txt.new_tensor(b).expand(1, 1), img[start:stop], txt.T, alpha=t
                )
                loss = F.softplus(logits)  # as negatives; diagonal fixed below
                idx = torch.arange(start, stop, device=self.device)
                pos = logits[idx - start, idx]
                loss[idx - start, idx] = F.softplus(-pos)
                out[start:stop] += sign * loss.sum(dim=1)  # row sums
                out += sign * loss.sum(dim=0)  # column sums
        return out - diag

    def subset(self, indices: Tensor) -> PairScorer:
        """The scorer of the sub-batch ``indices`` (its pairs only)."""
        idx = indices.to(device=self.device, dtype=torch.long)
        out = PairScorer.__new__(PairScorer)
        out.score, out.dtype, out.device = self.score, self.dtype, self.device
        out.kernel, out.precision, out.tile = self.kernel, self.precision, self.tile
        out._terms = self._terms
        out._models = [(s, i[idx], t[idx], ts, b) for s, i, t, ts, b in self._models]
        out.size = int(idx.numel())
        return out

    def total(self, block_size: int = 1024) -> float:
        """``sum_{i,j} A_ij`` over the whole super-batch, in ``[block_size, B]`` blocks."""
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        total = 0.0
        for sign, img, txt, t, b in self._models:
            for start in range(0, self.size, block_size):
                stop = min(start + block_size, self.size)
                logits = t * img[start:stop] @ txt.T + b
                idx = torch.arange(start, stop, device=self.device)
                pos = logits[idx - start, idx]
                block = F.softplus(logits).sum() - F.softplus(pos).sum() + F.softplus(-pos).sum()
                total += sign * float(block.double())
        return total

    def dense(self) -> Tensor:
        """The whole ``[B, B]`` score matrix (for tests and benchmarks only)."""
        out = torch.zeros(self.size, self.size, dtype=self.dtype, device=self.device)
        idx = torch.arange(self.size, device=self.device)
        for sign, img, txt, t, b in self._models:
            logits = torch.addmm(txt.new_tensor(b).expand(1, 1), img, txt.T, alpha=t)
            pos = logits[idx, idx].clone()
            out.add_(F.softplus(logits), alpha=sign)  # every pair as a negative ...
            del logits
            out[idx, idx] += sign * (F.softplus(-pos) - F.softplus(pos))  # ... but the diagonal
        return out


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """A context with TF32 matrix products (``precision="tf32"``, CUDA), else nothing;
    the flag is restored on exit."""
    if precision != "tf32":
        yield
        return
    matmul = torch.backends.cuda.matmul
    # torch >= 2.9 has fp32_precision; reading the legacy allow_tf32 after it was set
    # raises there, so use the new flag where it exists
    key = "fp32_precision" if hasattr(matmul, "fp32_precision") else "allow_tf32"
    before = getattr(matmul, key)
    setattr(matmul, key, "tf32" if key == "fp32_precision" else True)
    try:
        yield
    finally:
        setattr(matmul, key, before)
