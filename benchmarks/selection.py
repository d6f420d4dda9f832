"""JEST selection: speed, memory and quality of the joint sampler against its twins.

    python benchmarks/selection.py                       # B=16384, f=0.8, N=16, D=256, CPU
    python benchmarks/selection.py --device cuda --super-batch 163840 --dim 768 --json

Reports (last line JSON with ``--json``):

- ``joint_s``: time of :func:`joint_select` (incremental, no B x B matrix), median;
- ``matmul_bound_s``: time of exactly the matrix products the joint algorithm needs,
  ``2 (N - 1)`` products of ``[b/N, D] x [D, B]`` per model, and nothing else;
- ``tiled_matmul_s``: the same products cut into the fused kernel's column tiles
  (:func:`curatorch.selection.kernels.default_tile`), whose outputs stay in cache: at
  large ``B`` faster than the whole products, so ``joint_over_tiled_matmul`` is the
  share of the joint time that is not matrix products;
- ``dense_s``: the dense twin (B x B score matrix, then the same sampler);
- ``joint_peak_mb`` / ``dense_peak_mb``: peak extra memory while selecting (CUDA: the
  allocator's peak; CPU: the process's peak resident set, reset before each run);
- ``learnability``: mean selected-batch learnability (``sum_{i,j in S} A_ij / b``) of
  joint, brute-force Gibbs, independent and random selection on the same embeddings.

The embeddings are synthetic, built so that learner and reference disagree as in
training: pairs share cluster structure (so the contrastive terms couple examples), the
reference aligns most pairs well, and the learner aligns a partly different set.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from curatorch.selection import (
    ModelEmbeddings,
    PairScorer,
    batch_score,
    batch_size_for,
    dense_joint_select,
    gibbs_select,
    independent_select,
    joint_select,
    random_select,
)
from curatorch.selection.kernels import default_tile
from curatorch.selection.scores import matmul_precision

# how much of an embedding is its concept, relative to the pair's own details (weight 1)
CONCEPT_WEIGHT = 1.3


def make_embeddings(
    size: int, dim: int, *, seed: int, device: torch.device
) -> tuple[ModelEmbeddings, ModelEmbeddings]:
    """Learner and reference views of one super-batch, as they look during training.

    Examples belong to ``size // 8`` concepts (about 8 per concept); each pair also has its
    own details (attributes, position), so a caption matches its own image better than
    another image of the same concept. 40% of pairs are clean; the rest carry another
    pair's caption. The reference (trained on curated data, sharp temperature) embeds
    both modalities close to concept + details, so clean pairs get a low loss, noisy pairs
    a high one, and negatives of the same concept a moderate one — the off-diagonal
    structure of JEST's learnability matrix. The early learner embeds everything loosely
    and is unsure of every pair.
    """
    g = torch.Generator().manual_seed(seed)
    concepts = max(size // 8, 2)
    centers = F.normalize(torch.randn(concepts, dim, generator=g), dim=-1)
    details = F.normalize(torch.randn(size, dim, generator=g), dim=-1)
    concept = torch.randint(concepts, (size,), generator=g)
    clean = torch.rand(size, generator=g) < 0.4
    source = torch.where(clean, torch.arange(size), torch.randint(size, (size,), generator=g))

    def embed(which: torch.Tensor, spread: float) -> torch.Tensor:
        noise = torch.randn(size, dim, generator=g) * spread / dim**0.5
        mixed = centers[concept[which]] * CONCEPT_WEIGHT + details[which] + noise
        return F.normalize(mixed, dim=-1).to(device)

    everyone = torch.arange(size)
    reference = ModelEmbeddings(embed(everyone, 0.35), embed(source, 0.35), 20.0, -12.0)
    learner = ModelEmbeddings(embed(everyone, 1.0), embed(source, 1.0), 10.0, -10.0)
    return learner, reference


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_extra_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory above the level before ``fn`` ran, in MiB (CUDA: allocator peak; CPU:
    peak resident set, exact only under a fixed ``MALLOC_MMAP_THRESHOLD_``: see
    :func:`cpu_peak_in_child`)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (Linux)
    except OSError:
        return float("nan")
    base = _rss_kb("VmRSS")
    fn()
    return (_rss_kb("VmHWM") - base) / 1024


def cpu_peak_in_child(which: str, argv: list[str]) -> float:
    """Peak extra memory of ``which`` ("joint" or "dense"), measured in a fresh process.

    glibc keeps freed large blocks in its heap once its mmap threshold has grown, so a
    process's resident set under-reports later peaks. The child runs with a fixed
    threshold (every block over 64 KiB is its own mapping, returned on free), which makes
    the peak resident set exact; the timings are taken in this process, without it.
    """
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--memory-of", which]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--super-batch", type=int, default=16384)
    p.add_argument("--filter-ratio", type=float, default=0.8)
    p.add_argument("--chunks", type=int, default=16)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--gibbs-steps", type=int, default=0, help="0: 10 x b")
    p.add_argument("--skip-dense", action="store_true", help="no dense twin (large B)")
    p.add_argument("--skip-quality", action="store_true", help="no Gibbs/quality comparison")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON line last")
    p.add_argument(
        "--matmul-precision",
        choices=("highest", "high", "medium"),
        default="highest",
        help="torch.set_float32_matmul_precision (high = TF32 on NVIDIA GPUs)",
    )
    p.add_argument(
        "--kernel",
        choices=("auto", "eager", "blocked", "compiled"),
        default="auto",
        help="PairScorer kernel of the per-chunk blocks (curatorch.selection.kernels)",
    )
    p.add_argument(
        "--precision",
        choices=("highest", "tf32", "bf16"),
        default="highest",
        help="PairScorer precision of the block products (tf32: CUDA only)",
    )
    p.add_argument("--memory-of", choices=("joint", "dense"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_float32_matmul_precision(args.matmul_precision)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    device = torch.device(args.device)
    size = args.super_batch
    b = batch_size_for(size, args.filter_ratio, args.chunks)
    n = b // args.chunks
    learner, reference = make_embeddings(size, args.dim, seed=args.seed, device=device)
    scorer = PairScorer(
        learner=learner,
        reference=reference,
        score="learnability",
        kernel=args.kernel,
        precision=args.precision,
    )
    gen = lambda: torch.Generator().manual_seed(args.seed)  # noqa: E731

    def run_joint() -> torch.Tensor:
        return joint_select(scorer, batch_size=b, chunks=args.chunks, generator=gen())

    chunk = torch.randperm(size, generator=gen())[:n].to(device)
    mm_dtype = torch.bfloat16 if args.precision == "bf16" else learner.image.dtype
    # the bound's products in the scorer's precision (bf16 operands, or TF32 below)
    operands = [(m.image.to(mm_dtype), m.text.to(mm_dtype)) for m in (learner, reference)]

    def run_matmuls() -> None:
        for _ in range(args.chunks - 1):
            for img, txt in operands:
                torch.addmm(txt.new_ones(1, 1), img[chunk], txt.T, alpha=10.0)
                torch.addmm(txt.new_ones(1, 1), txt[chunk], img.T, alpha=10.0)

    tile = default_tile(n, size, device)

    def run_tiled_matmuls() -> None:  # the same products in the fused kernel's tiles
        for _ in range(args.chunks - 1):
            for img, txt in operands:
                c_img, c_txt = img[chunk], txt[chunk]
                for start in range(0, size, tile):
                    torch.mm(txt[start : start + tile], c_img.T)  # [tile, n], as the kernel
                    torch.mm(img[start : start + tile], c_txt.T)

    def run_dense() -> torch.Tensor:
        return dense_joint_select(scorer.dense(), batch_size=b, chunks=args.chunks, generator=gen())

    if args.memory_of:  # child process of cpu_peak_in_child
        fn = run_joint if args.memory_of == "joint" else run_dense
        fn()  # warm-up: one-time allocations are not part of the peak
        print(peak_extra_mb(fn, device))
        return 0

    def peak(which: str) -> float:
        if device.type == "cpu":
            return cpu_peak_in_child(which, argv_list)
        return peak_extra_mb(run_joint if which == "joint" else run_dense, device)

    result: dict[str, object] = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "matmul_precision": args.matmul_precision,
        "kernel": args.kernel,
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "super_batch": size,
        "batch_size": b,
        "filter_ratio": 1 - b / size,
        "chunks": args.chunks,
        "dim": args.dim,
    }
    # interleaved, so that a busy machine slows both alike
    joint_times, bound_times, tiled_times = [], [], []
    for _ in range(args.repeats):
        joint_times.append(timed(run_joint, device, 1))
        with matmul_precision(args.precision):
            bound_times.append(timed(run_matmuls, device, 1))
            tiled_times.append(timed(run_tiled_matmuls, device, 1))
    result["joint_s"] = statistics.median(joint_times)
    result["matmul_bound_s"] = statistics.median(bound_times)
    result["joint_over_bound"] = result["joint_s"] / result["matmul_bound_s"]
    result["tiled_matmul_s"] = statistics.median(tiled_times)
    result["joint_over_tiled_matmul"] = result["joint_s"] / result["tiled_matmul_s"]
    result["joint_peak_mb"] = peak("joint")
    print(
        f"joint  {result['joint_s']:.4f} s  (matmul bound {result['matmul_bound_s']:.4f} s, "
        f"x{result['joint_over_bound']:.2f}; the same products in the kernel's tiles "
        f"{result['tiled_matmul_s']:.4f} s, x{result['joint_over_tiled_matmul']:.2f}), "
        f"peak {result['joint_peak_mb']:.1f} MiB",
        file=sys.stderr,
    )
    if not args.skip_dense:
        result["dense_s"] = timed(run_dense, device, 1)
        result["dense_peak_mb"] = peak("dense")
        result["dense_over_joint_memory"] = result["dense_peak_mb"] / max(
            result["joint_peak_mb"], 1e-9
        )
        print(
            f"dense  {result['dense_s']:.4f} s, peak {result['dense_peak_mb']:.1f} MiB",
            file=sys.stderr,
        )
    if not args.skip_quality:
        dense = scorer.dense()
        steps = args.gibbs_steps or 10 * b
        t0 = time.perf_counter()
        gibbs = gibbs_select(dense, batch_size=b, steps=steps, generator=gen())
        gibbs_s = time.perf_counter() - t0
        quality = {
            "joint": batch_score(dense, run_joint()),
            "gibbs": batch_score(dense, gibbs),
            "independent": batch_score(
                dense, independent_select(scorer, batch_size=b, generator=gen())
            ),
            "random": batch_score(dense, random_select(size, batch_size=b, generator=gen())),
        }
        del dense
        result["learnability"] = quality
        gain = quality["gibbs"] - quality["random"]
        result["joint_recovers_of_gibbs_gain"] = (quality["joint"] - quality["random"]) / gain
        result["gibbs_steps"] = steps
        result["gibbs_s"] = gibbs_s
        print(
            "learnability "
            + ", ".join(f"{k} {v:.4f}" for k, v in quality.items())
            + f"; joint recovers {result['joint_recovers_of_gibbs_gain']:.1%} of Gibbs' gain",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
