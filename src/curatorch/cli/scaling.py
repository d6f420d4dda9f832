"""``curatorch scaling ...``: fit the data-filtering law, predict filters, plot, validate.

Every action prints a human-readable table and, as its last stdout line, one JSON record.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from curatorch.cli.common import (
    COMPARISON_EPILOG,
    add_set_option,
    config_path,
    output_dir,
    output_file,
)

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``scaling`` command group to ``sub`` (argparse subparsers)."""
    p_sc = sub.add_parser("scaling", help="data-filtering scaling laws (fit, predict, plot)")
    sc = p_sc.add_subparsers(dest="scaling_command", required=True, metavar="ACTION")

    p = sc.add_parser(
        "data", help="list the shipped parameter files and run tables (names for PARAMS / RUNS)"
    )
    p.add_argument("--json", action="store_true", help="print only the JSON record")
    p.set_defaults(handler=_data)

    p = sc.add_parser("fit", help="fit b and tau per pool (shared a, d) to measured runs")
    p.add_argument(
        "runs",
        help="CSV: pool,samples_seen,accuracy|error[,pool_size], or a shipped name (sample)",
    )
    p.add_argument("--out", type=Path, required=True, help="parameter file to write (JSONL)")
    p.add_argument(
        "--pool-size",
        default=None,
        help="samples per pool (e.g. 12.8M) when the CSV has no pool_size column",
    )
    p.add_argument("--method", choices=("utility", "data"), default="utility")
    p.add_argument("--a", type=float, default=None, help="fix the shared a (default: fit)")
    p.add_argument("--d", type=float, default=None, help="fix the shared d (default: fit)")
    p.add_argument("--id", default="fit", help="id of the written record (default 'fit')")
    p.add_argument("--no-refine", action="store_true", help="grid search only")
    p.set_defaults(handler=_fit)

    _add_plan_parsers(sc)

    p = sc.add_parser(
        "experiment",
        help="validate the law on the built-in world (small scale)",
        epilog=COMPARISON_EPILOG,
    )
    p.add_argument(
        "config",
        type=Path,
        help="TOML config with a [scaling] table, or a shipped name (scaling_experiment)",
    )
    p.add_argument("--out", type=Path, required=True, help="experiment folder")
    add_set_option(p)
    p.set_defaults(handler=_experiment)


# ---------------------------------------------------------------------------------------------


def _add_plan_parsers(sc: Any) -> None:
    """Add ``predict`` and ``plot`` (a parameter file or shipped name, a record, a bucket
    size) to the ``scaling`` subparsers ``sc``."""
    for name, helptext in (
        ("predict", "predicted accuracy of each top-k filter at each budget"),
        ("plot", "PNG of predicted error against samples seen, with the best-filter frontier"),
    ):
        p = sc.add_parser(name, help=helptext)
        p.add_argument(
            "params",
            help="parameter file (JSONL, published schema) or a shipped name (published)",
        )
        p.add_argument("--key", required=True, help="id of the record to use")
        p.add_argument("--bucket-size", required=True, help="samples per bucket, e.g. 12.8M")
        p.add_argument(
            "--method",
            choices=("utility", "data"),
            default=None,
            help="combination method (default: the record's, else utility)",
        )
        p.add_argument(
            "--d",
            type=float,
            default=None,
            help="irreducible error (default: the record's d_value)",
        )
        p.add_argument(
            "--pools",
            default=None,
            help="comma-separated candidate buckets (default: the disjoint ones)",
        )
        p.add_argument(
            "--bucket-percent",
            type=float,
            default=None,
            help="percent of the full pool per bucket, for labels",
        )
        if name == "predict":
            p.add_argument("--budgets", required=True, help="comma-separated, e.g. 32M,64M")
            p.add_argument("--json", action="store_true", help="print only the JSON record")
            p.set_defaults(handler=_predict)
        else:
            p.add_argument("--out", type=Path, required=True, help="PNG file to write")
            p.add_argument("--budgets", default=None, help="budgets to mark, e.g. 32M,640M")
            p.add_argument("--min", dest="x_min", default=None, help="smallest samples seen")
            p.add_argument("--max", dest="x_max", default=None, help="largest samples seen")
            p.set_defaults(handler=_plot)


