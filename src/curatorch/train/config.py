"""Experiment configuration: TOML files mapped onto frozen dataclasses.

A config file has one table per section (``[data]``, ``[model]``, ``[optim]``, ``[train]``,
``[eval]``, ``[strategy]``). Every key is checked against the dataclass fields: unknown keys
and wrong types raise :class:`ConfigError` naming the key (``train.steps``), and each section
validates its values. ``--set section.key=value`` overrides go through the same checks.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from curatorch.data import DataConfig

__all__ = [
    "EXPERIMENT_SECTIONS",
    "OPTIMIZERS",
    "SCORE_NAMES",
    "STRATEGIES",
    "ConfigError",
    "ConfigSchema",
    "EvalConfig",
    "ExperimentConfig",
    "ModelSection",
    "OptimConfig",
    "StrategyConfig",
    "TrainConfig",
    "apply_overrides",
    "coerce_value",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "parse_override_value",
    "read_toml",
    "section_from_dict",
    "sections_from_dict",
    "sections_to_dict",
]


class ConfigError(ValueError):
    """A configuration value, key or file is invalid; the message names it."""


@dataclass(frozen=True)
class ModelSection:
    """Which model to build.

    ``size`` is a name in the model registry (``tiny``, ``small``, ``base``). Image size,
    vocabulary and context length come from the data. ``patch_sizes`` empty means the
    registry default for the image size ((4, 8) for 16 px); ``train_patch_size`` 0 means the
    smallest configured patch size.

    ``source = "hf"`` trains a Hugging Face ``SiglipModel`` or ``CLIPModel`` instead
    (:mod:`curatorch.models.adapters`): ``path`` is a local ``save_pretrained`` folder (its
    weights are the start), or ``hf_config`` a ``config.json`` of one to train from
    scratch; ``size``, ``patch_sizes`` and ``attention`` do not apply. The trained learner
    is saved as a folder that ``from_pretrained`` loads (``OUT/model``).

    ``hf_text_padding`` (SigLIP only, :class:`~curatorch.models.HFSiglipAdapter`): how
    captions reach the text tower. ``"max_length"`` is SigLIP's own convention (pads
    attended to, the last position pooled: right for every pretrained SigLIP);
    ``"masked"`` masks the pads and pools the caption's last token, for a SigLIP trained
    from scratch on short captions. ``""`` (default): the one the ``model.path`` folder
    saved, else ``"max_length"``. The choice is saved with the model, so a reference
    trained with it is read the same way.
    """

    size: str = "tiny"
    patch_sizes: tuple[int, ...] = ()
    train_patch_size: int = 0
    attention: str = "sdpa"
    source: str = "curatorch"
    path: str = ""
    hf_config: str = ""
    hf_text_padding: str = ""

    def validate(self) -> None:
        if self.source not in MODEL_SOURCES:
            raise ConfigError(
                f"model.source must be one of {list(MODEL_SOURCES)}, got {self.source!r}"
            )
        if self.source == "hf":
            if bool(self.path.strip()) == bool(self.hf_config.strip()):
                raise ConfigError(
                    "model.source = 'hf' needs exactly one of model.path (a local "
                    "save_pretrained folder of a SiglipModel or CLIPModel) and model.hf_config "
                    f"(a config.json to train from scratch), got path={self.path!r}, "
                    f"hf_config={self.hf_config!r}"
                )
            if self.patch_sizes or self.train_patch_size:
                raise ConfigError(
                    "model.patch_sizes and model.train_patch_size apply to curatorch's FlexiViT; "
                    "a Hugging Face model has its own patch size"
                )
        elif self.path or self.hf_config or self.hf_text_padding:
            raise ConfigError(
                "model.path, model.hf_config and model.hf_text_padding need model.source = "
                "'hf' (curatorch's own model is built from model.size)"
            )
        if self.hf_text_padding not in ("", *SIGLIP_TEXT_PADDINGS):
            raise ConfigError(
                f"model.hf_text_padding must be one of {['', *SIGLIP_TEXT_PADDINGS]}, "
                f"got {self.hf_text_padding!r}"
            )
        if any(p <= 0 for p in self.patch_sizes):
            raise ConfigError(f"model.patch_sizes must be positive, got {list(self.patch_sizes)}")
        if self.train_patch_size < 0:
            raise ConfigError(f"model.train_patch_size must be >= 0, got {self.train_patch_size}")
        if (
            self.patch_sizes
            and self.train_patch_size
            and (self.train_patch_size not in self.patch_sizes)
        ):
            raise ConfigError(
                f"model.train_patch_size must be one of model.patch_sizes "
                f"{list(self.patch_sizes)}, got {self.train_patch_size}"
            )
        if self.attention not in ("sdpa", "math"):
            raise ConfigError(f"model.attention must be 'sdpa' or 'math', got {self.attention!r}")


MODEL_SOURCES = ("curatorch", "hf")
# HFSiglipAdapter's text conventions (curatorch.models.SIGLIP_TEXT_PADDINGS; kept here so
# reading a config imports no model code)
SIGLIP_TEXT_PADDINGS = ("max_length", "masked")
OPTIMIZERS = ("adamw", "adam", "sgd")


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and learning-rate schedule (linear warmup, then cosine decay to
    ``min_lr_ratio * lr``), shared by every task.

    ``name``: ``adamw``, ``adam`` or ``sgd`` (with ``momentum``). Weight decay applies to
    the parameters the model does not exclude (:func:`curatorch.models.weight_decay_groups`).
    Adam-type optimizers are nearly invariant to the gradient's scale, which cancels
    MMPareto's magnitude rule: the multimodal schema defaults to SGD.
    """

    name: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0

    def validate(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"optim.name must be one of {list(OPTIMIZERS)}, got {self.name!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"optim.lr must be a positive finite number, got {self.lr}")
        for key in ("momentum", "beta1", "beta2"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"optim.{key} must be in [0, 1), got {value}")
        if not (self.eps > 0 and math.isfinite(self.eps)):
            raise ConfigError(f"optim.eps must be a positive finite number, got {self.eps}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(
                f"optim.weight_decay must be a finite number >= 0, got {self.weight_decay}"
            )
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not (self.grad_clip >= 0 and math.isfinite(self.grad_clip)):
            raise ConfigError(
                f"optim.grad_clip must be a finite number >= 0 (0 disables), got {self.grad_clip}"
            )


@dataclass(frozen=True)
class TrainConfig:
    """The training run: length, batch size, cadence of evaluation and checkpoints.

    ``batch_size`` is the global batch over all data-parallel processes. ``precision``
    ``bf16`` trains under bfloat16 autocast. ``on_nonfinite``: a NaN or infinite loss or
    gradient either stops the run naming the step and the last good checkpoint (``stop``)
    or skips that step's update and counts it in ``skipped_steps`` (``skip``).
    ``compile`` wraps the training forward in ``torch.compile``. ``log``: ``jsonl`` writes
    ``metrics.jsonl`` (and ``diagnostics.jsonl``); ``tensorboard`` also writes their
    numeric fields as TensorBoard scalars under ``OUT/tensorboard/`` (the ``tb`` extra).
    ``collective_timeout_s``: under ``torchrun``, how long (seconds) a rank waits in a
    collective for the others; then every waiting rank stops with one line naming the step
    and the ranks that did not answer (see ``docs/scale.md``). It must exceed what rank 0
    does alone while the others wait: an evaluation, training the reference in the run
    folder, writing a checkpoint.
    """

    steps: int = 300
    batch_size: int = 128
    eval_every: int = 100
    eval_at_start: bool = True
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    threads: int = 0
    on_nonfinite: str = "stop"
    compile: bool = False
    log: str = "jsonl"
    collective_timeout_s: float = 1800.0

    def validate(self) -> None:
        for key in ("steps", "batch_size", "eval_every", "checkpoint_every", "keep_checkpoints"):
            value = getattr(self, key)
            if value < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {value}")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"train.precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.on_nonfinite not in ("stop", "skip"):
            raise ConfigError(
                f"train.on_nonfinite must be 'stop' or 'skip', got {self.on_nonfinite!r}"
            )
        if self.threads < 0:
            raise ConfigError(f"train.threads must be >= 0 (0 = torch default), got {self.threads}")
        if not (self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps"):
            raise ConfigError(
                f"train.device must be 'cpu', 'cuda[:N]' or 'mps', got {self.device!r}"
            )
        if not (self.collective_timeout_s > 0 and math.isfinite(self.collective_timeout_s)):
            raise ConfigError(
                f"train.collective_timeout_s must be a finite number of seconds > 0, "
                f"got {self.collective_timeout_s}"
            )
        if self.log not in ("jsonl", "tensorboard"):
            raise ConfigError(
                f"train.log must be 'jsonl' or 'tensorboard' (metrics.jsonl plus TensorBoard "
                f"event files), got {self.log!r}"
            )


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings. The eval sets come from the data config (a built-in world)
    or, with ``shards``, from held-out shards (:func:`curatorch.eval.build_shard_evaluator`):
    ``label_field`` of their ``.json`` (or a ``.cls``) holds the label, ``classes`` is a
    file of class names (one per line; "" = retrieval only), ``templates`` the zero-shot
    prompt templates (a list, or a file with one per line), ``cache`` a cache file of the
    decoded shards ("" = memory only).

    ``fewshot_shots``: labelled examples per class the probe on held-out shards is fit on
    (0: no probe; the built-in worlds' probe sets are fixed by ``data.probe_shots``).
    ``source`` says which: ``"auto"`` (held-out shards when ``shards`` is set, else the
    built-in world's sets; training on ``data.shards`` without ``eval.shards`` is refused,
    since the world's sets have nothing to do with the user's shards), ``"world"`` (the
    built-in world's sets on purpose, e.g. for shards exported from it) or ``"shards"``."""

    batch_size: int = 500
    fewshot_l2: float = 1.0
    fewshot_shots: int = 10
    patch_size: int = 0
    source: str = "auto"
    shards: str = ""
    label_field: str = "label"
    classes: str = ""
    templates: tuple[str, ...] | str = ("a photo of {}.",)
    cache: str = ""

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"eval.batch_size must be >= 1, got {self.batch_size}")
        if not (self.fewshot_l2 >= 0 and math.isfinite(self.fewshot_l2)):
            raise ConfigError(
                f"eval.fewshot_l2 must be a finite number >= 0, got {self.fewshot_l2}"
            )
        if self.patch_size < 0:
            raise ConfigError(
                f"eval.patch_size must be >= 0 (0 = train patch), got {self.patch_size}"
            )
        if self.fewshot_shots < 0:
            raise ConfigError(
                f"eval.fewshot_shots must be >= 0 (0 = no probe on eval shards), got "
                f"{self.fewshot_shots}"
            )
        if self.source not in EVAL_SOURCES:
            raise ConfigError(
                f"eval.source must be one of {list(EVAL_SOURCES)}, got {self.source!r}"
            )
        if self.source == "shards" and not self.shards.strip():
            raise ConfigError("eval.source = 'shards' needs eval.shards (held-out shards)")
        if self.source == "world" and self.shards.strip():
            raise ConfigError(
                "eval.source = 'world' evaluates on the built-in world: eval.shards must be empty"
            )
        self._validate_shards()

    def check_has_eval_data(self, data_shards: str) -> None:
        """Training on ``data.shards`` needs held-out data: ``eval.shards``, or the built-in
        world's sets named on purpose (``eval.source = "world"``). Raises ConfigError."""
        if data_shards and self.source == "auto" and not self.shards.strip():
            raise ConfigError(
                "data.shards trains on your shards, but no held-out data to evaluate on: name "
                "held-out shards in eval.shards (and eval.classes for zero-shot), or set "
                "eval.source = 'world' to evaluate on the built-in world's sets on purpose "
                "(shards exported from it)"
            )

    def on_shards(self) -> bool:
        """Whether evaluation reads held-out shards (else the built-in world's sets)."""
        return self.source == "shards" or (self.source == "auto" and bool(self.shards.strip()))

    def _validate_shards(self) -> None:
        if not self.label_field.strip():
            raise ConfigError(f"eval.label_field must name a .json field, got {self.label_field!r}")
        for key in ("classes", "cache"):
            if getattr(self, key) and not self.shards.strip():
                raise ConfigError(f"eval.{key} is set but eval.shards (held-out shards) is empty")
        if isinstance(self.templates, str):
            if not self.templates.strip():
                raise ConfigError("eval.templates must be a list of templates or a file path")
            return
        if not self.templates:
            raise ConfigError("eval.templates must not be empty")
        for t in self.templates:
            if t.count("{}") != 1:
                raise ConfigError(
                    f"eval.templates: {t!r} must contain '{{}}' once, where the class name goes"
                )


STRATEGIES = ("iid", "independent", "jest", "flexi-jest")
EVAL_SOURCES = ("auto", "world", "shards")
SCORE_NAMES = ("learnability", "easy-reference", "hard-learner")


@dataclass(frozen=True)
class StrategyConfig:
    """How each training batch of ``b = train.batch_size`` examples is chosen.

    - ``iid``: uniformly at random (without replacement within an epoch).
    - ``independent``: draw a super-batch of ``B = b / (1 - filter_ratio)``, score it, keep
      ``b`` examples sampled independently in proportion to ``exp(own score)``.
    - ``jest``: the same super-batch, ``b`` chosen jointly in ``chunks`` chunks
      (Evans et al. 2024).
    - ``flexi-jest``: JEST scoring with the learner at the coarser patch size
      (``score_patch_size``, default the largest configured), and each training batch
      split at random into halves trained at the smallest and the largest patch size.

    ``score`` picks the score matrix (``learnability`` = learner loss - reference loss,
    ``easy-reference`` = -reference loss, ``hard-learner`` = learner loss). ``reference`` is
    a reference embedding cache (``curatorch embed``) or a checkpoint (scored online), or
    ``"curated"``: train a reference on the built-in world's curated pool into
    ``OUT/reference`` (``reference_steps`` steps, 0 = ``train.steps``; otherwise the run's
    own model and optimizer settings) and cache its embeddings in ``OUT/reference-cache``;
    both are reused when the run is resumed.
    ``mode`` ``sample`` draws with the Gumbel-top-k trick, ``topk`` is greedy.
    """

    name: str = "iid"
    score: str = "learnability"
    filter_ratio: float = 0.8
    chunks: int = 16
    mode: str = "sample"
    reference: str = ""
    score_patch_size: int = 0
    reference_steps: int = 0

    @property
    def selects(self) -> bool:
        """Whether batches are chosen from scored super-batches."""
        return self.name != "iid"

    @property
    def needs_reference(self) -> bool:
        return self.selects and self.score in ("learnability", "easy-reference")

    def validate(self, *, require_reference: bool = True) -> None:
        """Raise :class:`ConfigError` naming the first bad field. ``require_reference``
        False defers the check that a strategy needing a reference names one (a comparison
        supplies its own once it exists)."""
        if self.name not in STRATEGIES:
            raise ConfigError(f"strategy.name must be one of {list(STRATEGIES)}, got {self.name!r}")
        if self.score not in SCORE_NAMES:
            raise ConfigError(
                f"strategy.score must be one of {list(SCORE_NAMES)}, got {self.score!r}"
            )
        if not 0.0 <= self.filter_ratio < 1.0:
            raise ConfigError(f"strategy.filter_ratio must be in [0, 1), got {self.filter_ratio}")
        if self.chunks < 1:
            raise ConfigError(f"strategy.chunks must be >= 1, got {self.chunks}")
        if self.mode not in ("sample", "topk"):
            raise ConfigError(f"strategy.mode must be 'sample' or 'topk', got {self.mode!r}")
        if self.score_patch_size < 0:
            raise ConfigError(
                f"strategy.score_patch_size must be >= 0 (0 = default), got {self.score_patch_size}"
            )
        if self.reference_steps < 0:
            raise ConfigError(
                f"strategy.reference_steps must be >= 0 (0 = train.steps), got "
                f"{self.reference_steps}"
            )
        if require_reference and self.needs_reference and not self.reference:
            raise ConfigError(
                f"strategy.reference is required for strategy.name={self.name!r} with "
                f"strategy.score={self.score!r}: a reference embedding cache "
                f"(curatorch embed) or a reference checkpoint"
            )


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: one section per concern."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)

    def validate(self, *, require_reference: bool = True) -> None:
        """Validate every section; raises :class:`ConfigError` naming the field.
        ``require_reference``: see :meth:`StrategyConfig.validate`."""
        try:
            self.data.validate()
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        for section in (self.model, self.optim, self.train, self.eval):
            section.validate()
        self.strategy.validate(require_reference=require_reference)
        st = self.strategy
        if st.selects:
            b = self.train.batch_size
            if st.name == "flexi-jest" and b < 2:
                raise ConfigError(f"train.batch_size must be >= 2 for flexi-jest, got {b}")

    @property
    def super_batch_size(self) -> int:
        """``B``: ``b / (1 - filter_ratio)`` rounded, for selecting strategies; else ``b``."""
        if not self.strategy.selects:
            return self.train.batch_size
        return round(self.train.batch_size / (1.0 - self.strategy.filter_ratio))


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def coerce_value(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against the annotation ``tp`` (``bool``, ``int``, ``float``,
    ``str``, ``tuple[T, ...]`` or a union of them); ints widen to floats, lists to tuples.
    Raises :class:`ConfigError` naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return coerce_value(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key} has the wrong type: got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {type(value).__name__} {value!r}")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(coerce_value(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be a boolean, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {_type_name(tp)}")  # pragma: no cover


Section = type | Any
"""A schema's section: a frozen dataclass type (its own defaults) or an instance of one
(the schema's defaults for it, e.g. SGD for the multimodal task's ``[optim]``)."""


def _section_type(section: Section) -> type:
    return section if isinstance(section, type) else type(section)


def section_from_dict(cls: Section, raw: Mapping[str, Any], prefix: str) -> Any:
    """An instance of the dataclass ``cls`` from a table (or, when ``cls`` is an instance,
    that instance with the table's values replaced); unknown keys, missing required keys
    (fields without a default, when ``cls`` is a type) and wrong types raise
    :class:`ConfigError` naming ``prefix.key``. A field whose type is a dataclass is a
    nested table, parsed the same way (defaults: the default instance's value)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[{prefix}] must be a table, got {type(raw).__name__}")
    default = None if isinstance(cls, type) else cls
    cls = _section_type(cls)
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    for key in raw:
        if key not in names:
            raise ConfigError(
                f"unknown config key {prefix}.{key} (known keys in [{prefix}]: {sorted(names)})"
            )
    if default is None:
        for f in fields:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and f.name not in raw:
                raise ConfigError(f"{prefix}.{f.name} is required")
    kwargs = {}
    for key, value in raw.items():
        if dataclasses.is_dataclass(hints[key]):  # a nested table: its own section
            inner = hints[key] if default is None else getattr(default, key)
            kwargs[key] = section_from_dict(inner, value, f"{prefix}.{key}")
        else:
            kwargs[key] = coerce_value(value, hints[key], f"{prefix}.{key}")
    if default is not None:
        return dataclasses.replace(default, **kwargs)
    return cls(**kwargs)


_section_from_dict = section_from_dict  # the name an earlier version used

_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelSection,
    "optim": OptimConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "strategy": StrategyConfig,
}

EXPERIMENT_SECTIONS: Mapping[str, Section] = types.MappingProxyType(_SECTIONS)
"""The experiment config's sections (``[data]`` ... ``[strategy]``), for schemas that extend
it with tables of their own (``[compare]``, ``[scaling]``)."""


def sections_from_dict(sections: Mapping[str, Section], raw: Mapping[str, Any]) -> dict[str, Any]:
    """One dataclass instance per section (missing tables take the defaults); an unknown
    section raises :class:`ConfigError` naming it."""
    for key in raw:
        if key not in sections:
            raise ConfigError(f"unknown config section [{key}] (known: {sorted(sections)})")
    return {name: section_from_dict(cls, raw.get(name, {}), name) for name, cls in sections.items()}


def sections_to_dict(cfg: Any, sections: Mapping[str, Section]) -> dict[str, dict[str, Any]]:
    """The sections of ``cfg`` as nested plain dicts (tuples become lists)."""

    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v

    return {
        name: {
            f.name: plain(getattr(getattr(cfg, name), f.name))
            for f in dataclasses.fields(_section_type(cls))
        }
        for name, cls in sections.items()
    }


def config_from_dict(raw: Mapping[str, Any]) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from nested dicts (a parsed TOML)."""
    cfg = ExperimentConfig(**sections_from_dict(_SECTIONS, raw))
    cfg.validate()
    return cfg


def config_to_dict(cfg: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """The config as nested plain dicts (tuples become lists), suitable for JSON or TOML."""
    return sections_to_dict(cfg, _SECTIONS)


C = TypeVar("C")


class ConfigSchema(Generic[C]):
    """A config class whose fields are its sections, as one schema: build it from nested
    dicts (validated), turn it back into them, load it from TOML with ``--set``
    overrides. Each field's default instance is that section's defaults (see
    :func:`sections_from_dict`); ``cls`` must have ``validate()``."""

    def __init__(self, cls: type[C]) -> None:
        self.cls = cls
        self.sections: dict[str, Section] = {
            f.name: f.default_factory()  # type: ignore[misc]
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        }

    def from_dict(self, raw: Mapping[str, Any]) -> C:
        """Build and validate the config from nested dicts (a parsed TOML)."""
        cfg = self.cls(**sections_from_dict(self.sections, raw))
        cfg.validate()  # type: ignore[attr-defined]
        return cfg

    def to_dict(self, cfg: C) -> dict[str, dict[str, Any]]:
        """The config as nested plain dicts (tuples become lists)."""
        return sections_to_dict(cfg, self.sections)

    def load(self, path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> C:
        """Read a TOML file, apply ``section.key=value`` overrides and validate; errors
        are a :class:`ConfigError` naming the file and the key."""
        raw = read_toml(path)
        try:
            return self.from_dict(apply_overrides(raw, overrides, self.sections))
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc


def parse_override_value(text: str) -> Any:
    """A ``--set`` value: TOML syntax, or the bare text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string: --set strategy.name=iid


def apply_overrides(
    raw: Mapping[str, Any],
    overrides: Sequence[str],
    sections: Mapping[str, Section] | None = None,
) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a parsed config (values parsed as TOML).

    ``sections`` maps section names to their dataclasses (default: the experiment
    config's). Raises :class:`ConfigError` naming the override when it is malformed or
    names an unknown section or key.
    """
    sections = _SECTIONS if sections is None else sections
    out: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        path, text = item.split("=", 1)
        parts = path.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        section, key = parts
        if section not in sections:
            raise ConfigError(f"unknown config section [{section}] in --set {item!r}")
        known = {f.name for f in dataclasses.fields(_section_type(sections[section]))}
        if key not in known:
            raise ConfigError(f"unknown config key {section}.{key} in --set {item!r}")
        out.setdefault(section, {})[key] = parse_override_value(text.strip())
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing, unreadable or invalid file raises :class:`ConfigError`
    naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a TOML config file, apply ``--set`` overrides and validate.

    Raises :class:`ConfigError` naming the file when it is missing or not valid TOML, and
    naming the key when a value is wrong.
    """
    raw = read_toml(path)
    try:
        return config_from_dict(apply_overrides(raw, overrides))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
