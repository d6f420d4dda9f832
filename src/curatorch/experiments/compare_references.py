"""Several references in one comparison, and training pools cut by a reference's score:
``[[compare.references]]`` and ``[[compare.pools]]`` of a compare config.

A *listed reference* is trained IID, with the learner's settings, on a pool of the
built-in world: its curated pool, its raw pool, or a pool cut from the training pool by
another reference (below); or it is given (``path``: an embedding cache, or a curatorch
run/checkpoint embedded once). Each one's embeddings of the training pool are cached in
``OUT/references/NAME/reference-cache``::

    [[compare.references]]
    name = "strong"            # folder name; strategies name it (reference = "strong")
    label = "curated pool"     # for tables and plots
    pool = "curated"           # curated | raw | a [[compare.pools]] name
    steps = 250                # 0 = compare.reference_steps (0 = train.steps)
    batch_size = 0             # 0 = compare.reference_batch_size (0 = train.batch_size)
    model = ""                 # "" = compare.reference_model (or model.size)
    path = ""                  # a cache or run/checkpoint instead of training one

A *pool* is the training pool (``data.pool``) filtered offline, as ``curatorch score``
and ``curatorch filter --top-fraction`` would filter it: the top ``keep_fraction`` by a
reference's own-pair score (``cosine`` or ``ref_loss``, computed from its embedding
cache; ties by example key)::

    [[compare.pools]]
    name = "top50"
    filter = "strong"          # the reference whose score ranks the pool
    by = "cosine"              # cosine | ref_loss
    keep_fraction = 0.5

A pool can be a reference's training data (weaker curation than the curated pool) or a
strategy's (``pool = "top50"``: IID or JEST on the offline-filtered pool). A pool is not
part of a run's config, so every run trained on one records it beside its folder
(``RUN.pool.json``: ``runs/NAME/seed0.pool.json``, ``references/NAME/reference.pool.json``);
a run folder trained on another pool is refused, never reused.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curatorch.data import PairDataset, World, load_embedding_cache
from curatorch.train import ConfigError, ExperimentConfig, OutputDirError

__all__ = [
    "POOL_FILE",
    "POOL_SCORES",
    "PoolCut",
    "PoolSpec",
    "PreparedReferences",
    "ReferenceRun",
    "check_pool_record",
    "cut_pool",
    "needed_references",
    "prepare_references",
    "reference_recipe",
    "validate_references",
]

POOL_FILE = "pool.json"  # RUN.pool.json beside a run trained on a pool other than data.pool
POOL_SCORES = ("cosine", "ref_loss")  # the reference-only scores a pool is cut by
_WORLD_POOLS = ("curated", "raw")


@dataclass(frozen=True)
class ReferenceRun:
    """One ``[[compare.references]]`` entry (module docstring): trained on ``pool`` for
    ``steps`` of ``batch_size`` with ``model``, or given as ``path``."""

    name: str
    label: str = ""
    pool: str = "curated"
    steps: int = 0
    batch_size: int = 0
    model: str = ""
    path: str = ""

    @property
    def title(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class PoolSpec:
    """One ``[[compare.pools]]`` entry: the top ``keep_fraction`` of the training pool by
    the reference ``filter``'s score ``by``."""

    name: str
    label: str = ""
    filter: str = ""
    by: str = "cosine"
    keep_fraction: float = 0.5

    @property
    def title(self) -> str:
        return self.label or self.name


def _folder_name(name: str, key: str) -> None:
    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        raise ConfigError(f"{key} must be a non-empty folder name, got {name!r}")


def _unique(names: Sequence[str], key: str) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{key} names must be unique, got {dupes} twice")


def _check_reference(i: int, ref: ReferenceRun, pools: Sequence[str]) -> None:
    key = f"compare.references[{i}]"
    if ref.path:
        trained = [k for k in ("steps", "batch_size", "model") if getattr(ref, k)]
        if ref.pool != "curated":
            trained.append("pool")
        if trained:
            raise ConfigError(
                f"{key} ({ref.name!r}): path gives the reference; {', '.join(trained)} "
                f"describe one to train: set one or the other"
            )
        return
    if ref.pool not in (*_WORLD_POOLS, *pools):
        raise ConfigError(
            f"{key}.pool must be 'curated', 'raw' or a compare.pools name {list(pools)}, "
            f"got {ref.pool!r}"
        )
    for k in ("steps", "batch_size"):
        if getattr(ref, k) < 0:
            raise ConfigError(f"{key}.{k} must be >= 0, got {getattr(ref, k)}")