def _plan_args(args: argparse.Namespace, budgets: list[tuple[str, float]]) -> Any:
    from curatorch.scaling import find_params, parse_count, plan_filters, resolve_scaling_file

    params = find_params(resolve_scaling_file(args.params, kind="params"), args.key)
    bucket = parse_count(args.bucket_size, name="--bucket-size")
    method = args.method or params.method or "utility"
    d = args.d if args.d is not None else params.d
    if d is None:
        raise ValueError(
            f"--d: record {params.id!r} in {args.params} has no d_value; pass --d "
            f"(the reference implementation uses 0.1)"
        )
    pools = [s.strip() for s in args.pools.split(",")] if args.pools else None
    plan = plan_filters(
        params,
        bucket_size=bucket,
        budgets=[v for _, v in budgets],
        budget_labels=[lbl for lbl, _ in budgets],
        method=method,
        pools=pools,
        d=d,
        bucket_percent=args.bucket_percent,
    )
    return params, plan, method, d


def _predict(args: argparse.Namespace) -> int:
    from curatorch.scaling import parse_counts

    budgets = parse_counts(args.budgets, name="--budgets")
    params, plan, method, d = _plan_args(args, budgets)
    acc = plan.accuracy_percent()
    record = {"budgets": acc, "best": plan.best_labels()}
    if not args.json:
        width = max(8, *(len(lbl) + 2 for lbl in plan.labels))
        print(
            f"{params.id}: method={method} d={d} bucket size {args.bucket_size}; "
            f"predicted accuracy (%), * = best filter"
        )
        print("budget".ljust(10) + "".join(lbl.rjust(width) for lbl in plan.labels))
        for j, bl in enumerate(plan.budget_labels):
            cells = []
            for c, lbl in enumerate(plan.labels):
                mark = "*" if int(plan.best[j]) == c else " "
                cells.append(f"{acc[bl][lbl]:.2f}{mark}".rjust(width))
            print(bl.ljust(10) + "".join(cells))
        for lbl, pools in zip(plan.labels, plan.pools, strict=False):
            print(f"  {lbl}: {', '.join(pools)}")
    print(json.dumps(record))
    return 0


def _plot(args: argparse.Namespace) -> int:
    import numpy as np

    from curatorch.scaling import parse_count, parse_counts, plot_filters, resolve_scaling_file

    resolve_scaling_file(args.params, kind="params")  # a bad name is refused before --out
    output_file(args.out)
    marks = parse_counts(args.budgets, name="--budgets") if args.budgets else []
    bucket = parse_count(args.bucket_size, name="--bucket-size")
    lo = parse_count(args.x_min, name="--min") if args.x_min else bucket
    hi = (
        parse_count(args.x_max, name="--max")
        if args.x_max
        else max([bucket * 100, *(2 * v for _, v in marks)])
    )
    if not hi > lo:
        raise ValueError(f"--max must be larger than --min, got {lo:g} and {hi:g}")
    grid = np.geomspace(lo, hi, 400)
    params, plan, method, d = _plan_args(args, [(f"{v:g}", float(v)) for v in grid])
    plot_filters(
        plan, args.out, title=f"{params.id} ({method}, d={d:g})", marks=[v for _, v in marks]
    )
    # where the frontier switches filter
    switches = []
    for j in range(1, grid.size):
        if plan.best[j] != plan.best[j - 1]:
            switches.append({"samples_seen": float(grid[j]), "to": plan.labels[int(plan.best[j])]})
    print(f"wrote {args.out}", file=sys.stderr)
    print(
        json.dumps(
            {
                "plot": str(args.out),
                "first_best": plan.labels[int(plan.best[0])],
                "switches": switches,
            }
        )
    )
    return 0


def _data(args: argparse.Namespace) -> int:
    """``scaling data``: one block per shipped file (name, kind, path, what it holds and
    where it came from), then the JSON record keyed by kind and name."""
    from curatorch.scaling import KINDS, shipped_files

    files = shipped_files()
    record: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
    for f in files:
        what = "records" if f.kind == "params" else "points"
        record[f.kind][f.name] = {
            "path": str(f.path),
            "contents": list(f.contents),
            what: f.rows,
            "source": list(f.source),
        }
        if args.json:
            continue
        label = "ids" if f.kind == "params" else "pools"
        print(f"{f.kind} {f.name}: {f.path}")
        print(f"  {f.rows} {what}; {label}: {', '.join(f.contents)}")
        for line in f.source:
            print(f"  | {line}")
    print(json.dumps(record))
    return 0


