"""``curatorch plan``: the offline filter fraction and JEST's filter ratio per budget."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from curatorch.cli.common import add_set_option, config_path, output_dir

__all__ = ["register"]

_DEFAULT_RATIOS = (0.0, 0.5, 0.8)
_FILES = ("plan.json", "plan.md", "plan.png")


def register(sub: Any) -> None:
    """Add the ``plan`` command to ``sub`` (argparse subparsers)."""
    p = sub.add_parser(
        "plan",
        help="bucket a pool by a score, get the scaling law per bucket and JEST ratio "
        "(short runs or a parameter file), and recommend the offline fraction and JEST's "
        "filter ratio per budget; writes plan.json, plan.md, plan.png into --out",
    )
    p.add_argument("scores", type=Path, help="score table written by `curatorch score`")
    p.add_argument("--by", required=True, help="score to bucket by (cosine, ref_loss, ...)")
    p.add_argument("--buckets", type=int, default=4, help="k quantile buckets (default 4)")
    p.add_argument("--budgets", required=True, help="examples trained, e.g. 5K,20K,80K")
    p.add_argument("--out", type=Path, required=True, help="folder for the plan")
    p.add_argument(
        "--params", default=None, help="parameter file (JSON lines) or a shipped name (published)"
    )
    p.add_argument("--key", action="append", default=[], help="record id(s) of --params")
    p.add_argument(
        "--pool-size",
        default=None,
        help="with --params: samples in the pool the table stands for (default its rows)",
    )
    p.add_argument("--config", default=None, help="training config of the short runs")
    p.add_argument(
        "--run-samples", default=None, help="short runs: evaluate at these counts (5K,10K,20K)"
    )
    p.add_argument(
        "--ratios",
        type=float,
        nargs="+",
        default=None,
        help="short runs: JEST filter ratios, 0 = IID (default 0 0.5 0.8)",
    )
    p.add_argument(
        "--reference", default=None, help="JEST's reference (default: the table's reference)"
    )
    p.add_argument(
        "--metric",
        choices=("mean_score", "zeroshot_acc"),
        default="mean_score",
        help="short runs: error = 1 - this metric",
    )
    p.add_argument("--method", choices=("utility", "data"), default="utility")
    p.add_argument(
        "--validate-seeds",
        type=int,
        nargs="+",
        default=None,
        help="train every candidate x ratio at these seeds and compare (needs --config)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="short runs and validation: train this many runs at a time, each in its own "
        "process (default 1; the runs are the same either way)",
    )
    add_set_option(p)
    p.set_defaults(handler=_plan)


def _check_args(args: argparse.Namespace) -> None:
    """Refuse option combinations that do not go together, before reading anything."""
    runs = args.run_samples is not None
    if args.params is not None and runs:
        raise ValueError("give --params FILE or short runs (--run-samples), not both")
    if args.params is None and not runs:
        raise ValueError("plan needs --params FILE or --config CONFIG --run-samples COUNTS")
    if args.params is None:
        for option in ("key", "pool_size"):
            if getattr(args, option):
                raise ValueError(f"--{option.replace('_', '-')} applies with --params")
    elif args.ratios is not None:
        raise ValueError("--ratios applies to short runs; --params records name their ratio")
    if (runs or args.validate_seeds) and args.config is None:
        raise ValueError("short runs and --validate-seeds need --config CONFIG")
    if args.overrides and args.config is None:
        raise ValueError("--set applies with --config")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.pool_size is not None and args.validate_seeds:
        raise ValueError(
            "--pool-size does not go with --validate-seeds (they train the table's pool)"
        )
    if args.buckets < 1:
        raise ValueError(f"--buckets must be >= 1, got {args.buckets}")


def _file_params(args: argparse.Namespace, names: list[str]) -> dict[float, Any]:
    from curatorch.curation.plan import params_by_ratio
    from curatorch.scaling import find_params, read_params, resolve_scaling_file

    where = f"--params {args.params}"
    path = resolve_scaling_file(args.params, kind="params", option="--params")
    try:
        records = [find_params(path, k) for k in args.key] if args.key else read_params(path)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return params_by_ratio(records, names=names, where=where)


def _setup(args: argparse.Namespace) -> dict[str, Any]:
    """Every input read and checked (exit 2 before any work or any file written)."""
    from curatorch.curation import load_score_table
    from curatorch.curation.plan import bucket_table, ratio_list
    from curatorch.scaling import parse_count, parse_counts

    _check_args(args)
    output_dir(args.out, create=False)  # made once every input is checked
    budgets = parse_counts(args.budgets, name="--budgets")
    table = load_score_table(args.scores)
    state: dict[str, Any] = {"table": table, "budgets": budgets, "cfg": None}
    if args.config is not None:
        from curatorch.train import load_config

        state["cfg"] = load_config(config_path(args.config), args.overrides)
    multiple = state["cfg"].train.batch_size if args.run_samples else 1
    try:
        buckets = bucket_table(table, by=args.by, buckets=args.buckets, multiple=multiple)
    except ValueError as exc:
        raise ValueError(f"--buckets / --by: {exc}") from None
    state["buckets"] = buckets
    state["bucket_size"] = float(buckets.size)
    if args.pool_size is not None:
        state["bucket_size"] = parse_count(args.pool_size, name="--pool-size") / args.buckets
    if args.params is not None:
        state["params"] = _file_params(args, list(buckets.names))
        state["ratios"] = tuple(state["params"])
    else:
        state["samples"] = [n for _, n in parse_counts(args.run_samples, name="--run-samples")]
        state["ratios"] = ratio_list(args.ratios if args.ratios is not None else _DEFAULT_RATIOS)
    if state["cfg"] is not None:
        _check_training(args, state)
    return state


def _check_training(args: argparse.Namespace, state: dict[str, Any]) -> None:
    """The config's pool is the table's, and JEST has a reference; also the run config
    of the short runs (its evaluation cadence) is checked here."""
    from curatorch.data import build_world
    from curatorch.experiments.plan_runs import (
        check_run_samples,
        check_table_pool,
        short_run_config,
    )

    cfg, table = state["cfg"], state["table"]
    world = build_world(cfg.data)
    pool_name = table.meta.get("source", {}).get("pool", cfg.data.pool)
    pool = world.pool(pool_name) if pool_name in ("raw", "curated") else world.raw
    check_table_pool(table, pool, pool_name=pool_name)
    reference = args.reference or (table.meta.get("reference") or {}).get("path")
    if any(f > 0 for f in state["ratios"]) and (not reference or not Path(reference).exists()):
        raise ValueError(
            f"--reference {reference!r} does not exist: JEST's runs need a reference "
            f"(a checkpoint or an embedding cache)"
        )
    if "samples" in state:
        check_run_samples(cfg, state["samples"])
    budgets = [n for _, n in state["budgets"]]
    if args.validate_seeds:
        short_run_config(cfg, samples=budgets, filter_ratio=0.0, reference="")
    state.update(world=world, pool=pool, reference=str(reference or ""))


def _plan(args: argparse.Namespace) -> int:
    from curatorch.curation.plan import plan_joint

    t0 = time.perf_counter()
    state = _setup(args)
    args.out.mkdir(parents=True, exist_ok=True)
    measured: dict[float, dict[str, tuple[list[float], list[float]]]] = {}
    if args.params is None:
        state["params"] = _short_runs(args, state)
        for f, by_bucket in state["points"].items():
            measured[f] = {
                f"{n} alone": ([x for x, _ in pts], [e for _, e in pts])
                for n, pts in by_bucket.items()
            }
    buckets = state["buckets"]
    joint = plan_joint(
        state["params"],
        bucket_size=state["bucket_size"],
        budgets=[n for _, n in state["budgets"]],
        budget_labels=[label for label, _ in state["budgets"]],
        pools=list(buckets.names),
        method=args.method,
    )
    validation = None
    if args.validate_seeds:
        validation = _validate(args, state, joint, measured)
    _write(args, state, joint, measured, validation, wall=time.perf_counter() - t0)
    return 0


def _short_runs(args: argparse.Namespace, state: dict[str, Any]) -> dict[float, Any]:
    from curatorch.experiments.plan_runs import fit_short_runs, train_buckets

    points, seconds = train_buckets(
        state["cfg"],
        args.out,
        world=state["world"],
        pool=state["pool"],
        buckets=state["buckets"],
        ratios=state["ratios"],
        samples=state["samples"],
        reference=state["reference"],
        metric=args.metric,
        workers=args.workers,
    )
    fits = fit_short_runs(points, args.out, bucket_size=state["buckets"].size, method=args.method)
    state.update(points=points, seconds=seconds, fits=fits)
    return {f: fit.params for f, fit in fits.items()}


def _validate(
    args: argparse.Namespace, state: dict[str, Any], joint: Any, measured: dict
) -> dict[str, Any]:
    from curatorch.experiments.plan_runs import validate_plan

    result = validate_plan(
        state["cfg"],
        args.out,
        joint=joint,
        world=state["world"],
        pool=state["pool"],
        buckets=state["buckets"],
        seeds=args.validate_seeds,
        reference=state["reference"],
        metric=args.metric,
        workers=args.workers,
    )
    budgets = [float(b) for b in joint.budgets]
    for f, by_label in result["measured"].items():
        for label, per_seed in by_label.items():
            mean = [sum(s[j] for s in per_seed) / len(per_seed) for j in range(len(budgets))]
            measured.setdefault(f, {})[f"{label} trained"] = (budgets, mean)
    return result


def _flops_ratios(out: Path, state: dict[str, Any]) -> dict[str, float]:
    """Per ratio, the bucket runs' mean compute per example trained relative to IID."""
    from curatorch.experiments.plan_runs import flops_ratio

    ratios: dict[str, list[float]] = {}
    for run in state["seconds"]:
        ratios.setdefault(run.split("/")[0], []).append(flops_ratio(out / "runs" / run))
    return {k: round(sum(v) / len(v), 4) for k, v in ratios.items()}