def _check_pool(i: int, spec: PoolSpec, references: Sequence[str]) -> None:
    key = f"compare.pools[{i}]"
    if spec.name in _WORLD_POOLS:
        raise ConfigError(f"{key}.name {spec.name!r} is a pool of the world; choose another")
    if spec.filter not in references:
        raise ConfigError(
            f"{key}.filter must name a compare.references entry {list(references)}, "
            f"got {spec.filter!r}"
        )
    if spec.by not in POOL_SCORES:
        raise ConfigError(f"{key}.by must be one of {list(POOL_SCORES)}, got {spec.by!r}")
    if not 0.0 < spec.keep_fraction <= 1.0:
        raise ConfigError(f"{key}.keep_fraction must be in (0, 1], got {spec.keep_fraction}")


def _check_acyclic(references: Sequence[ReferenceRun], pools: Sequence[PoolSpec]) -> None:
    """A reference trained on a pool that its own score (through other pools) cuts is a
    cycle: refused, naming the chain."""
    ref_pool = {r.name: r.pool for r in references if not r.path}
    pool_filter = {p.name: p.filter for p in pools}
    for start in ref_pool:
        chain, ref = [start], start
        while ref_pool.get(ref) in pool_filter:
            pool = ref_pool[ref]
            ref = pool_filter[pool]
            chain += [f"pool {pool}", ref]
            if ref == start:
                raise ConfigError(
                    "compare.references and compare.pools form a cycle: "
                    + " -> ".join(chain)
                    + " (a reference cannot be trained on a pool its own score cuts)"
                )
            if len(chain) > 2 * (len(ref_pool) + 1):
                break


def validate_references(references: Sequence[ReferenceRun], pools: Sequence[PoolSpec]) -> None:
    """Check the lists (names, pools, filters, no cycle); :class:`ConfigError` names the
    entry and key."""
    ref_names = [r.name for r in references]
    pool_names = [p.name for p in pools]
    for key, names in (("compare.references", ref_names), ("compare.pools", pool_names)):
        for i, name in enumerate(names):
            _folder_name(name, f"{key}[{i}].name")
        _unique(names, key)
    for i, spec in enumerate(pools):
        _check_pool(i, spec, ref_names)
    for i, ref in enumerate(references):
        _check_reference(i, ref, pool_names)
    _check_acyclic(references, pools)


def needed_references(
    references: Sequence[ReferenceRun],
    pools: Sequence[PoolSpec],
    *,
    named: Iterable[str],
    pools_named: Iterable[str],
) -> tuple[list[str], list[str]]:
    """The references and pools a comparison must prepare for the strategies that name
    the references ``named`` and the pools ``pools_named``, with what those depend on
    (a pool's filter, a reference's pool), in an order where each comes after what it
    needs. Returns ``(reference names, pool names)``."""
    by_ref = {r.name: r for r in references}
    by_pool = {p.name: p for p in pools}
    refs: list[str] = []
    cut: list[str] = []

    def need_pool(name: str) -> None:
        if name in cut:
            return
        need_ref(by_pool[name].filter)
        cut.append(name)

    def need_ref(name: str) -> None:
        if name in refs:
            return
        ref = by_ref[name]
        if not ref.path and ref.pool in by_pool:
            need_pool(ref.pool)
        refs.append(name)

    for name in named:
        need_ref(name)
    for name in pools_named:
        need_pool(name)
    return refs, cut


