"""``curatorch pareto train`` and ``curatorch pareto compare`` (MMPareto and baselines)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from curatorch.cli.common import (
    COMPARISON_EPILOG,
    add_set_option,
    config_path,
    distributed_context,
    end_distributed,
)

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``pareto`` command group (``train``, ``compare``) to ``sub``."""
    p = sub.add_parser("pareto", help="multimodal classifier with MMPareto or a baseline")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, help_text in (
        ("train", _train, "train one multimodal classifier from a TOML config"),
        ("compare", _compare, "methods x seeds plus unimodal-alone models -> report"),
    ):
        epilog = COMPARISON_EPILOG if name == "compare" else None
        a = actions.add_parser(name, help=help_text, epilog=epilog)
        a.add_argument(
            "config", type=Path, help="experiment config: a TOML file or a shipped name (pareto)"
        )
        a.add_argument("--out", type=Path, required=True, help="run folder")
        add_set_option(a)
        a.add_argument("--resume", action="store_true", help="continue the run(s) in --out")
        a.add_argument("--overwrite", action="store_true", help="replace the run(s) in --out")
        a.add_argument("--no-progress", action="store_true", help="no progress bar")
        a.set_defaults(handler=handler)


def _show(record: dict) -> None:
    from tqdm.auto import tqdm

    accs = " ".join(f"{k}={v:.3f}" for k, v in record.items() if k.startswith("test_acc"))
    tqdm.write(f"step {record['step']:>6} {accs}", file=sys.stderr)


def _train(args: argparse.Namespace) -> int:
    from curatorch.train.multimodal import load_pareto_config, train_pareto

    cfg = load_pareto_config(config_path(args.config), args.overrides)
    dist = distributed_context(cfg.train.device)
    summary = train_pareto(
        cfg,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        on_eval=_show,
        dist=dist,
    )
    if dist.is_main:
        print(json.dumps(summary))
    end_distributed(dist)
    return 0


def _curve(run: Path, mod: str) -> list[tuple[int, float]]:
    path = run / "diagnostics.jsonl"
    if not path.exists():
        return []
    pts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get(f"cos/{mod}") is not None:
            pts.append((int(rec["step"]), float(rec[f"cos/{mod}"])))
    return pts


def _mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    by_step: dict[int, list[float]] = {}
    for c in curves:
        for s, v in c:
            by_step.setdefault(s, []).append(v)
    return [(s, statistics.fmean(v)) for s, v in sorted(by_step.items())]


