"""Short runs for the curation planner: the law's parameters per bucket and JEST ratio,
and the training of the planner's candidates to check it (issue 15, items 3 and 4).

The machinery is the scaling experiment's (:func:`curatorch.experiments.scaling.train_pool`
on sub-pools of the built-in world, a constant learning rate after warmup so that an
intermediate evaluation stands for a shorter run, :func:`curatorch.scaling.fit_pools`
with ``a`` and ``d`` shared). A run at ``f = 0`` is IID training; at ``f > 0`` it is
JEST (``strategy.name = "jest"``, ``strategy.filter_ratio = f``, learnability against
the given reference).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curatorch.curation.plan import FILTER_RATIO_FIELD, JointPlan, ScoreBuckets
from curatorch.curation.score import pool_digest
from curatorch.curation.table import ScoreTable
from curatorch.data import PairDataset, World
from curatorch.experiments.scaling import fit_small_runs, train_pool
from curatorch.scaling import FitResult, Runs, write_params, write_runs
from curatorch.train import ExperimentConfig

__all__ = [
    "MAX_EVALS",
    "ShortRuns",
    "check_run_samples",
    "check_table_pool",
    "fit_short_runs",
    "fit_warnings",
    "flops_ratio",
    "short_run_config",
    "train_buckets",
    "train_pool_runs",
    "validate_plan",
]

MAX_EVALS = 64
"""The most evaluations one short run may make (``--run-samples`` with a tiny common step)."""

_Points = list[tuple[int, float]]  # (examples trained, error) of one run


def check_table_pool(table: ScoreTable, pool: PairDataset, *, pool_name: str) -> None:
    """The score table must score exactly ``pool`` (the built-in pool a run trains on),
    row for row: ``ValueError`` naming the table and the difference otherwise."""
    source = table.meta.get("source", {})
    if not table.is_pool or source.get("kind") != "pool":
        raise ValueError(
            f"score table {table.path} scores shards: short runs train on a built-in pool; "
            f"score the pool (`curatorch score MODEL --config CONFIG`) or give --params"
        )
    if source.get("pool") != pool_name or source.get("sha256") != pool_digest(pool):
        raise ValueError(
            f"score table {table.path} scores another pool (pool {source.get('pool')!r}, "
            f"{source.get('size')} rows) than the config's {pool_name!r} pool ({len(pool)} rows); "
            f"score this config's pool or pass the config it was scored with"
        )
    if not np.array_equal(table.column("id").astype(np.int64), pool.ids.numpy()):
        raise ValueError(f"score table {table.path}: its rows are not in the pool's order")


def short_run_config(
    cfg: ExperimentConfig,
    *,
    samples: Sequence[float],
    filter_ratio: float,
    reference: str,
    seed: int | None = None,
) -> ExperimentConfig:
    """The config of one short run: ``cfg`` with a constant learning rate after warmup,
    enough steps for the largest of ``samples`` (examples trained), an evaluation every
    ``gcd`` of their step counts (no evaluation at step 0), one checkpoint at the end, and
    the strategy of ``filter_ratio`` (0: IID; else JEST against ``reference``)."""
    batch = cfg.train.batch_size
    steps = [max(1, math.ceil(float(n) / batch)) for n in samples]
    every = math.gcd(*steps)
    if max(steps) // every > MAX_EVALS:
        raise ValueError(
            f"--run-samples {[int(n) for n in samples]}: the runs would evaluate every "
            f"{every} steps, {max(steps) // every} times (at most {MAX_EVALS}); pick counts "
            f"that are multiples of a larger number of batches of {batch}"
        )
    st = cfg.strategy
    strategy = (
        dataclasses.replace(st, name="iid")
        if filter_ratio == 0
        else dataclasses.replace(st, name="jest", filter_ratio=filter_ratio, reference=reference)
    )
    return dataclasses.replace(
        cfg,
        optim=dataclasses.replace(cfg.optim, min_lr_ratio=1.0),
        strategy=strategy,
        train=dataclasses.replace(
            cfg.train,
            steps=max(steps),
            eval_every=every,
            eval_at_start=False,
            checkpoint_every=max(steps),
            seed=cfg.train.seed if seed is None else seed,
        ),
    )


def flops_ratio(run_dir: Path) -> float:
    """``flops_total / flops_train`` at a run's last evaluation: its compute per example
    trained relative to IID's (JEST adds the learner's scoring passes on ``B``; a cached
    reference's are counted once, when embedded)."""
    last: dict[str, Any] = {}
    with open(run_dir / "metrics.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                last = json.loads(line)
    train = float(last.get("flops_train") or 0)
    return float(last.get("flops_total") or 0) / train if train > 0 else float("nan")


def check_run_samples(cfg: ExperimentConfig, samples: Sequence[float]) -> int:
    """Check that short runs at ``samples`` make at least 2 evaluations after the warmup
    (``ValueError`` naming ``--run-samples`` otherwise); returns the warmup in examples."""
    run = short_run_config(cfg, samples=samples, filter_ratio=0.0, reference="")
    warm = cfg.optim.warmup_steps * cfg.train.batch_size
    every = run.train.eval_every
    evals = [k * every * cfg.train.batch_size for k in range(1, run.train.steps // every + 1)]
    if sum(n > warm for n in evals) < 2:
        raise ValueError(
            f"--run-samples {[int(n) for n in samples]}: the runs evaluate at {evals} "
            f"examples, fewer than 2 of them after the warmup ({cfg.optim.warmup_steps} steps "
            f"= {warm} examples), and the fit needs 2 per bucket; give larger counts"
        )
    return warm


_A_GRID_EDGES = (1e-3, 1e6)  # fit_small_runs' a grid


def fit_warnings(fit: FitResult) -> list[str]:
    """What says a fit is not determined by its runs: ``a`` at an edge of the grid, or
    the buckets' ``b`` within 5% of each other (their order, which ranks the candidates,
    is then noise)."""
    p, out = fit.params, []
    a = p.a[0]
    if any(abs(math.log10(a / edge)) < 1e-3 for edge in _A_GRID_EDGES):
        out.append(f"{p.id}: a = {a:.4g} is at the edge of the grid: the runs do not fix it")
    spread = (max(p.b) - min(p.b)) / abs(sum(p.b) / len(p.b))
    if len(p.b) > 1 and spread < 0.05:
        out.append(
            f"{p.id}: the buckets' b are within {spread:.1%} of each other "
            f"({[round(b, 3) for b in p.b]}): their order, which ranks the candidates, is "
            f"not determined by these runs"
        )
    return out


def _ratio_dir(f: float) -> str:
    return "iid" if f == 0 else f"jest_f{f:g}"


@dataclass(frozen=True)
class ShortRuns:
    """The bucket runs of every ratio and the law fitted to each.

    Attributes:
        points: ``{f: {bucket: [(examples trained, error)]}}``.
        fits: ``{f: FitResult}``; its ``params.extra`` holds :data:`FILTER_RATIO_FIELD`.
        seconds: ``{run folder: wall seconds}``.
    """

    points: dict[float, dict[str, _Points]]
    fits: dict[float, FitResult]
    seconds: dict[str, float]


_PoolJob = tuple[ExperimentConfig, Path, np.ndarray]  # config, run folder, positions in the pool


def _pool_name(world: World, pool: PairDataset) -> str:
    for name in ("raw", "curated"):
        if pool is world.pool(name):
            return name
    raise ValueError("workers > 1 train on the built-in world's raw or curated pool only")


def _train_pool_in_worker(
    cfg: ExperimentConfig, folder: Path, pool_name: str, digest: str, index: np.ndarray, metric: str
) -> tuple[_Points, float, list[str]]:
    """One :func:`train_pool` run in a worker process: the world is built from ``cfg.data``
    once per process (:func:`~curatorch.experiments.jest_compare.worker_world`) and must
    hold the parent's pool (``digest``), else ``RuntimeError``."""
    from curatorch.experiments.jest_compare import worker_world

    world = worker_world(cfg.data)
    have = pool_digest(world.pool(pool_name))
    if have != digest:
        raise RuntimeError(
            f"a worker built another {pool_name!r} pool than this process from the same "
            f"data config (digest {have[:12]} != {digest[:12]})"
        )
    lines: list[str] = []
    sub = world.pool(pool_name).subset(torch.from_numpy(index))
    points, wall = train_pool(cfg, folder, world=world, pool=sub, log=lines.append, metric=metric)
    return points, wall, lines


def train_pool_runs(
    jobs: Sequence[_PoolJob],
    *,
    world: World,
    pool: PairDataset,
    metric: str,
    workers: int = 1,
    log: Callable[[str], None] = print,
) -> list[tuple[_Points, float]]:
    """Run each job ``(config, folder, positions in pool)`` as :func:`train_pool` does;
    returns ``[(points, seconds)]`` in the jobs' order.

    With ``workers > 1`` the jobs run in that many spawned processes (``pool`` must be
    ``world``'s raw or curated pool, rebuilt in each process from the config and checked
    against this one by digest). Each run is exactly the run it is in this process (its
    own seed, threads and folder); only the order of the log lines changes. A failed run
    cancels the runs not yet started and raises its error.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(jobs) <= 1:
        return [
            train_pool(
                cfg, f, world=world, pool=pool.subset(torch.from_numpy(i)), log=log, metric=metric
            )
            for cfg, f, i in jobs
        ]
    import concurrent.futures as cf
    import multiprocessing

    name, digest = _pool_name(world, pool), pool_digest(pool)
    ctx = multiprocessing.get_context("spawn")
    results: list[tuple[_Points, float] | None] = [None] * len(jobs)
    with cf.ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as ex:
        futures = {
            ex.submit(_train_pool_in_worker, cfg, folder, name, digest, idx, metric): j
            for j, (cfg, folder, idx) in enumerate(jobs)
        }
        try:
            for fut in cf.as_completed(futures):
                points, wall, lines = fut.result()
                for line in lines:
                    log(line)
                results[futures[fut]] = (points, wall)
        except BaseException:
            ex.shutdown(wait=True, cancel_futures=True)
            raise
    return [r for r in results if r is not None]


def train_buckets(
    cfg: ExperimentConfig,
    out: Path,
    *,
    world: World,
    pool: PairDataset,
    buckets: ScoreBuckets,
    ratios: Sequence[float],
    samples: Sequence[float],
    reference: str,
    metric: str,
    workers: int = 1,
    log: Callable[[str], None] = print,
) -> tuple[dict[float, dict[str, _Points]], dict[str, float]]:
    """Train every bucket alone at every ratio into ``out/runs/{iid,jest_f0.5}/{bucket}``
    (``workers`` runs at a time, see :func:`train_pool_runs`).

    Returns ``({f: {bucket: points}}, {run: seconds})``; evaluations within the warmup
    (``optim.warmup_steps`` batches: the learning rate still rising, not the run the law
    describes) are left out, and a run left with fewer than 2 points is a ``ValueError``.
    """
    warm = check_run_samples(cfg, samples)
    keys: list[tuple[float, str]] = []
    jobs: list[_PoolJob] = []
    for f in ratios:
        run_cfg = short_run_config(cfg, samples=samples, filter_ratio=f, reference=reference)
        for name, index in zip(buckets.names, buckets.index, strict=True):
            keys.append((f, name))
            jobs.append((run_cfg, out / "runs" / _ratio_dir(f) / name, index))
    results = train_pool_runs(jobs, world=world, pool=pool, metric=metric, workers=workers, log=log)
    points: dict[float, dict[str, _Points]] = {f: {} for f in ratios}
    seconds: dict[str, float] = {}
    for (f, name), (measured, wall) in zip(keys, results, strict=True):
        seconds[f"{_ratio_dir(f)}/{name}"] = wall
        points[f][name] = [(n, e) for n, e in measured if n > warm]
    return points, seconds


def fit_short_runs(
    points: Mapping[float, Mapping[str, _Points]],
    out: Path,
    *,
    bucket_size: int,
    method: str = "utility",
    tau_max: float = 50.0,
) -> dict[float, FitResult]:
    """Fit the law to each ratio's bucket points (``b``, ``tau`` per bucket; ``a``, ``d``
    shared) with the scaling experiment's grids; write ``out/runs/{ratio}.csv`` (the
    points) and ``out/params.jsonl`` (one record per ratio, ``filter_ratio`` in it)."""
    fits: dict[float, FitResult] = {}
    for f, by_bucket in points.items():
        names = list(by_bucket)
        rows = [(j, n, e) for j, name in enumerate(names) for n, e in by_bucket[name]]
        runs = Runs(
            names=tuple(names),
            pool=np.array([r[0] for r in rows], dtype=np.int64),
            samples_seen=np.array([r[1] for r in rows], dtype=np.float64),
            error=np.array([r[2] for r in rows], dtype=np.float64),
            pool_size=np.full(len(rows), float(bucket_size)),
        )
        write_runs(out / "runs" / f"{_ratio_dir(f)}.csv", runs)
        fit = fit_small_runs(
            runs,
            size=bucket_size,
            method=method,
            tau_max=tau_max,
            fit_id=f"plan_{_ratio_dir(f)}_{method}",
        )
        params = dataclasses.replace(fit.params, extra={**fit.params.extra, FILTER_RATIO_FIELD: f})
        fits[f] = dataclasses.replace(fit, params=params)
    write_params(out / "params.jsonl", [fits[f].params for f in sorted(fits)])
    return fits


def validate_plan(
    cfg: ExperimentConfig,
    out: Path,
    *,
    joint: JointPlan,
    world: World,
    pool: PairDataset,
    buckets: ScoreBuckets,
    seeds: Sequence[int],
    reference: str,
    metric: str,
    workers: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every candidate the planner considered (each ratio's unions) at every ratio
    and seed, to the largest budget with an evaluation at every budget, into
    ``out/validate/{ratio}/{label}_s{seed}`` (``workers`` runs at a time, see
    :func:`train_pool_runs`).

    Returns ``{"measured": {f: {label: [[error per budget] per seed]}}, "seconds": ...}``
    with the error read at each budget's evaluation.
    """
    budgets = [float(b) for b in joint.budgets]
    index = dict(zip(buckets.names, buckets.index, strict=True))
    keys: list[tuple[float, str, str]] = []
    jobs: list[_PoolJob] = []
    for f, plan in zip(joint.ratios, joint.plans, strict=True):
        for pools in plan.pools:
            label = buckets.label(pools)
            union = np.concatenate([index[p] for p in pools])
            for seed in seeds:
                run_cfg = short_run_config(
                    cfg, samples=budgets, filter_ratio=f, reference=reference, seed=seed
                )
                name = f"{_ratio_dir(f)}/{label}_s{seed}"
                keys.append((f, label, name))
                jobs.append((run_cfg, out / "validate" / name, union))
    results = train_pool_runs(jobs, world=world, pool=pool, metric=metric, workers=workers, log=log)
    measured: dict[float, dict[str, list[list[float]]]] = {f: {} for f in joint.ratios}
    seconds: dict[str, float] = {}
    batch = cfg.train.batch_size
    for (f, label, name), (points, wall) in zip(keys, results, strict=True):
        seconds[name] = wall
        at = dict(points)
        measured[f].setdefault(label, []).append(
            [at[max(1, math.ceil(b / batch)) * batch] for b in budgets]
        )
    return {"measured": measured, "seconds": seconds}
