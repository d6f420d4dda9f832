"""Fused score blocks: the per-chunk work of joint selection, one cache-sized tile at a time.

Each chunk of joint selection needs, for every candidate ``k`` of the super-batch and
each model (scale ``t``, bias ``b``), the sums over the chunk's ``n`` examples ``c``

    sum_c softplus(t x_c·y_k + b) + sum_c softplus(t y_c·x_k + b)        # [B]

(every pair a negative). Written plainly (the ``"eager"`` kernel, the slow twin) that is
two ``[n, B]`` blocks per model, each written by the matrix product, then read and written
by the softplus, then read by the sum: three passes over blocks that do not fit in cache.

The ``"compiled"`` kernel splits the candidates into tiles of ``tile`` (sized so a
``[tile, n]`` block stays in the L2 cache on CPU) and runs one ``torch.compile`` d
function per tile and model: both products, then softplus, scale and bias and the sums
over the chosen examples in one fused pass over the block (C++ with vector intrinsics on
CPU, Triton on CUDA; on CPU inductor writes ``exp(-|x|)`` out in a first loop over the
block and sums in a second). The block is laid out candidates by chosen so that the sum
runs along its contiguous axis.
In float32 (on every device) the softplus is evaluated as ``max(x, 0) + u P(u)``, ``u =
exp(-|x|)``, with ``P`` a degree-8 polynomial fit to ``log1p(u) / u`` on ``[0, 1]``
(relative error below 5e-8, under float32's resolution): one transcendental per pair
instead of two. In float64 the exact softplus is used. ``"blocked"`` is the same tiling
without compilation (for machines where ``torch.compile`` cannot build kernels).
``"auto"`` picks ``"compiled"`` for blocks large enough to repay the compilation (a few
seconds, once per process and shape) and ``"eager"`` for small ones, and falls back to
``"blocked"`` with one warning that names the error when compilation fails (a compiler
error: an out-of-memory error or bad input is raised as it is; :func:`compile_failures`
lists what failed).

Sums over a tile's ``n`` rows are accumulated in float32 (float64 for float64 blocks); the
samplers accumulate conditional scores across chunks in float64.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "KERNELS",
    "PRECISIONS",
    "compile_failures",
    "compiled_kernel_available",
    "default_tile",
    "pair_softplus_sums",
    "resolve_kernel",
    "softplus_poly",
]

KERNELS = ("auto", "eager", "blocked", "compiled")
PRECISIONS = ("highest", "tf32", "bf16")

# "auto" compiles when one chunk's blocks hold at least this many pairs per model
AUTO_COMPILE_PAIRS = 1 << 21
# CPU tiles: a [n, tile] float32 block of about this many bytes stays in L2
_CPU_TILE_BYTES = 3 << 19
# CUDA tiles bound the block's memory instead: [n, tile] of at most this many elements
_CUDA_TILE_ELEMENTS = 1 << 26

_POLY_DEGREE = 8


def _log1p_ratio_coefficients(degree: int = _POLY_DEGREE) -> tuple[float, ...]:
    """Least-squares coefficients (ascending powers) of ``log1p(u) / u`` on ``[0, 1]``,
    fit at 2,000 Chebyshev nodes; deterministic."""
    u = (np.cos(np.linspace(0.0, np.pi, 2000)) + 1.0) / 2.0
    safe = np.where(u > 0, u, 1.0)
    target = np.where(u > 0, np.log1p(u) / safe, 1.0)
    coef, *_ = np.linalg.lstsq(np.vander(u, degree + 1, increasing=True), target, rcond=None)
    return tuple(float(c) for c in coef)


_COEF = _log1p_ratio_coefficients()


def softplus_poly(x: Tensor) -> Tensor:
    """``softplus(x) = log(1 + exp(x))`` with one exponential: ``max(x, 0) + u P(u)``,
    ``u = exp(-|x|)``; relative error below 5e-8 (see the module docstring)."""
    u = torch.exp(-x.abs())
    acc = u * _COEF[-1] + _COEF[-2]  # Horner's rule, highest power first
    for c in reversed(_COEF[:-2]):
        acc = acc * u + c
    return torch.relu(x) + u * acc


def _tile_sums_exact(
    ci: Tensor, ct: Tensor, img: Tensor, txt: Tensor, t: Tensor, b: Tensor
) -> Tensor:
    """Both blocks' column sums for one tile of candidates: ``[tile]``.

    Each block is made as ``[tile, n]`` (candidates by chosen), so that its sum runs along
    the contiguous axis: the compiled CPU kernel's reduction loop reads each candidate's
    ``n`` terms side by side (over a ``[n, tile]`` block it read them down a stride of
    ``tile`` floats)."""
    rows = F.softplus(torch.mm(txt, ci.T).to(t.dtype) * t + b).sum(dim=1)
    cols = F.softplus(torch.mm(img, ct.T).to(t.dtype) * t + b).sum(dim=1)
    return rows + cols


def _tile_sums_poly(
    ci: Tensor, ct: Tensor, img: Tensor, txt: Tensor, t: Tensor, b: Tensor
) -> Tensor:
    """As :func:`_tile_sums_exact` with :func:`softplus_poly` (float32 blocks)."""
    rows = softplus_poly(torch.mm(txt, ci.T).to(t.dtype) * t + b).sum(dim=1)
    cols = softplus_poly(torch.mm(img, ct.T).to(t.dtype) * t + b).sum(dim=1)
    return rows + cols


_compiled: dict[tuple[str, bool], Callable[..., Tensor]] = {}
_broken: dict[str, str] = {}  # device type -> why compilation failed there


def compiled_kernel_available(device: torch.device | str) -> bool:
    """Whether the compiled kernel has not failed on this device type in this process."""
    return torch.device(device).type not in _broken


def compile_failures() -> dict[str, str]:
    """Device type -> why the compiled kernel failed there (and ``"auto"`` tiles without
    compiling), for reports."""
    return dict(_broken)


def _compile_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "``torch.compile`` could not build the kernel" (not an
    out-of-memory error or bad input, which are raised as they are)."""
    errors: list[type[BaseException]] = []
    try:
        from torch._dynamo.exc import TorchDynamoException

        errors.append(TorchDynamoException)
    except ImportError:  # pragma: no cover - torch without dynamo
        pass
    try:
        from torch._inductor.exc import InductorError  # type: ignore[attr-defined]

        errors.append(InductorError)
    except ImportError:  # pragma: no cover - older torch
        pass
    # a missing C++ compiler or Triton surfaces as these from the backend
    errors += [OSError, ImportError, NotImplementedError, AssertionError]
    return tuple(errors)


