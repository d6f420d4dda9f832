"""Small-scale validation of the data-filtering scaling law (Goyal et al. Figure 5).

1. Train a small reference model on the world's curated pool.
2. Score every raw pair by the reference's image–text cosine similarity and split the raw
   pool into ``m`` equal buckets, best first (``top0to25p``, ``top25to50p`` ... for m = 4).
3. Train the learner on each bucket alone for ``passes`` passes, measuring zero-shot error
   every ``eval_every_passes`` passes.
4. Fit ``b`` and ``tau`` per bucket (shared ``a``, ``d``) and predict the top-k unions
   without training on them.
5. Train the top-k unions for the same number of samples seen and compare.

Every training run uses a constant learning rate after warmup (``optim.min_lr_ratio = 1``)
so that an intermediate evaluation stands for a shorter run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curatorch.data import PairDataset, World, build_world
from curatorch.scaling import (
    FitResult,
    PoolParams,
    Runs,
    atomic_write_bytes,
    combined_error,
    fit_pools,
    plot_comparison,
    write_params,
    write_runs,
)
from curatorch.train import ConfigError, ExperimentConfig, apply_overrides, train
from curatorch.train.config import EXPERIMENT_SECTIONS, Section, read_toml, sections_from_dict
from curatorch.train.reference import load_trained_model, obtain_reference

__all__ = [
    "ScalingExperimentConfig",
    "ScalingSection",
    "alignment_scores",
    "fit_small_runs",
    "load_scaling_config",
    "plot_scaling_experiment",
    "read_error_points",
    "run_scaling_experiment",
    "scaling_config_from_dict",
    "split_buckets",
    "train_pool",
]


@dataclass(frozen=True)
class ScalingSection:
    """The ``[scaling]`` table of an experiment config.

    Attributes:
        buckets: number ``m`` of equal buckets of the raw pool (>= 2).
        passes: passes over one bucket that every run trains for (total samples seen is
            ``passes * bucket_size`` for bucket and union runs alike).
        eval_every_passes: evaluation cadence, in passes over one bucket.
        combos: the top-k unions to predict and train (each ``2 <= k <= buckets``).
        reference_size: model size of the reference (registry name).
        reference_steps: training steps of the reference on the curated pool.
        method: combination method, ``"utility"`` or ``"data"``.
        fit_d: fit ``d`` (true) or fix it to ``d`` (false).
        d: the fixed ``d`` when ``fit_d`` is false.
        tau_max: largest half-life (passes) in the fitting grid.
        tolerance: largest acceptable |predicted - measured| error of a union.
    """

    buckets: int = 4
    passes: int = 10
    eval_every_passes: int = 2
    combos: tuple[int, ...] = (2, 3, 4)
    reference_size: str = "tiny"
    reference_steps: int = 300
    method: str = "utility"
    fit_d: bool = True
    d: float = 0.0
    tau_max: float = 50.0
    tolerance: float = 0.03

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad key."""
        if self.buckets < 2:
            raise ConfigError(f"scaling.buckets must be >= 2, got {self.buckets}")
        if self.passes < 1:
            raise ConfigError(f"scaling.passes must be >= 1, got {self.passes}")
        if not 1 <= self.eval_every_passes <= self.passes:
            raise ConfigError(
                f"scaling.eval_every_passes must be in [1, passes={self.passes}], "
                f"got {self.eval_every_passes}"
            )
        for k in self.combos:
            if not 2 <= k <= self.buckets:
                raise ConfigError(f"scaling.combos entries must be in [2, {self.buckets}], got {k}")
        if self.reference_steps < 1:
            raise ConfigError(f"scaling.reference_steps must be >= 1, got {self.reference_steps}")
        if self.method not in ("utility", "data"):
            raise ConfigError(f"scaling.method must be 'utility' or 'data', got {self.method!r}")
        if not 0.0 <= self.d <= 1.0:
            raise ConfigError(f"scaling.d must be in [0, 1], got {self.d}")
        if not (self.tau_max > 1.0 and math.isfinite(self.tau_max)):
            raise ConfigError(f"scaling.tau_max must be a finite number > 1, got {self.tau_max}")
        if not (self.tolerance > 0 and math.isfinite(self.tolerance)):
            raise ConfigError(
                f"scaling.tolerance must be a finite number > 0, got {self.tolerance}"
            )


