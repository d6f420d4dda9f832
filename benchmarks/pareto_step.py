"""Training-step time of MMPareto relative to the uniform baseline, same model and batch.

    python benchmarks/pareto_step.py --json                # the configs/pareto.toml model
    python benchmarks/pareto_step.py --encoder conv --batch-size 256

A step is the forward of the multimodal classifier, the multimodal and unimodal
cross-entropy losses, the integrator's backward and an optimizer step (SGD with momentum,
as in configs/pareto.toml), done as the trainer does it (per-loss backward passes from
the losses). ``--features`` times MMPareto on ``split_features`` leaves instead: one
backward through the heads, then ``g_m`` and ``g_u`` through the encoders, two
vector-Jacobian products or one batched with ``--vjp batched``. The uniform baseline is
always one plain backward. Inputs are a fixed coloured-and-gray digits batch. The two
methods are timed in alternating blocks (so that load from other processes hits both);
the figures are medians over all timed steps. The last line printed is JSON with
``step_time_ratio`` (MMPareto / uniform), ``mmpareto_s`` and ``uniform_s``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from curatorch.data import coloured_gray_digits
from curatorch.models import MultimodalClassifier, MultimodalClassifierConfig
from curatorch.pareto import VJP_MODES, build_integrator, split_features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="mlp", choices=["mlp", "conv"])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--embed-dim", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=10, help="alternating blocks per method")
    ap.add_argument("--steps", type=int, default=50, help="timed steps per block")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vjp", default="loop", choices=list(VJP_MODES))
    ap.add_argument("--features", action="store_true", help="MMPareto on split_features leaves")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = coloured_gray_digits(seed=0).train
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    inputs, labels = data.batch(idx[: args.batch_size])
    mods = data.modalities
    cfg = MultimodalClassifierConfig(
        modalities=mods,
        input_shapes=tuple(data.input_shapes()[m] for m in mods),
        num_classes=data.num_classes,
        encoder=args.encoder,
        hidden=args.hidden,
        embed_dim=args.embed_dim,
    )
    setups = {}
    for name in ("uniform", "mmpareto"):
        torch.manual_seed(0)
        model = MultimodalClassifier(cfg)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        integ = build_integrator(
            name, encoders=model.encoder_parameters(), heads=model.head_parameters(), vjp=args.vjp
        )
        setups[name] = (model, opt, integ)

    def step(name: str) -> float:
        model, opt, integ = setups[name]
        use_features = args.features and name == "mmpareto"
        t0 = time.perf_counter()
        if use_features:
            split = split_features(model.encode(inputs))
            out = model.forward_from_features(split.fusion, split.unimodal)
        else:
            split = None
            out = model(inputs)
        loss_mm = F.cross_entropy(out["logits"], labels)
        loss_u = {m: F.cross_entropy(out["unimodal_logits"][m], labels) for m in mods}
        opt.zero_grad(set_to_none=True)
        integ.backward(multimodal_loss=loss_mm, unimodal_losses=loss_u, features=split)
        opt.step()
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {"uniform": [], "mmpareto": []}
    for name in times:  # warm-up
        for _ in range(20):
            step(name)
    for _ in range(args.blocks):
        for name in times:
            times[name].extend(step(name) for _ in range(args.steps))
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "step_time_ratio": round(med["mmpareto"] / med["uniform"], 3),
        "mmpareto_s": med["mmpareto"],
        "uniform_s": med["uniform"],
        "encoder": args.encoder,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "features": args.features,
        "vjp": args.vjp,
    }
    if not args.json:
        for k, v in med.items():
            print(f"{k:>9}: {v * 1e3:.3f} ms/step (median of {len(times[k])})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