def _compare(args: argparse.Namespace) -> int:
    from curatorch.report import pareto_cos_plot, pareto_markdown
    from curatorch.train import prepare_run_dir
    from curatorch.train.checkpoint import atomic_write_text
    from curatorch.train.multimodal import (
        build_multimodal_splits,
        load_pareto_config,
        pareto_config_to_dict,
        train_pareto,
    )

    cfg = load_pareto_config(config_path(args.config), args.overrides)
    out: Path = args.out
    prepare_run_dir(
        out, config=pareto_config_to_dict(cfg), resume=args.resume, overwrite=args.overwrite
    )
    splits = build_multimodal_splits(cfg.data)
    mods = list(cfg.data.modalities or splits.train.modalities)
    for m in cfg.compare.alone:
        if m not in mods:
            raise ValueError(f"compare.alone names {m!r}, not one of the modalities {mods}")
    runs_root = out / "runs"
    runs_root.mkdir(exist_ok=True)

    def run(name: str, c: Any) -> dict[str, Any]:
        summary = train_pareto(
            c,
            runs_root / name,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            splits=splits,
        )
        print(
            f"{name}: test_acc={summary['test_acc']:.4f} "
            + " ".join(f"{m}={summary.get(f'test_acc/{m}', float('nan')):.4f}" for m in mods),
            file=sys.stderr,
        )
        return summary

    methods: dict[str, dict[str, Any]] = {}
    for method in cfg.compare.methods:
        row: dict[str, Any] = {"test_acc": [], "step_time_s": [], "runs": []}
        for m in mods:
            row[f"test_acc/{m}"] = []
            row[f"conflict_rate/{m}"] = []
        for seed in cfg.compare.seeds:
            c = dataclasses.replace(
                cfg,
                pareto=dataclasses.replace(cfg.pareto, method=method),
                train=dataclasses.replace(cfg.train, seed=seed),
            )
            s = run(f"{method}_seed{seed}", c)
            row["runs"].append(s["run"])
            row["test_acc"].append(s["test_acc"])
            row["step_time_s"].append(s["step_time_s"])
            for m in mods:
                row[f"test_acc/{m}"].append(s[f"test_acc/{m}"])
                if f"conflict_rate/{m}" in s:
                    row[f"conflict_rate/{m}"].append(s[f"conflict_rate/{m}"])
        methods[method] = row
    alone: dict[str, list[float]] = {}
    for mod in cfg.compare.alone:
        alone[mod] = []
        for seed in cfg.compare.seeds:
            c = dataclasses.replace(
                cfg,
                data=dataclasses.replace(cfg.data, modalities=(mod,)),
                pareto=dataclasses.replace(cfg.pareto, method="multimodal"),
                train=dataclasses.replace(cfg.train, seed=seed),
            )
            alone[mod].append(run(f"alone_{mod}_seed{seed}", c)["test_acc"])

    base = statistics.median(methods["uniform"]["step_time_s"]) if "uniform" in methods else None
    for row in methods.values():
        med = statistics.median(row["step_time_s"])
        row["step_time_ratio"] = med / base if base else None

    curves = {
        method: {
            m: _mean_curve([_curve(Path(r), m) for r in methods[method]["runs"]]) for m in mods
        }
        for method in methods
        if method in ("uniform", "mmpareto")
    }
    cos_plot = None
    if any(pts for per in curves.values() for pts in per.values()):
        cos_plot = str(pareto_cos_plot(curves, out / "cos.png"))

    mean = statistics.fmean
    checks: dict[str, dict[str, Any]] = {}
    if "mmpareto" in methods and "uniform" in methods:
        a, b = mean(methods["mmpareto"]["test_acc"]), mean(methods["uniform"]["test_acc"])
        checks["mmpareto multimodal acc > uniform"] = {
            "pass": a > b,
            "detail": f"{100 * a:.2f} vs {100 * b:.2f}",
        }
        ratio = methods["mmpareto"]["step_time_ratio"]
        if ratio is not None:
            checks["mmpareto step time / uniform <= 1.5"] = {
                "pass": ratio <= 1.5,
                "detail": f"{ratio:.2f} (training loop, diagnostics included)",
            }
    if "mmpareto" in methods:
        for mod in alone:
            a, b = mean(methods["mmpareto"][f"test_acc/{mod}"]), mean(alone[mod])
            checks[f"mmpareto {mod} head >= {mod} alone"] = {
                "pass": a >= b,
                "detail": f"{100 * a:.2f} vs {100 * b:.2f}",
            }
    data_desc = (
        f"{cfg.data.dataset} (seed {cfg.data.seed}, test fraction {cfg.data.test_fraction}, "
        f"colour variance {cfg.data.colour_variance})"
    )
    result = {
        "data": data_desc,
        "seeds": list(cfg.compare.seeds),
        "modalities": mods,
        "methods": methods,
        "alone": alone,
        "checks": checks,
        "cos_plot": cos_plot,
    }
    atomic_write_text(out / "report.md", pareto_markdown(result))
    atomic_write_text(out / "summary.json", json.dumps(result, indent=1) + "\n")
    final = {
        "out": str(out),
        "report": str(out / "report.md"),
        "cos_plot": cos_plot,
        **{f"{method}/test_acc": mean(row["test_acc"]) for method, row in methods.items()},
        **{
            f"{method}/test_acc/{m}": mean(row[f"test_acc/{m}"])
            for method, row in methods.items()
            for m in mods
        },
        **{f"alone/{m}": mean(v) for m, v in alone.items()},
        **{f"{method}/step_time_ratio": row["step_time_ratio"] for method, row in methods.items()},
        "checks": {k: v["pass"] for k, v in checks.items()},
    }
    print(json.dumps(final))
    return 0