def _compiled_fn(device_type: str, exact: bool) -> Callable[..., Tensor]:
    key = (device_type, exact)
    if key not in _compiled:
        fn = _tile_sums_exact if exact else _tile_sums_poly
        _compiled[key] = torch.compile(fn, fullgraph=True)
    return _compiled[key]


def default_tile(rows: int, columns: int, device: torch.device) -> int:
    """Candidates per tile for a chunk of ``rows`` examples: a cache-sized ``[tile, rows]``
    float32 block on CPU (a multiple of 64), a memory-bounded one on CUDA."""
    rows = max(rows, 1)
    if device.type == "cuda":
        tile = _CUDA_TILE_ELEMENTS // rows
    else:
        tile = (_CPU_TILE_BYTES // (4 * rows)) // 64 * 64
    return int(min(max(tile, 64), max(columns, 1)))


def resolve_kernel(kernel: str, *, rows: int, columns: int, device: torch.device) -> str:
    """The kernel ``"auto"`` stands for at this size and device (others pass through).

    Raises ValueError naming ``kernel`` for an unknown name.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {list(KERNELS)}, got {kernel!r}")
    if kernel != "auto":
        return kernel
    if rows * columns < AUTO_COMPILE_PAIRS:
        return "eager"
    return "compiled" if compiled_kernel_available(device) else "blocked"


def _run_tiles(
    fn: Callable[..., Tensor],
    ci: Tensor,
    ct: Tensor,
    img: Tensor,
    txt: Tensor,
    t: Tensor,
    b: Tensor,
    tile: int,
    out: Tensor,
) -> None:
    for start in range(0, img.shape[0], tile):
        stop = min(start + tile, img.shape[0])
        out[start:stop] = fn(ci, ct, img[start:stop], txt[start:stop], t, b)


def pair_softplus_sums(
    chosen_image: Tensor,
    chosen_text: Tensor,
    image: Tensor,
    text: Tensor,
    *,
    scale: float,
    bias: float,
    kernel: str = "auto",
    tile: int | None = None,
    out_dtype: torch.dtype | None = None,
) -> Tensor:
    """``sum_c softplus(t x_c·y_k + b) + sum_c softplus(t y_c·x_k + b)`` for every ``k``.

    Args:
        chosen_image, chosen_text: the chunk's embeddings ``x_c``, ``y_c``, ``[n, D]``.
        image, text: the candidates' embeddings ``x_k``, ``y_k``, ``[B, D]`` (the products
            run in these tensors' dtype: pass bfloat16 copies for bf16 products).
        scale, bias: the model's ``t`` and ``b``.
        kernel: one of :data:`KERNELS` (see the module docstring).
        tile: candidates per tile (default :func:`default_tile`).
        out_dtype: dtype of the sums (default: the embeddings' dtype, bfloat16 and float16
            promoted to float32).

    Returns: ``[B]`` sums in ``out_dtype``.
    """
    if out_dtype is None:
        out_dtype = image.dtype if image.dtype in (torch.float32, torch.float64) else torch.float32
    n, size, device = chosen_image.shape[0], image.shape[0], image.device
    kind = resolve_kernel(kernel, rows=n, columns=size, device=device)
    if tile is None:
        tile = default_tile(n, size, device)
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise ValueError(f"tile must be an int >= 1, got {tile!r}")
    t = torch.tensor(scale, dtype=out_dtype, device=device)
    b = torch.tensor(bias, dtype=out_dtype, device=device)
    out = torch.empty(size, dtype=out_dtype, device=device)
    exact = out_dtype == torch.float64
    args = (chosen_image, chosen_text, image, text, t, b)
    if kind == "eager":  # the plain formula: whole [n, B] blocks
        return _tile_sums_exact(*args)
    if kind == "compiled":
        fn = _compiled_fn(device.type, exact)
        try:
            _run_tiles(fn, *args, tile, out)
            return out
        except _compile_errors() as exc:  # compilation failed: say so once, tile without it
            if kernel == "compiled" or isinstance(exc, torch.OutOfMemoryError):
                raise
            first = (str(exc).splitlines() or [repr(exc)])[0][:200]
            _broken[device.type] = f"{type(exc).__name__}: {first}"
            warnings.warn(
                f"curatorch.selection: the compiled score kernel failed on {device.type} "
                f"({_broken[device.type]}); using the blocked kernel (same results, slower)",
                RuntimeWarning,
                stacklevel=2,
            )
    _run_tiles(_tile_sums_exact, *args, tile, out)
    return out
