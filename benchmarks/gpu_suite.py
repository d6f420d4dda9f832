"""The prepared GPU suite: every figure a short GPU loan should produce, in one command.

    PYTHONPATH=src python3 benchmarks/gpu_suite.py --json          # on one H100/H200
    python benchmarks/gpu_suite.py --dry-run --json                 # tiny sizes, CPU (tests)

Sections (each timed, each failure recorded in the JSON without stopping the others):

- ``selection``: paper-scale JEST selection (B = 163,840, b = 32,768, N = 16, D = 768) in
  fp32, tf32 and bf16 products: :func:`~curatorch.selection.joint_select` time, peak extra
  memory, the time of exactly its matrix products (the bound, same precision), their ratio;
  the plain ``eager`` kernel in fp32 for comparison; learnability of the chosen batch
  against a random one (``sum_{i,j in S} A_ij / b``, fp32 scores);
- ``throughput``: training img/s of the ``small`` and ``base`` two-towers (bf16 autocast),
  :mod:`train_throughput`'s measurement;
- ``jest_step``: JEST and Flexi-JEST step time / IID step time next to their FLOP ratios
  (:mod:`jest_step`, the demo's learner);
- ``pareto_step``: MMPareto step / uniform step (:mod:`pareto_step`).

Built for the GPU machine this project can borrow: its own CUDA PyTorch, no package
registry, no ``make setup`` (run it with ``PYTHONPATH=src``; it imports nothing beyond
torch, numpy and curatorch's own dependencies there). Sized to run in about 6 minutes
from a fresh machine, compilation included (``--budget-s`` stops starting new sections
after that). Last line printed: JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import selection as selection_bench  # noqa: E402  (torch and curatorch.selection only)
from curatorch.selection import (  # noqa: E402
    PairScorer,
    batch_score,
    chunk_sizes,
    joint_select,
    random_select,
)
from curatorch.selection.kernels import compile_failures, resolve_kernel  # noqa: E402
from curatorch.selection.scores import matmul_precision  # noqa: E402

# the benchmark modules are imported by their sections: one that cannot import fails alone

PAPER = {"super_batch": 163_840, "batch_size": 32_768, "chunks": 16, "dim": 768}
DRY = {"super_batch": 1024, "batch_size": 205, "chunks": 4, "dim": 32}


def _bound(learner, reference, size: int, batch: int, chunks: int, precision: str, device):
    """Exactly the products joint selection needs, in the same precision, nothing else."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    operands = [(m.image.to(dtype), m.text.to(dtype)) for m in (learner, reference)]
    gen = torch.Generator().manual_seed(0)
    sizes = chunk_sizes(batch, chunks)[:-1]  # the last chunk conditions nothing
    picks = [torch.randperm(size, generator=gen)[:n].to(device) for n in sizes]

    def run() -> None:
        for chunk in picks:
            for img, txt in operands:
                torch.mm(img[chunk], txt.T)
                torch.mm(txt[chunk], img.T)

    return run


def _selection_one(args, learner, reference, shape, precision: str, kernel: str) -> dict:
    device = torch.device(args.device)
    size, b, n = shape["super_batch"], shape["batch_size"], shape["chunks"]
    scorer = PairScorer(learner=learner, reference=reference, kernel=kernel, precision=precision)

    def run() -> torch.Tensor:
        return joint_select(
            scorer, batch_size=b, chunks=n, generator=torch.Generator().manual_seed(0)
        )

    matmuls = _bound(learner, reference, size, b, n, precision, device)
    t0 = time.perf_counter()
    joint_s = selection_bench.timed(run, device, args.repeats)
    with matmul_precision(precision):
        bound_s = selection_bench.timed(matmuls, device, args.repeats)
    timed_s = time.perf_counter() - t0
    fp32 = PairScorer(learner=learner, reference=reference)  # the batch's learnability
    return {
        "kernel": resolve_kernel(kernel, rows=max(chunk_sizes(b, n)), columns=size, device=device),
        "joint_s": joint_s,
        "matmul_bound_s": bound_s,
        "joint_over_bound": joint_s / bound_s,
        # the allocator's peak on CUDA; on CPU benchmarks/selection.py measures it properly
        "peak_mb": selection_bench.peak_extra_mb(run, device) if device.type == "cuda" else None,
        "learnability": batch_score(fp32, run()),
        "timing_s": timed_s,
    }