@dataclass(frozen=True)
class ScalingExperimentConfig:
    """The training config (all usual sections) plus the ``[scaling]`` table."""

    base: ExperimentConfig
    scaling: ScalingSection


_SECTIONS: dict[str, Section] = {**EXPERIMENT_SECTIONS, "scaling": ScalingSection}


def scaling_config_from_dict(raw: Mapping[str, Any]) -> ScalingExperimentConfig:
    """Build and validate a :class:`ScalingExperimentConfig` from a parsed TOML (the
    experiment sections and ``[scaling]``); raises :class:`ConfigError` naming the key."""
    parts = sections_from_dict(_SECTIONS, raw)
    scaling = parts.pop("scaling")
    base = ExperimentConfig(**parts)
    base.validate()
    scaling.validate()
    return ScalingExperimentConfig(base=base, scaling=scaling)


def load_scaling_config(
    path: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> ScalingExperimentConfig:
    """Read a TOML file with the usual sections and a ``[scaling]`` table; ``--set``
    overrides may address either (``scaling.passes=6``). Raises :class:`ConfigError`
    naming the file and the key."""
    raw = read_toml(path)
    try:
        return scaling_config_from_dict(apply_overrides(raw, overrides, _SECTIONS))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# scoring and bucketing


@torch.no_grad()
def alignment_scores(
    model: torch.nn.Module, data: PairDataset, *, patch_size: int, batch_size: int = 1024
) -> torch.Tensor:
    """Cosine similarity of each pair's image and text embedding under ``model``; ``[N]``."""
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        img = model.encode_image(data.image_batch(idx), patch_size=patch_size)  # [b, D]
        txt = model.encode_text(data.tokens[idx])  # [b, D]
        out.append((img * txt).sum(-1))
    return torch.cat(out)


def _pct(x: float) -> str:
    return f"{x:.0f}" if abs(x - round(x)) < 1e-9 else f"{x:.4g}"


def split_buckets(
    scores: torch.Tensor, *, buckets: int, multiple: int = 1
) -> tuple[list[str], list[torch.Tensor]]:
    """Split indices into ``buckets`` equal buckets by descending score.

    Each bucket has ``floor(N / buckets / multiple) * multiple`` examples; the lowest-scoring
    remainder is dropped. Names are ``top{lo}to{hi}p`` in percent of the used pool.

    Returns:
        ``(names, index)``: ``[m]`` names and ``[m]`` int64 index tensors, best first.
    """
    if scores.dim() != 1:
        raise ValueError(f"scores must be a vector, got shape {tuple(scores.shape)}")
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    size = (scores.numel() // buckets // multiple) * multiple
    if size < 1:
        raise ValueError(
            f"buckets: {scores.numel()} examples cannot fill {buckets} buckets of a multiple "
            f"of {multiple}"
        )
    order = torch.argsort(scores, descending=True, stable=True)
    step = 100.0 / buckets
    names = [f"top{_pct(i * step)}to{_pct((i + 1) * step)}p" for i in range(buckets)]
    return names, [order[i * size : (i + 1) * size] for i in range(buckets)]


# ---------------------------------------------------------------------------------------------
# the experiment


def read_error_points(run_dir: Path, *, metric: str = "zeroshot_acc") -> list[tuple[int, float]]:
    """``[(examples_seen, 1 - metric)]`` of every evaluation after step 0 in a run's
    ``metrics.jsonl`` (``metric``: an accuracy-like record field, ``zeroshot_acc`` or
    ``mean_score``)."""
    points = []
    with open(run_dir / "metrics.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                if rec["examples_seen"] > 0 and rec.get(metric) is not None:
                    points.append((int(rec["examples_seen"]), 1.0 - float(rec[metric])))
    return points


def train_pool(
    cfg: ExperimentConfig,
    out: Path,
    *,
    world: World,
    pool: PairDataset,
    log: Callable[[str], None],
    metric: str = "zeroshot_acc",
) -> tuple[list[tuple[int, float]], float]:
    """Train ``cfg`` on ``pool`` into ``out`` (replacing an earlier run there) and return
    its :func:`read_error_points` and the seconds it took; logs one line."""
    t0 = time.perf_counter()
    train(cfg, out, overwrite=True, progress=False, world=world, pool=pool)
    wall = time.perf_counter() - t0
    points = read_error_points(out, metric=metric)
    log(
        f"  {out.name}: {len(pool)} examples, {cfg.train.steps} steps, {wall:.1f} s, "
        f"errors {[round(e, 3) for _, e in points]}"
    )
    return points, wall


def _reference_scores(
    config: ScalingExperimentConfig, out: Path, *, world: World, log: Callable[[str], None]
) -> torch.Tensor:
    """Train the reference (``scaling.reference_size``, ``reference_steps`` steps, the
    run's optimizer) on the curated pool into ``out/reference``, always afresh, and score
    every raw pair with it: ``[N]`` alignments."""
    cfg, sc = config.base, config.scaling
    recipe = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, size=sc.reference_size),
        train=dataclasses.replace(
            cfg.train,
            eval_at_start=False,
            steps=sc.reference_steps,
            eval_every=sc.reference_steps,
            checkpoint_every=sc.reference_steps,
        ),
    )
    # scored by the model itself (float32), not from a (float16) embedding cache
    obtained = obtain_reference(
        out,
        data=cfg.data,
        world=world,
        recipe=recipe,
        embed=False,
        overwrite=True,
        progress=False,
        log=log,
    )
    assert obtained.checkpoint is not None  # a trained reference has one
    reference, _state, patch, _folder = load_trained_model(obtained.checkpoint)
    return alignment_scores(reference, world.raw, patch_size=patch)


_Points = list[tuple[int, float]]  # (samples seen, zero-shot error) of one run


@dataclass(frozen=True)
class _Buckets:
    """The raw pool split by reference score (best first).

    Attributes:
        names: ``[m]`` bucket names (``top0to25p`` ...).
        index: ``[m]`` int64 index tensors into the raw pool, ``size`` each.
        size: examples per bucket.
        clean: fraction of noise-free pairs in each bucket.
        wall: seconds the reference training, scoring and split took.
    """

    names: list[str]
    index: list[torch.Tensor]
    size: int
    clean: list[float]
    wall: float


def _score_buckets(
    config: ScalingExperimentConfig, out: Path, *, world: World, log: Callable[[str], None]
) -> _Buckets:
    """Step 1: train the reference, score the raw pool and split it into
    ``scaling.buckets`` buckets of a multiple of the batch size."""
    t0 = time.perf_counter()
    scores = _reference_scores(config, out, world=world, log=log)
    names, index = split_buckets(
        scores, buckets=config.scaling.buckets, multiple=config.base.train.batch_size
    )
    size = int(index[0].numel())
    wall = time.perf_counter() - t0
    noise = world.raw.noise
    clean = [float((noise[i] == 0).float().mean()) for i in index]
    log(
        f"  reference + scoring {wall:.1f} s; bucket size {size}; clean fraction "
        f"{[round(c, 3) for c in clean]}"
    )
    return _Buckets(names=names, index=index, size=size, clean=clean, wall=wall)


def _run_config(config: ScalingExperimentConfig, size: int) -> ExperimentConfig:
    """The config of every bucket and union run: constant learning rate after warmup, no
    evaluation at step 0, ``scaling.passes`` passes over one bucket of ``size`` examples,
    an evaluation every ``scaling.eval_every_passes`` passes, one checkpoint at the end."""
    cfg, sc = config.base, config.scaling
    batch = cfg.train.batch_size
    base = dataclasses.replace(
        cfg,
        optim=dataclasses.replace(cfg.optim, min_lr_ratio=1.0),
        train=dataclasses.replace(cfg.train, eval_at_start=False),
    )
    steps = math.ceil(sc.passes * size / batch)
    every = max(1, (sc.eval_every_passes * size) // batch)
    return dataclasses.replace(
        base,
        train=dataclasses.replace(
            base.train, steps=steps, eval_every=every, checkpoint_every=steps
        ),
    )


def fit_small_runs(
    runs: Runs,
    *,
    size: float,
    method: str,
    d: float | None = None,
    tau_max: float = 50.0,
    fit_id: str = "fit",
) -> FitResult:
    """:func:`curatorch.scaling.fit_pools` of bucket runs of ``size`` examples each, on
    grids for small budgets: ours are ~1e3-1e5 samples, not DataComp's 1e7-1e9, so ``a``
    is searched on a wide log grid and ``tau`` on ``[0.25, tau_max]`` passes; ``d``
    fitted unless given."""
    return fit_pools(
        names=runs.names,
        pool=runs.pool,
        samples_seen=runs.samples_seen,
        error=runs.error,
        pool_size=float(size),
        method=method,  # type: ignore[arg-type]
        d=d,
        a_grid=np.geomspace(1e-3, 1e6, 91),
        tau_grid=np.geomspace(0.25, tau_max, 100),
        fit_id=fit_id,
    )


def _fit_buckets(
    sc: ScalingSection,
    out: Path,
    buckets: _Buckets,
    bucket_points: Mapping[str, _Points],
    *,
    log: Callable[[str], None],
) -> tuple[dict[str, FitResult], dict[str, float]]:
    """Step 3: write ``bucket_runs.csv``, fit the buckets with the configured method and
    the other one (for comparison), write ``fit.jsonl`` and log both fits.

    Returns ``(fits, seconds)``, each keyed by method, the configured method first.
    """
    names, size = buckets.names, buckets.size
    pool_ix, seen, err = [], [], []
    for j, name in enumerate(names):
        for n, e in bucket_points[name]:
            pool_ix.append(j)
            seen.append(n)
            err.append(e)
    runs = Runs(
        names=tuple(names),
        pool=np.asarray(pool_ix, dtype=np.int64),
        samples_seen=np.asarray(seen, dtype=np.float64),
        error=np.asarray(err),
        pool_size=np.full(len(seen), float(size)),
    )
    write_runs(out / "bucket_runs.csv", runs)
    fits: dict[str, FitResult] = {}
    fit_walls: dict[str, float] = {}
    other = _other_method(sc.method)
    for method in (sc.method, other):  # the configured method, and the other for comparison
        t0 = time.perf_counter()
        fits[method] = fit_small_runs(
            runs,
            size=size,
            method=method,
            d=None if sc.fit_d else sc.d,
            tau_max=sc.tau_max,
            fit_id=f"experiment_buckets_{method}",
        )
        fit_walls[method] = time.perf_counter() - t0
    write_params(out / "fit.jsonl", [fits[sc.method].params, fits[other].params])
    for method, f in fits.items():
        q = f.params
        log(
            f"fit {method} ({fit_walls[method]:.2f} s): a={q.a[0]:.4g} d={q.d:.4g} "
            f"b={[round(v, 4) for v in q.b]} tau={[round(v, 3) for v in q.tau]} "
            f"sse={f.sse:.3g}"
        )
    return fits, fit_walls


def _other_method(method: str) -> str:
    """The combination method that is not ``method``."""
    return "data" if method == "utility" else "utility"


def _union_error(
    params: PoolParams, n: np.ndarray, *, k: int, size: int, method: str
) -> np.ndarray:
    """Predicted error ``[len(n)]`` of the union of the top ``k`` buckets under the fitted
    ``params``."""
    return combined_error(
        n,
        bucket_size=size,
        a=params.a[0],
        b=params.b[:k],
        tau=params.tau[:k],
        d=float(params.d),
        method=method,  # type: ignore[arg-type]
    )


def _union_comparison(
    points: _Points, *, k: int, buckets: _Buckets, fits: Mapping[str, FitResult], method: str
) -> tuple[list[tuple[int, float, float]], dict[str, Any]]:
    """Predicted against measured error of one trained top-``k`` union.

    Returns ``([(samples seen, predicted, measured)], summary entry)``; the entry also
    holds the other method's prediction.
    """
    other = _other_method(method)
    n_meas = np.array([n for n, _ in points], dtype=np.float64)
    e_meas = np.array([e for _, e in points])
    e_pred = _union_error(fits[method].params, n_meas, k=k, size=buckets.size, method=method)
    e_other = _union_error(fits[other].params, n_meas, k=k, size=buckets.size, method=other)
    diff = e_pred - e_meas
    rows = [
        (int(n), float(pe), float(me)) for n, pe, me in zip(n_meas, e_pred, e_meas, strict=True)
    ]
    entry = {
        "buckets": buckets.names[:k],
        "samples_seen": [int(v) for v in n_meas],
        "predicted_error": [round(float(v), 5) for v in e_pred],
        "measured_error": [round(float(v), 5) for v in e_meas],
        "max_abs_diff": round(float(np.abs(diff).max()), 5),
        "mean_abs_diff": round(float(np.abs(diff).mean()), 5),
        "final_diff": round(float(diff[-1]), 5),
        f"{other}_predicted_error": [round(float(v), 5) for v in e_other],
        f"{other}_max_abs_diff": round(float(np.abs(e_other - e_meas).max()), 5),
    }
    return rows, entry


def _train_unions(
    config: ScalingExperimentConfig,
    run_cfg: ExperimentConfig,
    out: Path,
    *,
    world: World,
    buckets: _Buckets,
    fits: Mapping[str, FitResult],
    walls: dict[str, float],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Steps 4 and 5: train each configured top-k union (by reference score) into
    ``out/unions/top<k>``, adding its seconds to ``walls``, and write ``comparison.csv``
    (predicted against measured error of every union point). Returns the per-union
    summary entries."""
    sc = config.scaling
    rows: list[tuple[str, int, float, float]] = []
    union_summary: dict[str, Any] = {}
    for k in sc.combos:
        label = f"top{_pct(100.0 * k / sc.buckets)}"
        union = world.raw.subset(torch.cat(buckets.index[:k]))
        points, walls[label] = train_pool(
            run_cfg, out / "unions" / label, world=world, pool=union, log=log
        )
        union_rows, union_summary[label] = _union_comparison(
            points, k=k, buckets=buckets, fits=fits, method=sc.method
        )
        rows += [(label, *row) for row in union_rows]
    text = "union,samples_seen,predicted_error,measured_error,difference\n" + "".join(
        f"{u},{n},{pe:.6f},{me:.6f},{pe - me:+.6f}\n" for u, n, pe, me in rows
    )
    atomic_write_bytes(out / "comparison.csv", text.encode("utf-8"))
    return union_summary


def _summary_record(
    config: ScalingExperimentConfig,
    out: Path,
    *,
    buckets: _Buckets,
    bucket_points: Mapping[str, _Points],
    fits: Mapping[str, FitResult],
    fit_walls: Mapping[str, float],
    union_summary: Mapping[str, Any],
    walls: Mapping[str, float],
    t_start: float,
) -> dict[str, Any]:
    """``summary.json``: buckets, both fits, unions, tolerance check and seconds (the
    total counted from ``t_start``)."""
    sc = config.scaling
    names = buckets.names
    other = _other_method(sc.method)
    fit = fits[sc.method]
    p = fit.params
    max_diff = max(v["max_abs_diff"] for v in union_summary.values()) if union_summary else 0.0
    return {
        "out": str(out),
        "bucket_size": buckets.size,
        "buckets": names,
        "clean_fraction": [round(c, 4) for c in buckets.clean],
        "fit": {
            "a": p.a[0],
            "d": p.d,
            "b": list(p.b),
            "tau": list(p.tau),
            "sse": fit.sse,
            "method": sc.method,
            "b_order": [names[i] for i in np.argsort(p.b, kind="stable")],
            "seconds": round(fit_walls[sc.method], 3),
            "residual_rms_per_bucket": {
                name: round(
                    float(np.sqrt(fit.sse_per_pool[j] / max(1, len(bucket_points[name])))), 5
                )
                for j, name in enumerate(names)
            },
        },
        f"fit_{other}": {
            "a": fits[other].params.a[0],
            "d": fits[other].params.d,
            "b": list(fits[other].params.b),
            "tau": list(fits[other].params.tau),
            "sse": fits[other].sse,
        },
        "bucket_points": {k: v for k, v in bucket_points.items()},
        "unions": union_summary,
        "max_abs_diff": max_diff,
        "tolerance": sc.tolerance,
        "within_tolerance": bool(max_diff <= sc.tolerance),
        "wall_s": {
            "reference": round(buckets.wall, 1),
            **{k: round(v, 1) for k, v in walls.items()},
            "total": round(time.perf_counter() - t_start, 1),
        },
        "threads": torch.get_num_threads(),
    }


def run_scaling_experiment(
    config: ScalingExperimentConfig,
    out_dir: str | os.PathLike[str],
    *,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the whole validation into ``out_dir`` and return the summary record.

    Writes ``reference/`` (the reference run), ``buckets/<name>/`` and ``unions/top<k>/``
    (training runs), ``bucket_runs.csv`` (the bucket points), ``fit.jsonl`` (the fitted
    parameters), ``comparison.csv`` (predicted against measured error of every union point)
    and ``summary.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    world = build_world(config.base.data)
    # 1. reference on the curated pool, buckets of the raw pool
    buckets = _score_buckets(config, out, world=world, log=log)
    # 2. every bucket alone
    run_cfg = _run_config(config, buckets.size)
    bucket_points: dict[str, _Points] = {}
    walls: dict[str, float] = {}
    for name, idx in zip(buckets.names, buckets.index, strict=False):
        bucket_points[name], walls[name] = train_pool(
            run_cfg, out / "buckets" / name, world=world, pool=world.raw.subset(idx), log=log
        )
    # 3. fit the buckets
    fits, fit_walls = _fit_buckets(config.scaling, out, buckets, bucket_points, log=log)
    # 4./5. predict and train the unions of the top-k buckets
    union_summary = _train_unions(
        config, run_cfg, out, world=world, buckets=buckets, fits=fits, walls=walls, log=log
    )
    summary = _summary_record(
        config,
        out,
        buckets=buckets,
        bucket_points=bucket_points,
        fits=fits,
        fit_walls=fit_walls,
        union_summary=union_summary,
        walls=walls,
        t_start=t_start,
    )
    atomic_write_bytes(out / "summary.json", (json.dumps(summary, indent=1) + "\n").encode())
    return summary


# ---------------------------------------------------------------------------------------------
# the comparison plot


def _fitted_curve(fit: Mapping[str, Any], xs: np.ndarray, *, size: int, pools: slice) -> np.ndarray:
    """The summary's fit (``summary["fit"]``) evaluated at ``xs`` for the union of the
    buckets ``pools`` selects."""
    return combined_error(
        xs,
        bucket_size=size,
        a=fit["a"],
        b=fit["b"][pools],
        tau=fit["tau"][pools],
        d=fit["d"],
        method=fit["method"],
    )


def plot_scaling_experiment(
    summary: Mapping[str, Any], path: str | os.PathLike[str], *, passes: int
) -> None:
    """Write a PNG of a :func:`run_scaling_experiment` summary to ``path``: the measured
    error of every bucket and union against its fitted (buckets) or predicted (unions)
    curve, over ``size / 4`` to ``passes * size`` samples seen (``size`` the bucket size).
    """
    fit, size = summary["fit"], summary["bucket_size"]
    measured, predicted = {}, {}
    xs = np.linspace(size / 4, passes * size, 200)
    for j, name in enumerate(summary["buckets"]):
        pts = summary["bucket_points"][name]
        measured[name] = ([n for n, _ in pts], [e for _, e in pts])
        predicted[name] = (xs, _fitted_curve(fit, xs, size=size, pools=slice(j, j + 1)))
    for label, u in summary["unions"].items():
        k = len(u["buckets"])
        measured[label] = (u["samples_seen"], u["measured_error"])
        predicted[label] = (xs, _fitted_curve(fit, xs, size=size, pools=slice(None, k)))
    plot_comparison(
        measured, predicted, path, title=f"buckets fitted, unions predicted ({fit['method']})"
    )