def reference_recipe(
    base: ExperimentConfig,
    *,
    steps: int,
    batch_size: int,
    model: str,
    pool: str,
    shards: str = "",
) -> ExperimentConfig:
    """A reference's recipe: the learner's settings with these ``steps`` /
    ``batch_size`` / ``model`` (0 / "" = the learner's), seed 0, IID on the world's
    ``pool`` (``curated``, ``raw``, or a pool cut from ``data.pool``: recorded as
    ``data.pool``) or on curated ``shards``; four evaluations and two checkpoints."""
    data_pool = pool if pool in _WORLD_POOLS else base.data.pool
    cfg = dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, pool=data_pool, shards=shards),
        model=dataclasses.replace(base.model, size=model or base.model.size),
        train=dataclasses.replace(
            base.train,
            steps=steps or base.train.steps,
            batch_size=batch_size or base.train.batch_size,
            seed=0,
        ),
        strategy=dataclasses.replace(base.strategy, name="iid", reference=""),
    )
    n = cfg.train.steps
    cfg = dataclasses.replace(
        cfg,
        train=dataclasses.replace(
            cfg.train, eval_every=max(1, n // 4), checkpoint_every=max(1, n // 2)
        ),
        optim=dataclasses.replace(cfg.optim, warmup_steps=min(cfg.optim.warmup_steps, n // 4)),
    )
    cfg.validate()
    return cfg


# ------------------------------------------------------------------------------ pools


@dataclass(frozen=True)
class PoolCut:
    """A pool cut from the training pool: ``index`` ``[n]`` int64 positions in it (in
    pool order) and its facts (``record``: what ``pool.json`` holds)."""

    name: str
    index: torch.Tensor
    facts: dict[str, Any]

    @property
    def record(self) -> dict[str, Any]:
        """What identifies the pool's content: name, size and digest."""
        return {k: self.facts[k] for k in ("pool", "size", "sha256")}


def _clean_fraction(pool: PairDataset) -> float:
    return float((pool.noise == 0).float().mean()) if len(pool) else 0.0


def pool_record(name: str, pool: PairDataset) -> dict[str, Any]:
    """The facts of a training pool: name, size, content digest, clean fraction."""
    from curatorch.curation.score import pool_digest

    return {
        "pool": name,
        "size": len(pool),
        "sha256": pool_digest(pool),
        "clean_fraction": round(_clean_fraction(pool), 4),
    }


def cut_pool(spec: PoolSpec, *, cache: str | Path, pool: PairDataset) -> PoolCut:
    """The top ``spec.keep_fraction`` of ``pool`` by the own-pair score ``spec.by`` of
    the reference whose embedding cache is ``cache`` (:func:`curatorch.curation.pair_scores`
    on the cached embeddings; the rule of :func:`curatorch.curation.keep_mask`, ties by
    the example's key), with the kept set's clean fraction next to the pool's."""
    from curatorch.curation import HIGHER_IS_BETTER, keep_mask, pair_scores
    from curatorch.selection import ModelEmbeddings

    emb = load_embedding_cache(cache)
    image, text = emb.lookup(pool.ids)  # [N, D] float32
    scores = pair_scores(reference=ModelEmbeddings(image, text, emb.logit_scale, emb.logit_bias))[
        spec.by
    ].numpy()
    keys = np.array([f"{i:012d}" for i in pool.ids.tolist()])
    keep = keep_mask(
        scores,
        keys,
        higher_is_better=HIGHER_IS_BETTER[spec.by],
        top_fraction=spec.keep_fraction,
    )
    index = torch.from_numpy(np.flatnonzero(keep)).to(torch.int64)
    kept = scores[keep]
    facts = {
        **pool_record(spec.name, pool.subset(index)),
        "label": spec.title,
        "filter": spec.filter,
        "by": spec.by,
        "keep_fraction": spec.keep_fraction,
        "of": len(pool),
        "source_clean_fraction": round(_clean_fraction(pool), 4),
        "cut": float(kept.min() if HIGHER_IS_BETTER[spec.by] else kept.max()),
    }
    return PoolCut(spec.name, index, facts)


def _pool_words(record: Mapping[str, Any] | None) -> str:
    if record is None:
        return "data.pool"
    return f"pool {record.get('pool')!r} ({record.get('size')} examples)"


def check_pool_record(run: Path, record: Mapping[str, Any] | None, *, overwrite: bool) -> None:
    """Before training into ``run``: a run trained on another pool is refused.

    ``record`` is the pool's :attr:`PoolCut.record` (``None``: the config's own
    ``data.pool``). A started run (``config.json``) whose record ``RUN.pool.json``
    (beside the folder: the loop owns what is inside it) differs, is missing where a pool
    is given or present where none is, raises :class:`~curatorch.train.OutputDirError`
    naming both; ``overwrite`` replaces it. Then the record is written (or removed) to
    say what ``run`` trains on.
    """
    marker = run.parent / f"{run.name}.{POOL_FILE}"
    recorded = None
    if marker.is_file():
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = {"unreadable": str(marker)}
    started = (run / "config.json").is_file()
    want = dict(record) if record is not None else None
    if started and recorded != want and not overwrite:
        raise OutputDirError(
            f"{run} holds a run trained on {_pool_words(recorded)}, not on {_pool_words(want)}"
        )
    if want is None:
        marker.unlink(missing_ok=True)
        return
    run.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(want, indent=1) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------- references


@dataclass
class PreparedReferences:
    """What :func:`prepare_references` made: each reference's cache and facts, and each
    pool's cut."""

    caches: dict[str, str] = dataclasses.field(default_factory=dict)
    infos: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    pools: dict[str, PoolCut] = dataclasses.field(default_factory=dict)


def _reference_pool(
    ref: ReferenceRun, world: World, training_pool: PairDataset, done: PreparedReferences
) -> tuple[PairDataset | None, dict[str, Any]]:
    """The dataset ``ref`` trains on (``None``: the curated pool, as obtain_reference
    trains by default) and its facts."""
    if ref.pool == "curated":
        return None, pool_record("curated", world.curated)
    if ref.pool == "raw":
        return world.raw, pool_record("raw", world.raw)
    cut = done.pools[ref.pool]
    return training_pool.subset(cut.index), cut.facts


def _prepare_one(
    ref: ReferenceRun,
    *,
    recipe: Callable[[ReferenceRun], ExperimentConfig],
    base: ExperimentConfig,
    world: World | None,
    training_pool: PairDataset | None,
    done: PreparedReferences,
    out: Path,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None],
) -> None:
    from curatorch.train.reference import obtain_reference

    folder = out / "references" / ref.name
    common: dict[str, Any] = {
        "data": base.data,
        "world": world,
        "device": base.train.device,
        "overwrite": overwrite,
        "progress": progress,
        "log": lambda msg: log(f"[{ref.name}] {msg}"),
        "key": f"compare.references ({ref.name!r}).path",
    }
    facts: dict[str, Any] = {}
    if ref.path:
        got = obtain_reference(folder, given=ref.path, **common)
    else:
        if world is None or training_pool is None:
            raise ValueError(f"compare.references ({ref.name!r}) trains on the built-in world")
        pool, facts = _reference_pool(ref, world, training_pool, done)
        record = None if pool is None else {k: facts[k] for k in ("pool", "size", "sha256")}
        check_pool_record(folder / "reference", record, overwrite=overwrite)
        got = obtain_reference(folder, recipe=recipe(ref), pool=pool, **common)
    if got.cache is None:  # pragma: no cover - obtain_reference embeds by default
        raise ValueError(f"compare.references ({ref.name!r}): no embedding cache")
    done.caches[ref.name] = str(got.cache)
    done.infos[ref.name] = {
        **got.info,
        "name": ref.name,
        "label": ref.title,
        "pool": ref.pool if not ref.path else "",
        "pool_facts": facts,
    }


def _cut_and_record(
    spec: PoolSpec,
    *,
    cache: str,
    training_pool: PairDataset | None,
    out: Path,
    log: Callable[[str], None],
) -> PoolCut:
    """:func:`cut_pool`, its facts written to ``out/pools/NAME.json`` and logged."""
    if training_pool is None:
        raise ValueError(f"compare.pools ({spec.name!r}) cuts the built-in world's pool")
    t0 = time.perf_counter()
    cut = cut_pool(spec, cache=cache, pool=training_pool)
    f = cut.facts
    f["wall_s"] = round(time.perf_counter() - t0, 1)
    (out / "pools").mkdir(parents=True, exist_ok=True)
    (out / "pools" / f"{spec.name}.json").write_text(
        json.dumps(f, indent=1) + "\n", encoding="utf-8"
    )
    log(
        f"pool {spec.name}: top {f['keep_fraction']:g} by {f['filter']}'s {f['by']}: "
        f"{f['size']} of {f['of']} examples, clean {f['clean_fraction']:.3f} "
        f"(pool {f['source_clean_fraction']:.3f})"
    )
    return cut


def prepare_references(
    references: Sequence[ReferenceRun],
    pools: Sequence[PoolSpec],
    *,
    order: tuple[Sequence[str], Sequence[str]],
    recipe: Callable[[ReferenceRun], ExperimentConfig],
    base: ExperimentConfig,
    world: World | None,
    out: Path,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None],
) -> PreparedReferences:
    """Train (or reuse) and embed the references ``order[0]`` and cut the pools
    ``order[1]`` (from :func:`needed_references`), each after what it needs: a pool once
    its filter's cache exists, a reference once its pool is cut. References go into
    ``out/references/NAME`` (``reference/``, ``reference-cache/``); a pool's facts into
    ``out/pools/NAME.json``."""
    by_ref = {r.name: r for r in references}
    by_pool = {p.name: p for p in pools}
    training_pool = None
    if world is not None:
        training_pool = world.curated if base.data.pool == "curated" else world.raw
    done = PreparedReferences()
    ref_names, pool_names = list(order[0]), list(order[1])
    while ref_names or pool_names:
        ready = [p for p in pool_names if by_pool[p].filter in done.caches]
        for name in ready:
            spec = by_pool[name]
            done.pools[name] = _cut_and_record(
                spec, cache=done.caches[spec.filter], training_pool=training_pool, out=out, log=log
            )
            pool_names.remove(name)
        if not ref_names:
            if pool_names and not ready:  # pragma: no cover - needed_references orders them
                raise ValueError(f"compare.pools {pool_names}: their filters are not prepared")
            continue
        ref = by_ref[ref_names[0]]
        if not ref.path and ref.pool in by_pool and ref.pool not in done.pools:
            if not ready:  # pragma: no cover - needed_references orders them
                raise ValueError(f"compare.references ({ref.name!r}): pool {ref.pool!r} not cut")
            continue
        _prepare_one(
            ref,
            recipe=recipe,
            base=base,
            world=world,
            training_pool=training_pool,
            done=done,
            out=out,
            overwrite=overwrite,
            progress=progress,
            log=log,
        )
        ref_names.pop(0)
    return done