def _write(
    args: argparse.Namespace,
    state: dict[str, Any],
    joint: Any,
    measured: dict,
    validation: dict[str, Any] | None,
    *,
    wall: float,
) -> None:
    from curatorch.curation.plan import plan_markdown, plan_record, plot_plan, validation_record
    from curatorch.experiments.plan_runs import fit_warnings
    from curatorch.fileio import atomic_write_text
    from curatorch.train import config_to_dict

    source: dict[str, Any] = {
        "scores": str(args.scores),
        "metric": args.metric,
        "method": args.method,
        "params_source": args.params or "short runs",
    }
    if "samples" in state:
        source["run_samples"] = state["samples"]
        source["config"] = config_to_dict(state["cfg"])
        source["run_points"] = {str(f): v for f, v in state["points"].items()}
        source["run_seconds"] = {k: round(v, 1) for k, v in state["seconds"].items()}
        source["flops_per_example_vs_iid"] = _flops_ratios(args.out, state)
        source["fit_warnings"] = [w for fit in state["fits"].values() for w in fit_warnings(fit)]
    record = plan_record(joint, state["buckets"], source=source)
    if validation is not None:
        record["validation"] = validation_record(
            joint, validation, buckets=state["buckets"], seeds=args.validate_seeds
        )
    record["wall_s"] = round(wall, 1)
    plot_plan(
        joint,
        args.out / "plan.png",
        measured=measured,
        buckets=state["buckets"],
        bucket_size=state["bucket_size"],
        method=args.method,
    )
    text = plan_markdown(record)
    atomic_write_text(args.out / "plan.md", text + "\n")
    atomic_write_text(args.out / "plan.json", json.dumps(record, indent=1) + "\n")
    print(text)
    print(json.dumps({"out": str(args.out), "files": list(_FILES), "wall_s": record["wall_s"]}))
