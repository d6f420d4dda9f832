"""Strategy comparison: JEST's headline results (the paper's Figures 1, 3 and 4) on a
built-in world or on the user's shards.

``run_compare(cc, out)`` obtains a reference (``compare.reference``: a cache, or a model
embedded once; else one trained on the curated pool or on ``compare.reference_shards``)
and caches its embeddings of the training data, then trains every configured strategy with the
same learner, the same training budget (``train.steps x train.batch_size``) and the same
seeds, and measures, against the baseline (IID) run's final score:

- ``examples_to_target`` / ``flops_to_target``: the training examples / total FLOPs
  (training + learner scoring + reference scoring, the reference's embedding cache
  included) at which a strategy's seed-averaged score first reaches the target, linearly
  interpolated between the two evaluations around the crossing (the untrained model's
  evaluation at step 0 does not count);
- ``speedup_examples`` / ``speedup_flops``: the baseline's totals divided by those.

A compare config is an experiment config (``[data]``, ``[model]`` ... as for
``curatorch train``) plus a ``[compare]`` table::

    [compare]
    seeds = [0, 1, 2]
    metric = "mean_score"      # the target metric
    baseline = "iid"           # whose final score is the target
    reference_steps = 400      # reference training (0 = train.steps)
    quick = ["train.steps=150", "compare.seeds=[0]"]   # what --quick overrides
    # on data.shards: reference = "CACHE | RUN | HF_FOLDER" or reference_shards = "CURATED"

    [[compare.strategies]]
    name = "jest"
    label = "JEST f=0.8"
    strategy = { name = "jest", filter_ratio = 0.8 }
    reference = ""    # a [[compare.references]] name ("" = the comparison's reference)
    pool = ""         # a [[compare.pools]] name to train on ("" = data.pool)

Several references (each trained on its own pool, for its own steps) and pools cut from
the training pool by a reference's score are ``[[compare.references]]`` and
``[[compare.pools]]``: :mod:`curatorch.experiments.compare_references`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from curatorch.data import PairDataset, World, build_world
from curatorch.eval import SHARD_EVAL_SCORES
from curatorch.eval.evaluate import EVAL_METRICS
from curatorch.experiments.compare_references import (
    PoolCut,
    PoolSpec,
    PreparedReferences,
    ReferenceRun,
    check_pool_record,
    needed_references,
    prepare_references,
    reference_recipe,
    validate_references,
)
from curatorch.train import (
    CheckpointError,
    ConfigError,
    ExperimentConfig,
    OptimConfig,
    OutputDirError,
    StrategyConfig,
    apply_overrides,
    config_to_dict,
    train,
)
from curatorch.train.config import (
    EXPERIMENT_SECTIONS,
    EvalConfig,
    Section,
    coerce_value,
    read_toml,
    section_from_dict,
    sections_from_dict,
)
from curatorch.train.contrastive import needs_world
from curatorch.train.records import read_jsonl
from curatorch.train.reference import obtain_reference

__all__ = [
    "CompareConfig",
    "CompareSection",
    "StrategyRun",
    "aggregate_runs",
    "compare_section_from_dict",
    "load_compare_config",
    "parse_compare_config",
    "recorded_metrics",
    "run_compare",
    "summarize",
    "to_target",
]

# metrics a target can be set on (zeroshot_chance is a constant, not a score): the
# built-in evaluation's and the held-out shards' (which of these a run records depends on
# its evaluation: shards without labels have no zero-shot or few-shot score)
TARGET_METRICS = tuple(
    dict.fromkeys(m for m in (*EVAL_METRICS, *SHARD_EVAL_SCORES) if m != "zeroshot_chance")
)
# scores that held-out shards give only with eval.classes (and the probe with shots)
_LABEL_METRICS = ("zeroshot_acc", "fewshot_acc")


@dataclass(frozen=True)
class StrategyRun:
    """One strategy of a comparison: a short ``name`` (folder and JSON key), a ``label``
    for plots and tables, and its ``[strategy]`` and ``[optim]`` sections: the shared
    experiment config's, with the entry's ``strategy = {...}`` and ``optim = {...}``
    values (the learner, the data and the training budget are the same for every
    strategy). ``reference`` names one of ``compare.references`` to select with (""
    = ``strategy.reference`` if set, else the comparison's reference); ``pool`` names one
    of ``compare.pools`` to train on, the training pool filtered offline ("" = the whole
    ``data.pool``)."""

    name: str
    label: str = ""
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    reference: str = ""
    pool: str = ""

    @property
    def title(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class CompareSection:
    """The ``[compare]`` table.

    Attributes:
        strategies: the strategies to run (at least one; names unique).
        seeds: ``train.seed`` of each run of each strategy (the world is ``data.seed``).
        metric: the target metric, one of :data:`TARGET_METRICS`.
        baseline: the strategy whose final (seed-averaged) metric is the target and whose
            totals the speedups divide.
        only: run only these strategies (the baseline is always run); empty = all.
        reference: an existing reference embedding cache, or a model embedded once into
            ``OUT/reference-cache``: a curatorch run or checkpoint, or (``data.shards``) a
            Hugging Face SigLIP/CLIP folder; empty = train one into ``OUT/reference``.
        reference_shards: the curated shards (a pattern) the reference is trained on
            when ``reference`` is empty, with the learner's settings; its embeddings of
            the training shards are cached. Empty = the built-in world's curated pool
            (a comparison on ``data.shards`` then needs ``reference``).
        reference_steps / reference_batch_size / reference_model: the reference's
            training (0 / "" = the learner's steps, batch size, model size).
        analyze: write the Figure-2 selection plots (learnability matrix, vs chunks, vs
            filter ratio) with the baseline's seed-0 learner and the reference of the
            first strategy that selects with one.
        analyze_seeds: seeds averaged per point of those plots.
        workers: runs trained at once, each in its own process (1 = one after another in
            this process). Every run is the same whatever the count: set it to the number
            of cores when ``train.threads = 1``.
        quick: ``section.key=value`` overrides applied by ``--quick``.
        references: more references, each trained on a pool of the world or given
            (:class:`~curatorch.experiments.compare_references.ReferenceRun`); strategies
            name them.
        pools: the training pool filtered offline by a reference's score
            (:class:`~curatorch.experiments.compare_references.PoolSpec`), to train a
            reference or a strategy on.
        reference_steps_scale: multiplies every reference's explicit training steps
            (``reference_steps`` and ``references[i].steps``; at least 1), e.g. for
            ``--quick``.
    """

    strategies: tuple[StrategyRun, ...] = ()
    seeds: tuple[int, ...] = (0, 1, 2)
    metric: str = "mean_score"
    baseline: str = "iid"
    only: tuple[str, ...] = ()
    reference: str = ""
    reference_shards: str = ""
    reference_steps: int = 0
    reference_batch_size: int = 0
    reference_model: str = ""
    analyze: bool = True
    analyze_seeds: int = 2
    workers: int = 1
    quick: tuple[str, ...] = ()
    references: tuple[ReferenceRun, ...] = ()
    pools: tuple[PoolSpec, ...] = ()
    reference_steps_scale: float = 1.0

    @property
    def active(self) -> tuple[StrategyRun, ...]:
        """The strategies to run: ``only`` (plus the baseline) or all, in config order."""
        if not self.only:
            return self.strategies
        keep = set(self.only) | {self.baseline}
        return tuple(s for s in self.strategies if s.name in keep)

    def validate(self) -> None:
        if not self.strategies:
            raise ConfigError("compare.strategies must list at least one strategy")
        names = [s.name for s in self.strategies]
        for name in names:
            if not name or any(c in name for c in "/\\ ") or name.startswith("."):
                raise ConfigError(
                    f"compare.strategies names must be non-empty folder names, got {name!r}"
                )
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"compare.strategies names must be unique, got {dupes} twice")
        if not self.seeds:
            raise ConfigError("compare.seeds must list at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"compare.seeds must be distinct, got {list(self.seeds)}")
        if self.metric not in TARGET_METRICS:
            raise ConfigError(
                f"compare.metric must be one of {list(TARGET_METRICS)}, got {self.metric!r}"
            )
        if self.baseline not in names:
            raise ConfigError(f"compare.baseline must be one of {names}, got {self.baseline!r}")
        for name in self.only:
            if name not in names:
                raise ConfigError(f"compare.only: unknown strategy {name!r} (known: {names})")
        if self.reference and self.reference_shards:
            raise ConfigError(
                "compare.reference and compare.reference_shards cannot both be set: the "
                "reference is given, or trained on the curated shards"
            )
        for key in ("reference_steps", "reference_batch_size"):
            if getattr(self, key) < 0:
                raise ConfigError(f"compare.{key} must be >= 0, got {getattr(self, key)}")
        if self.analyze_seeds < 1:
            raise ConfigError(f"compare.analyze_seeds must be >= 1, got {self.analyze_seeds}")
        if self.workers < 1:
            raise ConfigError(f"compare.workers must be >= 1, got {self.workers}")
        scale = self.reference_steps_scale
        if not (scale > 0 and math.isfinite(scale)):
            raise ConfigError(f"compare.reference_steps_scale must be > 0, got {scale}")
        validate_references(self.references, self.pools)
        self._validate_strategy_links()

    def _validate_strategy_links(self) -> None:
        """Each strategy's ``reference`` and ``pool`` name listed entries, and a named
        reference is one the strategy selects with."""
        refs = [r.name for r in self.references]
        pools = [p.name for p in self.pools]
        for i, st in enumerate(self.strategies):
            key = f"compare.strategies[{i}] ({st.name!r})"
            if st.reference and st.reference not in refs:
                raise ConfigError(
                    f"{key}.reference must name a compare.references entry {refs}, "
                    f"got {st.reference!r}"
                )
            if st.reference and not st.strategy.needs_reference:
                raise ConfigError(
                    f"{key}.reference = {st.reference!r}, but strategy {st.strategy.name!r} "
                    f"with score {st.strategy.score!r} uses no reference"
                )
            if st.reference and st.strategy.reference:
                raise ConfigError(
                    f"{key}: reference (a compare.references name) and strategy.reference "
                    f"(a path) cannot both be set"
                )
            if st.pool and st.pool not in pools:
                raise ConfigError(
                    f"{key}.pool must name a compare.pools entry {pools}, got {st.pool!r}"
                )

    def reference_steps_for(self, steps: int) -> int:
        """Explicit reference ``steps`` times :attr:`reference_steps_scale` (0 stays 0:
        the learner's ``train.steps``)."""
        return max(1, round(steps * self.reference_steps_scale)) if steps else 0

    def needs_default_reference(self, runs: Mapping[str, Mapping[int, ExperimentConfig]]) -> bool:
        """Whether an active strategy selects with the comparison's own reference: it
        needs one and names neither a listed reference nor a path."""
        return any(
            not st.reference
            and not st.strategy.reference
            and runs[st.name][self.seeds[0]].strategy.needs_reference
            for st in self.active
        )


@dataclass(frozen=True)
class CompareConfig:
    """A comparison: the shared experiment config, the ``[compare]`` table, and the
    experiment config of every (strategy, seed).

    ``runs`` are validated in full except for ``strategy.reference``: a strategy that needs
    a reference and names none gets the comparison's, which exists only once
    :func:`run_compare` has trained or embedded it (:meth:`run_config`).
    """

    base: ExperimentConfig
    compare: CompareSection
    runs: Mapping[str, Mapping[int, ExperimentConfig]]

    @property
    def baseline(self) -> StrategyRun:
        return next(s for s in self.compare.strategies if s.name == self.compare.baseline)

    def run_config(self, name: str, seed: int, *, reference: str) -> ExperimentConfig:
        """The validated config of strategy ``name``'s run with ``seed``, using the
        comparison's ``reference`` (a cache) where the strategy needs one and names none."""
        cfg = self.runs[name][seed]
        st = cfg.strategy
        if st.needs_reference and not st.reference:
            cfg = dataclasses.replace(cfg, strategy=dataclasses.replace(st, reference=reference))
        cfg.validate()
        return cfg


_SECTIONS: dict[str, Section] = {**EXPERIMENT_SECTIONS, "compare": CompareSection}


def _strategy_run(raw: Any, i: int, base: ExperimentConfig) -> StrategyRun:
    """``compare.strategies[i]``: its ``strategy``/``optim`` tables override the base's."""
    key = f"compare.strategies[{i}]"
    schema = StrategyRun(name="", strategy=base.strategy, optim=base.optim)
    if isinstance(raw, Mapping) and "name" not in raw:
        raise ConfigError(f"{key}.name is required")
    return section_from_dict(schema, raw, key)


def compare_section_from_dict(raw: Any, base: ExperimentConfig) -> CompareSection:
    """The ``[compare]`` table, its strategies' sections defaulting to ``base``'s; raises
    :class:`ConfigError` naming the key (``compare.strategies[1].strategy.bogus``)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[compare] must be a table, got {type(raw).__name__}")
    lists = ("strategies", "references", "pools")
    rest = {k: v for k, v in raw.items() if k not in lists}
    section = section_from_dict(CompareSection, rest, "compare")
    strategies = tuple(
        _strategy_run(v, i, base) for i, v in enumerate(_table_list(raw, "strategies"))
    )
    references = tuple(
        _listed_entry(ReferenceRun, v, f"compare.references[{i}]")
        for i, v in enumerate(_table_list(raw, "references"))
    )
    pools = tuple(
        _listed_entry(PoolSpec, v, f"compare.pools[{i}]")
        for i, v in enumerate(_table_list(raw, "pools"))
    )
    section = dataclasses.replace(
        section, strategies=strategies, references=references, pools=pools
    )
    section.validate()
    return section


def _table_list(raw: Mapping[str, Any], key: str) -> list[Any]:
    entries = raw.get(key, [])
    if not isinstance(entries, (list, tuple)):
        raise ConfigError(
            f"compare.{key} must be a list of tables, got {type(entries).__name__} {entries!r}"
        )
    return list(entries)


def _listed_entry(cls: type, raw: Any, key: str) -> Any:
    """A ``[[compare.references]]`` / ``[[compare.pools]]`` entry (``name`` required)."""
    if isinstance(raw, Mapping) and "name" not in raw:
        raise ConfigError(f"{key}.name is required")
    return section_from_dict(cls, raw, key)


def _quick_overrides(raw: Mapping[str, Any]) -> tuple[str, ...]:
    table = raw.get("compare", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"[compare] must be a table, got {type(table).__name__}")
    return coerce_value(table.get("quick", ()), tuple[str, ...], "compare.quick")


def _run_configs(
    base: ExperimentConfig, section: CompareSection
) -> dict[str, dict[int, ExperimentConfig]]:
    """The config of every (strategy, seed), validated but for the deferred reference."""
    runs: dict[str, dict[int, ExperimentConfig]] = {}
    for i, st in enumerate(section.strategies):
        per_seed = {}
        for seed in section.seeds:
            cfg = dataclasses.replace(
                base,
                strategy=st.strategy,
                optim=st.optim,
                train=dataclasses.replace(base.train, seed=seed),
            )
            try:
                cfg.validate(require_reference=False)
            except ConfigError as exc:
                raise ConfigError(f"compare.strategies[{i}] ({st.name!r}): {exc}") from exc
            per_seed[seed] = cfg
        runs[st.name] = per_seed
    return runs


def _check_metric_recorded(eval_cfg: EvalConfig, metric: str) -> None:
    """Refuse a target metric that the runs' evaluation does not record: a held-out-shard
    score on the built-in sets, a label score without ``eval.classes`` (or the probe
    without ``eval.fewshot_shots``)."""
    if not eval_cfg.on_shards():
        if metric not in EVAL_METRICS:
            raise ConfigError(
                f"compare.metric = {metric!r} is a held-out-shards score; the built-in "
                f"evaluation records {[m for m in TARGET_METRICS if m in EVAL_METRICS]}"
            )
        return
    if metric in _LABEL_METRICS and not eval_cfg.classes:
        raise ConfigError(
            f"compare.metric = {metric!r} needs labelled held-out shards: set eval.classes "
            f"(without it they give {[m for m in SHARD_EVAL_SCORES if m not in _LABEL_METRICS]} "
            f"and mean_score)"
        )
    if metric == "fewshot_acc" and not eval_cfg.fewshot_shots:
        raise ConfigError("compare.metric = 'fewshot_acc' needs eval.fewshot_shots >= 1, got 0")


def _check_shard_comparison(base: ExperimentConfig, section: CompareSection) -> None:
    """A comparison on ``data.shards`` takes its reference from the user's data
    (``compare.reference`` or ``compare.reference_shards``) unless it uses the built-in
    world on purpose (:func:`~curatorch.train.contrastive.needs_world`: the built-in
    tokenizer or evaluation); ``reference_shards`` needs ``data.shards``."""
    if base.data.shards:
        trained = [r.name for r in section.references if not r.path]
        if trained or section.pools:
            what = f"compare.references {trained}" if trained else "compare.pools"
            raise ConfigError(
                f"{what}: a reference trained on a pool of the built-in world, or a pool "
                f"cut from it, needs the built-in pools; on data.shards give each listed "
                f"reference as path (a shard cache or a model)"
            )
    if section.reference_shards and not base.data.shards:
        raise ConfigError(
            "compare.reference_shards trains the reference on curated shards and embeds the "
            "training shards: it needs data.shards"
        )
    given = section.reference or section.reference_shards
    uses_default = any(
        not st.reference and not st.strategy.reference and st.strategy.needs_reference
        for st in section.active
    )
    if base.data.shards and not given and uses_default and not needs_world(base):
        raise ConfigError(
            "compare.reference: a comparison on data.shards needs a reference from your "
            "data: a shard cache (curatorch embed), a curatorch run/checkpoint or an HF "
            "model folder (embedded once), or compare.reference_shards = curated shards "
            "to train one on"
        )


def parse_compare_config(
    raw: Mapping[str, Any], overrides: Sequence[str] = (), *, quick: bool = False
) -> CompareConfig:
    """Build a :class:`CompareConfig` from a parsed TOML (``[compare]`` plus the experiment
    sections), ``--set`` overrides (``compare.key=...`` and ``section.key=...``, checked
    against the fields) and, with ``quick``, the config's ``compare.quick`` overrides
    (applied before ``overrides``).

    Raises :class:`ConfigError` naming the key that is unknown or invalid.
    """
    if quick:
        try:
            raw = apply_overrides(raw, _quick_overrides(raw), _SECTIONS)
        except ConfigError as exc:
            raise ConfigError(f"compare.quick: {exc}") from exc
    raw = dict(apply_overrides(raw, overrides, _SECTIONS))
    for key in raw:
        if key == "study":
            raise ConfigError(
                "[study] makes this a study config: run `curatorch study reference CONFIG` "
                "(without the table, `curatorch compare` runs its comparison)"
            )
        if key not in _SECTIONS:
            raise ConfigError(f"unknown config section [{key}] (known: {sorted(_SECTIONS)})")
    table = raw.pop("compare", {})
    base = ExperimentConfig(**sections_from_dict(EXPERIMENT_SECTIONS, raw))
    # the comparison supplies the reference of the strategies that need one
    base.validate(require_reference=False)
    section = compare_section_from_dict(table, base)
    _check_metric_recorded(base.eval, section.metric)
    _check_shard_comparison(base, section)
    return CompareConfig(base=base, compare=section, runs=_run_configs(base, section))


def load_compare_config(
    path: str | os.PathLike[str], overrides: Sequence[str] = (), *, quick: bool = False
) -> CompareConfig:
    """Read a compare config file (see :func:`parse_compare_config`)."""
    raw = read_toml(path)
    try:
        return parse_compare_config(raw, overrides, quick=quick)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


# ---------------------------------------------------------------------------- aggregation


def _read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return read_jsonl(run_dir / "metrics.jsonl")


def aggregate_runs(
    records: Mapping[int, Sequence[Mapping[str, Any]]], metrics: Sequence[str]
) -> dict[str, list[float]]:
    """Average per-seed metric records (``{seed: [record, ...]}``) at each evaluated step.

    Returns ``{"step", "examples_seen", "flops_total", "<m>", "<m>_min", "<m>_max",
    "<m>_std"}`` lists over the steps every seed evaluated, x values averaged over seeds.
    """
    by_step = [{int(r["step"]): r for r in recs} for recs in records.values()]
    if not by_step:
        raise ValueError("records must hold at least one seed")
    steps = sorted(set.intersection(*(set(d) for d in by_step)))
    out: dict[str, list[float]] = {"step": [float(s) for s in steps]}
    for key in ("examples_seen", "flops_total"):
        out[key] = [sum(float(d[s][key]) for d in by_step) / len(by_step) for s in steps]
    for m in metrics:
        vals = [[float(d[s][m]) for d in by_step] for s in steps]
        out[m] = [sum(v) / len(v) for v in vals]
        out[f"{m}_min"] = [min(v) for v in vals]
        out[f"{m}_max"] = [max(v) for v in vals]
        out[f"{m}_std"] = [
            math.sqrt(sum((x - sum(v) / len(v)) ** 2 for x in v) / max(len(v) - 1, 1)) for v in vals
        ]
    return out


def to_target(xs: Sequence[float], ys: Sequence[float], target: float) -> float | None:
    """The ``x`` at which ``ys`` first reaches ``target``, linearly interpolated between the
    evaluation before the crossing and the first one at or above it; ``None`` if never."""
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if y >= target:
            if i == 0:
                return float(x)
            x0, y0 = xs[i - 1], ys[i - 1]
            frac = (target - y0) / (y - y0) if y != y0 else 1.0
            return float(x0 + frac * (x - x0))
    return None


def summarize(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    baseline: str,
    metric: str = "mean_score",
) -> dict[str, Any]:
    """The comparison's numbers from aggregated curves (:func:`aggregate_runs` per strategy).

    Returns the issue's JSON: ``{"strategies": {name: {"examples_to_target",
    "flops_to_target", "final_mean_score", "final": {metric: value}}}, "speedup_examples":
    {name: x}, "speedup_flops": {name: x}}`` (None where the target is never reached).
    """
    if baseline not in curves:
        raise ValueError(f"baseline must be one of {sorted(curves)}, got {baseline!r}")
    base = curves[baseline]
    target = base[metric][-1]
    base_examples, base_flops = base["examples_seen"][-1], base["flops_total"][-1]
    out: dict[str, Any] = {"strategies": {}, "speedup_examples": {}, "speedup_flops": {}}
    for name, c in curves.items():
        # the untrained model (step 0) does not count as reaching the target: early in
        # training the score dips below its chance-level start
        keep = [i for i, s in enumerate(c["step"]) if s > 0] or list(range(len(c["step"])))
        ys = [c[metric][i] for i in keep]
        ex = to_target([c["examples_seen"][i] for i in keep], ys, target)
        fl = to_target([c["flops_total"][i] for i in keep], ys, target)
        out["strategies"][name] = {
            "examples_to_target": None if ex is None else round(ex),
            "flops_to_target": None if fl is None else float(f"{fl:.4g}"),
            "final_mean_score": round(c["mean_score"][-1], 4),
            "final": {m: round(c[m][-1], 4) for m in TARGET_METRICS if m in c},
        }
        out["speedup_examples"][name] = None if not ex else round(base_examples / ex, 3)
        out["speedup_flops"][name] = None if not fl else round(base_flops / fl, 3)
    return out


# ------------------------------------------------------------------------------ running


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _reference_config(cc: CompareConfig) -> ExperimentConfig:
    """The comparison's reference recipe: the learner's settings with
    ``compare.reference_steps`` (times ``reference_steps_scale``) /
    ``reference_batch_size`` / ``reference_model``, seed 0, IID on
    ``compare.reference_shards`` (curated shards) or else the built-in world's curated
    pool, four evaluations and two checkpoints over its run
    (:func:`~curatorch.experiments.compare_references.reference_recipe`)."""
    c = cc.compare
    return reference_recipe(
        cc.base,
        steps=c.reference_steps_for(c.reference_steps),
        batch_size=c.reference_batch_size,
        model=c.reference_model,
        pool="curated",
        shards=c.reference_shards,
    )


def _listed_reference_config(cc: CompareConfig, ref: ReferenceRun) -> ExperimentConfig:
    """A listed reference's recipe: its own steps / batch size / model, else the
    comparison's reference's, on its pool."""
    c = cc.compare
    return reference_recipe(
        cc.base,
        steps=c.reference_steps_for(ref.steps or c.reference_steps),
        batch_size=ref.batch_size or c.reference_batch_size,
        model=ref.model or c.reference_model,
        pool=ref.pool,
    )


def prepare_reference(
    cc: CompareConfig,
    out: Path,
    *,
    world: World | None,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None] = _log,
) -> tuple[str, dict[str, Any]]:
    """The comparison's reference embedding cache of the training pool or shards
    (:func:`~curatorch.train.reference.obtain_reference`): ``compare.reference`` (a cache
    as is; a curatorch run/checkpoint or an HF model folder embedded once into
    ``OUT/reference-cache``), or one trained on the curated pool or
    ``compare.reference_shards`` into ``OUT/reference`` (:func:`_reference_config`). Both
    are reused when current. ``world`` is ``None`` when no built-in world is needed.
    Returns ``(cache path, info)``."""
    c = cc.compare
    try:
        ref = obtain_reference(
            out,
            data=cc.base.data,
            world=world,
            given=c.reference,
            recipe=None if c.reference else _reference_config(cc),
            device=cc.base.train.device,
            overwrite=overwrite,
            progress=progress,
            log=log,
            key="compare.reference",
        )
    except (OutputDirError, CheckpointError) as exc:
        raise type(exc)(f"{exc} (pass --overwrite to retrain every run)") from exc
    assert ref.cache is not None  # embedded
    return str(ref.cache), ref.info


def _train(cfg: ExperimentConfig, run_dir: Path, **kwargs: Any) -> dict[str, Any]:
    """:func:`train`, with a hint when ``run_dir`` holds a run of another config (or one
    longer than this budget)."""
    try:
        return train(cfg, run_dir, **kwargs)
    except (OutputDirError, CheckpointError) as exc:
        raise type(exc)(f"{exc} (pass --overwrite to retrain every run)") from exc


def _analyze(
    cfg: ExperimentConfig,
    learner: Path,
    reference: str,
    out: Path,
    *,
    world: World,
    seeds: int,
) -> dict[str, Any]:
    """The Figure-2 plots (as ``curatorch jest analyze``) for one super-batch at f = 0.8."""
    from curatorch.experiments.jest_analysis import analyze_selection

    return analyze_selection(
        cfg,
        world=world,
        learner=learner,
        reference=reference,
        out=out,
        filter_ratio=0.8,
        seeds=seeds,
    )


_WORKER_WORLDS: dict[str, World] = {}


def worker_world(data: Any) -> World:
    """The built-in world of the data config ``data``, built once per (worker) process:
    the last one asked for is kept, keyed by the whole data config."""
    key = json.dumps(dataclasses.asdict(data), sort_keys=True)
    if key not in _WORKER_WORLDS:
        _WORKER_WORLDS.clear()
        _WORKER_WORLDS[key] = build_world(data)
    return _WORKER_WORLDS[key]


def _training_pool(
    world: World | None, cfg: ExperimentConfig, index: torch.Tensor | None
) -> PairDataset | None:
    """The pool a run trains on: ``None`` (the config's ``data.pool``) or the positions
    ``index`` of it (a pool cut offline)."""
    if index is None:
        return None
    if world is None:
        raise ValueError("a pool cut from the training pool needs the built-in world")
    return (world.curated if cfg.data.pool == "curated" else world.raw).subset(index)


def _train_job(
    cfg: ExperimentConfig,
    run_dir: Path,
    overwrite: bool,
    job: int,
    steps: Any,
    index: torch.Tensor | None = None,
) -> dict[str, Any]:
    """One run of a comparison in a worker process (the world, when the run needs one, is
    built once per process), on the positions ``index`` of its pool when given; each
    evaluation puts ``(job, step)`` on the ``steps`` queue (``None``: no reports)."""
    world = None
    if needs_world(cfg) or index is not None:
        world = worker_world(cfg.data)
    pool = _training_pool(world, cfg, index)
    return _train(
        cfg,
        run_dir,
        resume=not overwrite,
        overwrite=overwrite,
        progress=False,
        world=world,
        pool=pool,
        on_eval=None if steps is None else (lambda r: steps.put((job, int(r["step"])))),
    )


def _train_in_processes(
    jobs: Sequence[tuple[StrategyRun, int, ExperimentConfig]],
    run_dirs: Mapping[tuple[str, int], Path],
    *,
    workers: int,
    overwrite: bool,
    progress: bool,
    done: Callable[[int, StrategyRun, int, dict[str, Any], float], None],
    pools: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Train ``jobs`` in ``workers`` spawned processes; ``done`` is called as each ends;
    a strategy in ``pools`` trains on those positions of its pool.

    Each run is exactly the run it would be in this process (its own seeds, threads and
    folder); only the order in which they finish changes. A failed run stops the rest.
    With ``progress``, one bar counts the training steps of all runs (updated at every
    evaluation).
    """
    import concurrent.futures as cf
    import multiprocessing
    import queue

    from tqdm.auto import tqdm

    ctx = multiprocessing.get_context("spawn")
    manager = ctx.Manager() if progress else None
    steps = manager.Queue() if manager is not None else None
    bar = tqdm(
        total=sum(cfg.train.steps for _, _, cfg in jobs),
        desc=f"{len(jobs)} runs, {workers} at a time",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    seen = [0] * len(jobs)

    def drain() -> None:
        while steps is not None:
            try:
                job, step = steps.get_nowait()
            except queue.Empty:
                return
            bar.update(max(step - seen[job], 0))
            seen[job] = max(seen[job], step)

    try:
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            started: dict[cf.Future, tuple[int, float]] = {}
            for j, (st, seed, cfg) in enumerate(jobs):
                index = (pools or {}).get(st.name)
                run_dir = run_dirs[(st.name, seed)]
                fut = pool.submit(_train_job, cfg, run_dir, overwrite, j, steps, index)
                started[fut] = (j, time.perf_counter())
            pending, k = set(started), 0
            try:
                while pending:
                    finished, pending = cf.wait(
                        pending, timeout=0.5, return_when=cf.FIRST_COMPLETED
                    )
                    drain()
                    for fut in sorted(finished, key=lambda f: started[f][0]):
                        j, t0 = started[fut]
                        st, seed, cfg = jobs[j]
                        summary = fut.result()
                        k += 1
                        bar.update(max(cfg.train.steps - seen[j], 0))
                        seen[j] = cfg.train.steps
                        bar.clear()
                        done(k, st, seed, summary, time.perf_counter() - t0)
                        bar.refresh()
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
    finally:
        bar.close()
        if manager is not None:
            manager.shutdown()


_Job = tuple[StrategyRun, int, ExperimentConfig]  # (strategy, seed, its run's config)


def _train_jobs(
    jobs: Sequence[_Job],
    run_dirs: Mapping[tuple[str, int], Path],
    *,
    workers: int,
    metric: str,
    world: World | None,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None],
    pools: Mapping[str, PoolCut] | None = None,
) -> dict[tuple[str, int], float]:
    """Train (or reuse) every job into its ``run_dirs`` folder, in ``workers`` processes
    when more than one and more than one job, else one after another in this process;
    logs each run as it ends. A strategy in ``pools`` trains on that cut of its pool
    (recorded in the run's ``pool.json``: a run of another pool is refused first).
    Returns ``{(strategy, seed): wall seconds}``."""
    pools = pools or {}
    for st, seed, _ in jobs:
        cut = pools.get(st.name)
        record = None if cut is None else cut.record
        try:
            check_pool_record(run_dirs[(st.name, seed)], record, overwrite=overwrite)
        except OutputDirError as exc:
            raise OutputDirError(f"{exc} (pass --overwrite to retrain every run)") from exc
    indices = {name: cut.index for name, cut in pools.items()}
    done: dict[tuple[str, int], float] = {}  # (strategy, seed) -> wall seconds

    def finished(k: int, st: StrategyRun, seed: int, summary: dict[str, Any], wall: float) -> None:
        done[(st.name, seed)] = float(summary.get("wall_s", wall))
        log(
            f"[{k}/{len(jobs)}] {st.title} seed {seed}: {metric} "
            f"{summary[metric]:.4f} ({done[(st.name, seed)]:.0f} s)"
        )

    if workers > 1 and len(jobs) > 1:
        _train_in_processes(
            jobs,
            run_dirs,
            workers=workers,
            overwrite=overwrite,
            progress=progress,
            done=finished,
            pools=indices,
        )
    else:
        subsets: dict[str, PairDataset | None] = {}
        for k, (st, seed, cfg) in enumerate(jobs, start=1):
            if st.name not in subsets:
                index = indices.get(st.name)
                subsets[st.name] = _training_pool(world, cfg, index)
            t0 = time.perf_counter()
            summary = _train(
                cfg,
                run_dirs[(st.name, seed)],
                resume=not overwrite,
                overwrite=overwrite,
                progress=progress,
                world=world,
                pool=subsets[st.name],
            )
            finished(k, st, seed, summary, time.perf_counter() - t0)
    return done


def recorded_metrics(
    records: Mapping[int, Sequence[Mapping[str, Any]]], *, metric: str, where: str = "runs"
) -> list[str]:
    """The :data:`TARGET_METRICS` that every evaluation record of every seed holds (the
    built-in evaluation's, or the held-out shards' that exist: retrieval always, zero-shot
    and few-shot with labels). Raises ``ValueError`` naming ``compare.metric`` when
    ``metric`` is not among them."""
    recs = [r for rs in records.values() for r in rs]
    have = [m for m in TARGET_METRICS if recs and all(m in r for r in recs)]
    if metric not in have:
        raise ValueError(
            f"compare.metric = {metric!r} is not in the evaluation records of {where} "
            f"(they hold {have}); choose one of those"
        )
    return have


def _collect_runs(
    strategies: Sequence[StrategyRun],
    seeds: Sequence[int],
    run_dirs: Mapping[tuple[str, int], Path],
    run_cfgs: Mapping[tuple[str, int], ExperimentConfig],
    done: Mapping[tuple[str, int], float],
    *,
    metric: str,
) -> tuple[dict[str, dict[str, list[float]]], dict[str, list[float]], dict[str, Any]]:
    """Per strategy: its seed-averaged curves (:func:`aggregate_runs` of the runs'
    ``metrics.jsonl``, over the scores they record: :func:`recorded_metrics`), the wall
    seconds of each seed's run and the last seed's config.

    Returns ``(curves, walls, configs)``, each keyed by strategy name.
    """
    curves: dict[str, dict[str, list[float]]] = {}
    walls: dict[str, list[float]] = {}
    configs: dict[str, Any] = {}
    for st in strategies:
        records = {seed: _read_metrics(run_dirs[(st.name, seed)]) for seed in seeds}
        walls[st.name] = [done[(st.name, seed)] for seed in seeds]
        configs[st.name] = config_to_dict(run_cfgs[(st.name, seeds[-1])])
        have = recorded_metrics(records, metric=metric, where=f"{st.name}'s runs")
        curves[st.name] = aggregate_runs(records, have)
    return curves, walls, configs


def _plot_curves(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    out: Path,
    *,
    metric: str,
    labels: Mapping[str, str],
    target: float,
    seeds: int,
    baseline: str,
) -> dict[str, str]:
    """Write the ``metric``-vs-examples and -vs-FLOPs plots into ``out`` (the target:
    ``baseline``'s final ``metric``); returns ``{x: file name}``."""
    from curatorch.report.compare import plot_compare_curves

    plots: dict[str, str] = {}
    for x, fname, xlabel in (
        ("examples_seen", "score_vs_examples.png", "training examples seen"),
        ("flops_total", "score_vs_flops.png", "total FLOPs (training + scoring)"),
    ):
        plot_compare_curves(
            curves,
            out / fname,
            x=x,
            metric=metric,
            labels=labels,
            target=target,
            xlabel=xlabel,
            seeds=seeds,
            target_label=f"target ({labels.get(baseline, baseline)} final)",
        )
        plots[x] = fname
    return plots


def _analyze_if_selecting(
    cc: CompareConfig,
    strategies: Sequence[StrategyRun],
    reference: str,
    out: Path,
    *,
    world: World | None,
    plots: dict[str, str],
    log: Callable[[str], None],
) -> dict[str, Any] | None:
    """With ``compare.analyze`` and a strategy that uses the reference, the Figure-2
    analysis of the baseline's first-seed learner (its plots added to ``plots``); else
    ``None``. On shards the analysis is not run, which is said on ``log`` and
    recorded as ``{"skipped": why}`` (the report says it too)."""
    c = cc.compare
    if not (
        c.analyze and any(cc.runs[s.name][c.seeds[0]].strategy.needs_reference for s in strategies)
    ):
        return None
    if world is None or cc.base.data.shards:
        why = (
            "the Figure-2 selection analysis reads the built-in world's pools and concepts; "
            "not run on data.shards (set compare.analyze = false to silence this)"
        )
        log(f"compare.analyze: {why}")
        return {"skipped": why}
    learner = out / "runs" / c.baseline / f"seed{c.seeds[0]}"
    t0 = time.perf_counter()
    analysis = _analyze(cc.base, learner, reference, out, world=world, seeds=c.analyze_seeds)
    analysis["wall_s"] = round(time.perf_counter() - t0, 1)
    for name in (
        "learnability_matrix",
        "learnability_vs_chunks",
        "learnability_vs_filter_ratio",
    ):
        plots[name] = f"{name}.png"
    return analysis


def _results_record(
    cc: CompareConfig,
    *,
    summary: dict[str, Any],
    target: float,
    curves: dict[str, dict[str, list[float]]],
    labels: dict[str, str],
    ref_info: dict[str, Any] | None,
    analysis: dict[str, Any] | None,
    configs: dict[str, Any],
    walls: Mapping[str, Sequence[float]],
    t_start: float,
    command: str,
    plots: dict[str, str],
    listed: PreparedReferences | None = None,
) -> dict[str, Any]:
    """``results.json``: everything the report needs (``wall_s`` counts from ``t_start``);
    with ``listed`` references and pools, their facts and which strategy used which."""
    c = cc.compare
    listed = listed or PreparedReferences()
    active = {s.name: s for s in c.active}
    return {
        "summary": summary,
        "target": {"metric": c.metric, "baseline": c.baseline, "value": round(target, 4)},
        "curves": curves,
        "labels": labels,
        "seeds": list(c.seeds),
        "reference": ref_info,
        "references": listed.infos,
        "pools": {name: cut.facts for name, cut in listed.pools.items()},
        "strategy_references": {n: s.reference for n, s in active.items() if s.reference},
        "strategy_pools": {n: s.pool for n, s in active.items() if s.pool},
        "analysis": analysis,
        "configs": configs,
        "budget": {
            "steps": cc.base.train.steps,
            "batch_size": cc.base.train.batch_size,
            "examples": cc.base.train.steps * cc.base.train.batch_size,
        },
        "run_wall_s": {k: round(sum(v), 1) for k, v in walls.items()},
        "wall_s": round(time.perf_counter() - t_start, 1),
        "command": command,
        "threads": cc.base.train.threads or torch.get_num_threads(),
        "workers": c.workers,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "plots": plots,
    }


def _needs_world(cc: CompareConfig) -> bool:
    """Whether the comparison builds the built-in world: for a run that needs it
    (:func:`~curatorch.train.contrastive.needs_world`: pools, the built-in tokenizer or
    evaluation, a run's own ``strategy.reference = "curated"``), for the reference
    trained on the world's curated pool (neither ``compare.reference`` nor
    ``compare.reference_shards``), or for listed references trained on its pools and
    pools cut from it."""
    c = cc.compare
    if cc.compare.needs_default_reference(cc.runs) and not (c.reference or c.reference_shards):
        return True
    if any(not r.path for r in c.references) or c.pools:
        return True
    return any(needs_world(cc.runs[st.name][seed]) for st in c.active for seed in c.seeds)


def _prepare_all_references(
    cc: CompareConfig,
    out: Path,
    *,
    world: World | None,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None],
) -> tuple[dict[str, str], dict[str, Any] | None, PreparedReferences]:
    """The comparison's own reference (when a strategy uses it), then the listed
    references and pools the active strategies need. Returns ``(cache per strategy that
    selects with a reference, the own reference's facts or None, the listed ones)``."""
    c = cc.compare
    default, ref_info = "", None
    if c.needs_default_reference(cc.runs):
        default, ref_info = prepare_reference(
            cc, out, world=world, overwrite=overwrite, progress=progress, log=log
        )
    order = needed_references(
        c.references,
        c.pools,
        named=[s.reference for s in c.active if s.reference],
        pools_named=[s.pool for s in c.active if s.pool],
    )
    try:
        listed = prepare_references(
            c.references,
            c.pools,
            order=order,
            recipe=lambda ref: _listed_reference_config(cc, ref),
            base=cc.base,
            world=world,
            out=out,
            overwrite=overwrite,
            progress=progress,
            log=log,
        )
    except (OutputDirError, CheckpointError) as exc:
        raise type(exc)(f"{exc} (pass --overwrite to retrain every run)") from exc
    caches = {
        s.name: listed.caches[s.reference] if s.reference else default
        for s in c.active
        if cc.runs[s.name][c.seeds[0]].strategy.needs_reference
    }
    return caches, ref_info, listed