def section_selection(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    shape = DRY if args.dry_run else PAPER
    learner, reference = selection_bench.make_embeddings(
        shape["super_batch"], shape["dim"], seed=0, device=device
    )
    out: dict[str, object] = dict(shape)
    # dry run: the blocks are too small for "auto" to compile; compile them anyway
    kernel = "compiled" if args.dry_run else "auto"
    for precision in ("highest", "tf32", "bf16"):
        if precision == "tf32" and device.type != "cuda":
            continue
        out[precision] = _selection_one(args, learner, reference, shape, precision, kernel)
    out["eager_fp32"] = _selection_one(args, learner, reference, shape, "highest", "eager")
    gen = torch.Generator().manual_seed(0)
    rand = random_select(shape["super_batch"], batch_size=shape["batch_size"], generator=gen)
    out["random_learnability"] = batch_score(
        PairScorer(learner=learner, reference=reference), rand.to(device)
    )
    out["compile_failures"] = compile_failures()
    return out


def section_throughput(args: argparse.Namespace) -> dict:
    import train_throughput

    sizes = "tiny" if args.dry_run else "small,base"
    argv = ["--device", args.device, "--size", sizes, "--image-size", "32", "--batch-size"]
    argv += ["16", "--steps", "2", "--warmup", "1"] if args.dry_run else ["256", "--steps", "20"]
    if args.dry_run:
        argv += ["--pool-size", "400"]
    ns = train_throughput.build_parser().parse_args(argv)
    return {size: train_throughput.bench_size(size, ns) for size in sizes.split(",")}


def _device_overrides(args: argparse.Namespace, *, bf16: bool) -> list[str]:
    out = [f"train.device={args.device!r}"]
    if bf16 and args.device.startswith("cuda"):
        out.append("train.precision='bf16'")
    return out


def section_jest_step(args: argparse.Namespace) -> dict:
    import jest_step

    argv = []
    for o in _device_overrides(args, bf16=True):
        argv += ["--set", o]
    if args.dry_run:
        for o in ("data.raw_size=600", "train.batch_size=32", "strategy.chunks=4"):
            argv += ["--set", o]
        argv += ["--blocks", "1", "--steps", "2", "--warmup", "1", "--reference-steps", "2"]
    return jest_step.run(jest_step.parse_args(argv))


def section_pareto_step(args: argparse.Namespace) -> dict:
    import pareto_step

    argv = []
    for o in _device_overrides(args, bf16=False):
        argv += ["--set", o]
    if args.dry_run:
        argv += ["--blocks", "1", "--steps", "2", "--warmup", "1"]
    return pareto_step.run(pareto_step.parse_args(argv))


SECTIONS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "selection": section_selection,
    "throughput": section_throughput,
    "jest_step": section_jest_step,
    "pareto_step": section_pareto_step,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes (CPU, for the tests)")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=330.0, help="start no section after")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    args = p.parse_args(argv)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    if args.dry_run:
        args.repeats = 1
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        p.error(f"--sections: unknown {unknown} (known: {list(SECTIONS)})")
    device = torch.device(args.device)
    result: dict[str, object] = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "dry_run": args.dry_run,
        "date": time.strftime("%Y-%m-%d"),
    }
    start = time.perf_counter()
    for name in names:
        if time.perf_counter() - start > args.budget_s:
            result[name] = {"skipped": f"over --budget-s {args.budget_s}"}
            continue
        t0 = time.perf_counter()
        threads = torch.get_num_threads()
        try:
            result[name] = SECTIONS[name](args)
        except Exception as exc:  # a failed section is a figure too: record it, go on
            result[name] = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc(file=sys.stderr)
        finally:
            torch.set_num_threads(threads)  # the step benchmarks set one thread
        result[f"{name}_wall_s"] = round(time.perf_counter() - t0, 2)
        if not args.json:
            print(f"{name}: {result[f'{name}_wall_s']} s", file=sys.stderr, flush=True)
    result["total_s"] = round(time.perf_counter() - start, 2)
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