def _fit(args: argparse.Namespace) -> int:
    import time

    from curatorch.scaling import (
        fit_pools,
        parse_count,
        read_runs,
        resolve_scaling_file,
        write_params,
    )

    path = resolve_scaling_file(args.runs, kind="runs")
    output_file(args.out)
    runs = read_runs(path)
    if runs.pool_size is not None:
        if args.pool_size is not None:
            raise ValueError(f"--pool-size: {path} has a pool_size column; drop the option")
        size: Any = runs.pool_size
    elif args.pool_size is not None:
        size = parse_count(args.pool_size, name="--pool-size")
    else:
        raise ValueError(f"--pool-size is required: {path} has no pool_size column")
    t0 = time.perf_counter()
    res = fit_pools(
        names=runs.names,
        pool=runs.pool,
        samples_seen=runs.samples_seen,
        error=runs.error,
        pool_size=size,
        method=args.method,
        a=args.a,
        d=args.d,
        refine=not args.no_refine,
        fit_id=args.id,
    )
    seconds = time.perf_counter() - t0
    write_params(args.out, [res.params])
    p = res.params
    print(
        f"fit {p.id} ({args.method}): a={p.a[0]:.6g} d={p.d:.6g}, {len(runs)} points, "
        f"{seconds:.2f} s, SSE {res.sse:.3g} (grid {res.grid_sse:.3g})"
    )
    print(f"{'pool':<28}{'b':>10}{'tau':>10}{'points':>8}{'SSE':>12}")
    for j, name in enumerate(p.names):
        npts = int((runs.pool == j).sum())
        print(f"{name:<28}{p.b[j]:>10.4f}{p.tau[j]:>10.3f}{npts:>8}{res.sse_per_pool[j]:>12.3g}")
    print(
        json.dumps(
            {
                "out": str(args.out),
                "id": p.id,
                "method": args.method,
                "a": p.a[0],
                "d": p.d,
                "b": dict(zip(p.names, p.b, strict=False)),
                "tau": dict(zip(p.names, p.tau, strict=False)),
                "sse": res.sse,
                "sse_per_pool": dict(zip(p.names, res.sse_per_pool, strict=False)),
                "max_abs_residual": float(abs(res.residuals).max()),
                "seconds": round(seconds, 3),
            }
        )
    )
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from curatorch.experiments import load_scaling_config, run_scaling_experiment
    from curatorch.experiments.scaling import plot_scaling_experiment

    cfg = load_scaling_config(config_path(args.config), args.overrides)
    output_dir(args.out)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    s = run_scaling_experiment(cfg, args.out, log=log)
    plot = Path(args.out) / "comparison.png"
    plot_scaling_experiment(s, plot, passes=cfg.scaling.passes)
    other = "data" if s["fit"]["method"] == "utility" else "utility"
    _print_experiment_tables(s, other)
    print(json.dumps(_experiment_record(s, args.out, plot, other)))
    return 0


def _print_experiment_tables(s: dict[str, Any], other: str) -> None:
    """The fit per bucket, then predicted against measured error of every union point
    (and the ``other`` method's prediction)."""
    fit, size = s["fit"], s["bucket_size"]
    print(f"bucket size {size}; fit a={fit['a']:.4g} d={fit['d']:.4g} SSE {fit['sse']:.3g}")
    print(f"{'pool':<14}{'b':>9}{'tau':>9}{'clean':>8}")
    for j, name in enumerate(s["buckets"]):
        print(f"{name:<14}{fit['b'][j]:>9.4f}{fit['tau'][j]:>9.2f}{s['clean_fraction'][j]:>8.3f}")
    print(
        f"{'union':<8}{'samples':>9}{'predicted':>11}{'measured':>10}{'diff':>9}"
        f"{other + ' pred':>14}"
    )
    for label, u in s["unions"].items():
        for n, pe, me, po in zip(
            u["samples_seen"],
            u["predicted_error"],
            u["measured_error"],
            u[f"{other}_predicted_error"],
            strict=True,
        ):
            print(f"{label:<8}{n:>9}{pe:>11.4f}{me:>10.4f}{pe - me:>+9.4f}{po:>14.4f}")


def _experiment_record(s: dict[str, Any], out: Path, plot: Path, other: str) -> dict[str, Any]:
    """The JSON record ``scaling experiment`` prints last, from the experiment summary."""
    fit, unions = s["fit"], s["unions"]
    return {
        "out": str(out),
        "plot": str(plot),
        "bucket_size": s["bucket_size"],
        "max_abs_diff": s["max_abs_diff"],
        "within_tolerance": s["within_tolerance"],
        "tolerance": s["tolerance"],
        "max_abs_diff_per_union": {k: u["max_abs_diff"] for k, u in unions.items()},
        "final_diff_per_union": {k: u["final_diff"] for k, u in unions.items()},
        f"{other}_max_abs_diff_per_union": {
            k: u[f"{other}_max_abs_diff"] for k, u in unions.items()
        },
        "fit": {k: fit[k] for k in ("a", "d", "b", "tau", "sse")},
        "wall_s": s["wall_s"]["total"],
    }