def run_compare(
    cc: CompareConfig,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
    log: Callable[[str], None] = _log,
) -> dict[str, Any]:
    """Run the comparison into ``out`` and write ``report.md``, the plots and
    ``results.json``; returns ``{"summary": <the issue's JSON>, "results": <everything>}``.

    Finished runs in ``out`` with the same config are reused (``overwrite`` retrains all).
    """
    from curatorch.report.compare import compare_markdown, compare_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    c = cc.compare
    world = build_world(cc.base.data) if _needs_world(cc) else None
    caches, ref_info, listed = _prepare_all_references(
        cc, out, world=world, overwrite=overwrite, progress=progress, log=log
    )
    strategies = c.active
    jobs = [
        (st, seed, cc.run_config(st.name, seed, reference=caches.get(st.name, "")))
        for st in strategies
        for seed in c.seeds
    ]
    run_dirs = {(st.name, seed): out / "runs" / st.name / f"seed{seed}" for st, seed, _ in jobs}
    run_cfgs = {(st.name, seed): cfg for st, seed, cfg in jobs}  # with the reference filled in
    done = _train_jobs(
        jobs,
        run_dirs,
        workers=c.workers,
        metric=c.metric,
        world=world,
        overwrite=overwrite,
        progress=progress,
        log=log,
        pools={s.name: listed.pools[s.pool] for s in strategies if s.pool},
    )
    curves, walls, configs = _collect_runs(
        strategies, c.seeds, run_dirs, run_cfgs, done, metric=c.metric
    )
    summary = summarize(curves, baseline=c.baseline, metric=c.metric)
    labels = {s.name: s.title for s in strategies}
    target = curves[c.baseline][c.metric][-1]
    plots = _plot_curves(
        curves,
        out,
        metric=c.metric,
        labels=labels,
        target=target,
        seeds=len(c.seeds),
        baseline=c.baseline,
    )
    analysis = _analyze_if_selecting(
        cc, strategies, next(iter(caches.values()), ""), out, world=world, plots=plots, log=log
    )
    results = _results_record(
        cc,
        summary=summary,
        target=target,
        curves=curves,
        labels=labels,
        ref_info=ref_info,
        analysis=analysis,
        configs=configs,
        walls=walls,
        t_start=t_start,
        command=command,
        plots=plots,
        listed=listed,
    )
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (out / "report.md").write_text(compare_markdown(results), encoding="utf-8")
    return {"summary": summary, "results": results, "table": compare_table(results)}
