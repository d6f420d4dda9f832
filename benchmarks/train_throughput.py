"""Training and evaluation throughput of the two-tower model, in images per second.

    python benchmarks/train_throughput.py                      # tiny and small on CPU
    python benchmarks/train_throughput.py --device cuda --size base   # bf16 autocast
    python benchmarks/train_throughput.py --device cuda --size base --compile

A training step is the forward of both towers, the SigLIP loss, the backward and an AdamW
step; an evaluation step is the no-grad forward of both towers. Inputs are random images
and token ids of the built-in world's shapes (the data pipeline is not timed). The last
line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext

import torch

from curatorch.losses import sigmoid_contrastive_loss
from curatorch.models import build_model, get_model_config, two_tower_forward_flops


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_size(size: str, args: argparse.Namespace) -> dict[str, float]:
    device = torch.device(args.device)
    cfg = get_model_config(
        size,
        image_size=args.image_size,
        patch_sizes=None,
        vocab_size=256,
        context_length=args.context_length,
    )
    patch = args.patch_size or min(cfg.image.patch_sizes)
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    forward = torch.compile(model) if args.compile else model
    b = args.batch_size
    images = torch.randn(b, 3, args.image_size, args.image_size, device=device)
    tokens = torch.randint(2, 256, (b, args.context_length), device=device)
    use_bf16 = device.type == "cuda" and not args.fp32
    autocast = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()
    )

    def train_step() -> None:
        with autocast:
            out = forward(images, tokens, patch_size=patch)
            loss = sigmoid_contrastive_loss(
                out["image_emb"].float(),
                out["text_emb"].float(),
                logit_scale=out["logit_scale"],
                logit_bias=out["logit_bias"],
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def eval_step() -> None:
        with autocast:
            model.encode_image(images, patch_size=patch)
            model.encode_text(tokens)

    def timeit(fn, train_mode: bool) -> float:
        model.train(train_mode)
        for _ in range(args.warmup):
            fn()
        _sync(device)
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    t_train = timeit(train_step, True)
    t_eval = timeit(eval_step, False)
    fwd = two_tower_forward_flops(cfg, patch)
    return {
        "train_images_per_s": b / t_train,
        "eval_images_per_s": b / t_eval,
        "train_step_s": t_train,
        "eval_step_s": t_eval,
        "train_tflops_per_s": 3 * fwd * b / t_train / 1e12,
        "batch_size": b,
        "patch_size": patch,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="tiny,small", help="comma-separated model sizes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--patch-size", type=int, default=0, help="0: the smallest configured")
    p.add_argument("--context-length", type=int, default=24)
    p.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast on cuda")
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    for size in [s.strip() for s in args.size.split(",") if s.strip()]:
        r = bench_size(size, args)
        results[size] = r
        print(
            f"{size:>6} b={r['batch_size']} p={r['patch_size']} "
            f"train {r['train_images_per_s']:10.1f} img/s   "
            f"eval {r['eval_images_per_s']:10.1f} img/s",
            file=sys.stderr,
        )
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        json.dumps(
            {
                "device": args.device,
                "device_name": device_name,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "results": results,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
