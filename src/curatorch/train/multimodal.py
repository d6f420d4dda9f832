"""Multimodal classification with a gradient integrator (MMPareto and baselines), as a task
of the one loop.

:class:`MultimodalClassifierTask` builds the data (coloured-and-gray digits or ``.npz``
arrays), a :class:`~curatorch.models.MultimodalClassifier` and the integrator named by
``cfg.pareto.method``; each step takes a seeded batch (:class:`EpochSampler`), computes the
multimodal loss and one unimodal loss per modality (cross-entropy: the named terms
``multimodal`` and ``<modality>``) and lets the integrator fill ``.grad``. Gradient
diagnostics (``cos(g_m, g_u)`` per modality, ...) go to ``diagnostics.jsonl`` every
``diag_every`` steps. Everything else (schedule, checkpoints, resume, metrics, DDP ...) is
the loop's (:func:`curatorch.train.train_task`). Same seed, same result on CPU.

Config files are TOML with the sections ``[data] [model] [optim] [train] [pareto]
[compare]``; ``[optim]`` and ``[train]`` are the shared sections with this task's defaults
(SGD with momentum, no clipping, no evaluation at step 0); unknown keys and wrong types are
a :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from curatorch.data import (
    MultimodalDataset,
    MultimodalSplits,
    coloured_gray_digits,
    coloured_gray_profile_digits,
)
from curatorch.data import load_npz_dataset as _load_npz
from curatorch.models import (
    ENCODER_KINDS,
    FUSION_KINDS,
    MultimodalClassifier,
    MultimodalClassifierConfig,
)
from curatorch.pareto import (
    INTEGRATORS,
    SCALES,
    VJP_MODES,
    GradientIntegrator,
    GroupIntegrator,
    build_group_integrator,
    build_integrator,
)
from curatorch.pareto import true_class_confidence as _confidence
from curatorch.train.config import (
    ConfigError,
    ConfigSchema,
    OptimConfig,
    TrainConfig,
)
from curatorch.train.distributed import DistContext
from curatorch.train.loop import train_task
from curatorch.train.records import read_jsonl
from curatorch.train.sampler import EpochSampler
from curatorch.train.task import BaseTask, RunContext, TaskState

__all__ = [
    "DATASETS",
    "PARETO_OPTIM",
    "PARETO_SCHEMA",
    "PARETO_TRAIN",
    "CompareSection",
    "MultimodalClassifierTask",
    "MultimodalDataSection",
    "MultimodalModelSection",
    "ParetoExperimentConfig",
    "ParetoSection",
    "ParetoTrainConfig",
    "build_multimodal_splits",
    "check_early_methods",
    "evaluate_multimodal",
    "load_pareto_config",
    "pareto_config_from_dict",
    "pareto_config_to_dict",
    "train_pareto",
]

# early fusion: the pareto.method names -> group integrators; the trunk's group name
EARLY_METHODS = {
    "uniform": "uniform",
    "multimodal": "first",
    "mgda": "mgda",
    "pcgrad": "pcgrad",
    "mmpareto": "mmpareto",
}
TRUNK = "trunk"

DATASETS = ("coloured_gray_digits", "coloured_gray_profile_digits", "npz")


# ---------------------------------------------------------------------------- config
@dataclass(frozen=True)
class MultimodalDataSection:
    """The data. ``coloured_gray_digits``: built from sklearn's digits (``seed``,
    ``test_fraction``, ``colour_variance`` 0.03 by the benchmark's definition).
    ``coloured_gray_profile_digits``: the same plus a ``profile`` modality ``[1, 16]``
    whose Gaussian noise has std ``profile_noise`` (0.05; ignored by the others). ``npz``:
    ``train_path`` and ``test_path`` files (one array per modality plus ``label_key``).
    ``modalities`` empty means all of the data's modalities."""

    dataset: str = "coloured_gray_digits"
    seed: int = 0
    test_fraction: float = 0.3
    colour_variance: float = 0.03
    profile_noise: float = 0.05
    train_path: str = ""
    test_path: str = ""
    label_key: str = "labels"
    modalities: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(f"data.dataset must be one of {list(DATASETS)}, got {self.dataset!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"data.test_fraction must be in (0, 1), got {self.test_fraction}")
        if not (self.colour_variance >= 0 and math.isfinite(self.colour_variance)):
            raise ConfigError(
                f"data.colour_variance must be a finite number >= 0, got {self.colour_variance}"
            )
        if not (self.profile_noise >= 0 and math.isfinite(self.profile_noise)):
            raise ConfigError(
                f"data.profile_noise must be a finite number >= 0, got {self.profile_noise}"
            )
        if self.dataset == "npz" and not (self.train_path and self.test_path):
            raise ConfigError(
                "data.train_path and data.test_path are required for data.dataset = 'npz', "
                f"got {self.train_path!r} and {self.test_path!r}"
            )
        if len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"data.modalities must be unique, got {list(self.modalities)}")


@dataclass(frozen=True)
class MultimodalModelSection:
    """The classifier. ``fusion = "late"``: one encoder per modality (``encoder``: ``mlp``
    or ``conv``, ``hidden`` width, ``embed_dim`` features), concatenated into the fusion
    head. ``fusion = "early"``: per-modality tokenizers (``patch``: patch side for
    ``(C, H, W)`` inputs, chunk length for ``(C, L)`` ones) and a shared transformer trunk
    (``depth`` blocks, ``num_heads`` heads, MLP width ``hidden``, width ``embed_dim``) over
    the tokens of every modality; ``encoder`` must stay ``mlp`` then."""

    encoder: str = "mlp"
    hidden: int = 128
    embed_dim: int = 64
    fusion: str = "late"
    patch: int = 2
    depth: int = 2
    num_heads: int = 4

    def validate(self) -> None:
        if self.encoder not in ENCODER_KINDS:
            raise ConfigError(
                f"model.encoder must be one of {list(ENCODER_KINDS)}, got {self.encoder!r}"
            )
        if self.fusion not in FUSION_KINDS:
            raise ConfigError(
                f"model.fusion must be one of {list(FUSION_KINDS)}, got {self.fusion!r}"
            )
        if self.fusion == "early" and self.encoder != "mlp":
            raise ConfigError(
                f"model.encoder applies only to model.fusion = 'late', got {self.encoder!r} "
                "with 'early' (the early-fusion model tokenizes every modality)"
            )
        for key in ("hidden", "embed_dim", "patch", "depth", "num_heads"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if self.fusion == "early" and self.embed_dim % self.num_heads:
            raise ConfigError(
                f"model.embed_dim ({self.embed_dim}) must be divisible by model.num_heads "
                f"({self.num_heads}) with early fusion"
            )


# the multimodal task's defaults for the shared sections: SGD with momentum (the MMPareto
# authors' default: Adam-type optimizers would cancel MMPareto's magnitude rule), no
# clipping (it would undo the magnitude rule), no evaluation at step 0
PARETO_OPTIM = OptimConfig(
    name="sgd", lr=0.05, momentum=0.9, beta2=0.999, warmup_steps=20, grad_clip=0.0
)


@dataclass(frozen=True)
class ParetoTrainConfig(TrainConfig):
    """:class:`~curatorch.train.TrainConfig` plus the multimodal task's own cadences:
    ``diag_every`` (gradient diagnostics every so many steps; 0 disables them for methods
    that do not need per-loss gradients) and ``eval_batch_size``."""

    diag_every: int = 5
    eval_batch_size: int = 1024

    def validate(self) -> None:
        super().validate()
        if self.diag_every < 0:
            raise ConfigError(f"train.diag_every must be >= 0, got {self.diag_every}")
        if self.eval_batch_size < 1:
            raise ConfigError(f"train.eval_batch_size must be >= 1, got {self.eval_batch_size}")


PARETO_TRAIN = ParetoTrainConfig(
    steps=600,
    batch_size=64,
    eval_every=200,
    eval_at_start=False,
    checkpoint_every=600,
    keep_checkpoints=1,
)


@dataclass(frozen=True)
class ParetoSection:
    """The gradient integrator: ``method`` (see :data:`curatorch.pareto.INTEGRATORS`),
    MMPareto's ``gamma`` and ``scale``, OGM-GE's ``ogm_alpha``, and how per-loss
    gradients are taken (``vjp``: ``loop`` = one backward per loss, ``batched`` = one
    batched vector-Jacobian product; same results)."""

    method: str = "mmpareto"
    gamma: float = 1.5
    scale: str = "tensor"
    ogm_alpha: float = 0.5
    vjp: str = "loop"

    def validate(self) -> None:
        if self.method not in INTEGRATORS:
            raise ConfigError(
                f"pareto.method must be one of {sorted(INTEGRATORS)}, got {self.method!r}"
            )
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ConfigError(f"pareto.gamma must be a positive number, got {self.gamma}")
        if self.scale not in SCALES:
            raise ConfigError(f"pareto.scale must be one of {list(SCALES)}, got {self.scale!r}")
        if not (math.isfinite(self.ogm_alpha) and self.ogm_alpha >= 0):
            raise ConfigError(f"pareto.ogm_alpha must be >= 0, got {self.ogm_alpha}")
        if self.vjp not in VJP_MODES:
            raise ConfigError(f"pareto.vjp must be one of {list(VJP_MODES)}, got {self.vjp!r}")


@dataclass(frozen=True)
class CompareSection:
    """``curatorch pareto compare``: ``methods`` x ``seeds``, plus each modality in
    ``alone`` trained by itself (one encoder, one head) for every seed."""

    methods: tuple[str, ...] = ("uniform", "multimodal", "mgda", "pcgrad", "ogm_ge", "mmpareto")
    seeds: tuple[int, ...] = (0, 1, 2)
    alone: tuple[str, ...] = ("gray", "colour")

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in INTEGRATORS]
        if unknown or not self.methods:
            raise ConfigError(
                f"compare.methods must be non-empty names from {sorted(INTEGRATORS)}, "
                f"got {list(self.methods)}"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"compare.seeds must be non-empty and unique, got {list(self.seeds)}")


@dataclass(frozen=True)
class ParetoExperimentConfig:
    """A multimodal-classifier experiment: one section per concern."""

    data: MultimodalDataSection = field(default_factory=MultimodalDataSection)
    model: MultimodalModelSection = field(default_factory=MultimodalModelSection)
    optim: OptimConfig = field(default_factory=lambda: PARETO_OPTIM)
    train: ParetoTrainConfig = field(default_factory=lambda: PARETO_TRAIN)
    pareto: ParetoSection = field(default_factory=ParetoSection)
    compare: CompareSection = field(default_factory=CompareSection)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()
        if self.model.fusion == "early":
            check_early_methods("pareto.method", (self.pareto.method,))
            if self.pareto.vjp != "loop":
                raise ConfigError(
                    f"pareto.vjp = {self.pareto.vjp!r} applies only to model.fusion = 'late' "
                    "(the early-fusion trunk's objectives are backpropagated one by one)"
                )


def check_early_methods(key: str, names: Sequence[str]) -> None:
    """ConfigError naming ``key`` when a method in ``names`` has no early-fusion form."""
    bad = [n for n in names if n not in EARLY_METHODS]
    if bad:
        raise ConfigError(
            f"{key} {bad} not available with model.fusion = 'early' (choose from "
            f"{sorted(EARLY_METHODS)}; OGM-GE modulates the per-modality encoders of a "
            "late-fusion model)"
        )


PARETO_SCHEMA: ConfigSchema[ParetoExperimentConfig] = ConfigSchema(ParetoExperimentConfig)


def pareto_config_from_dict(raw: Mapping[str, Any]) -> ParetoExperimentConfig:
    """Build and validate a :class:`ParetoExperimentConfig` from nested dicts."""
    return PARETO_SCHEMA.from_dict(raw)


def pareto_config_to_dict(cfg: ParetoExperimentConfig) -> dict[str, dict[str, Any]]:
    """The config as nested plain dicts (tuples become lists)."""
    return PARETO_SCHEMA.to_dict(cfg)


def load_pareto_config(
    path: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> ParetoExperimentConfig:
    """Read a TOML config, apply ``--set section.key=value`` overrides and validate."""
    return PARETO_SCHEMA.load(path, overrides)


# ------------------------------------------------------------------------------ data
def build_multimodal_splits(cfg: MultimodalDataSection) -> MultimodalSplits:
    """The train and test splits ``cfg`` describes (all modalities)."""
    cfg.validate()
    if cfg.dataset == "coloured_gray_digits":
        return coloured_gray_digits(
            seed=cfg.seed, test_fraction=cfg.test_fraction, colour_variance=cfg.colour_variance
        )
    if cfg.dataset == "coloured_gray_profile_digits":
        return coloured_gray_profile_digits(
            seed=cfg.seed,
            test_fraction=cfg.test_fraction,
            colour_variance=cfg.colour_variance,
            profile_noise=cfg.profile_noise,
        )
    train = _load_npz(cfg.train_path, label_key=cfg.label_key)
    test = _load_npz(cfg.test_path, label_key=cfg.label_key, modalities=train.modalities)
    n_cls = max(train.num_classes, test.num_classes)
    if train.input_shapes() != test.input_shapes():
        raise ConfigError(
            f"data.train_path and data.test_path have different modality shapes: "
            f"{train.input_shapes()} vs {test.input_shapes()}"
        )
    fix = lambda d: dataclasses.replace(d, num_classes=n_cls)  # noqa: E731
    return MultimodalSplits(train=fix(train), test=fix(test))


@torch.no_grad()
def evaluate_multimodal(
    model: MultimodalClassifier,
    dataset: MultimodalDataset,
    *,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Accuracy (fraction in [0, 1]) of the fused prediction (``acc``) and of each
    unimodal head (``acc/<modality>``) on ``dataset``."""
    was_training = model.training
    model.eval()
    correct: dict[str, int] = {}
    for start in range(0, len(dataset), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(dataset)))
        inputs, labels = dataset.batch(idx)
        inputs = {m: x.to(device) for m, x in inputs.items()}
        labels = labels.to(device)
        out = model(inputs)
        preds = {"acc": out["logits"], **{f"acc/{m}": v for m, v in out["unimodal_logits"].items()}}
        for key, logits in preds.items():
            correct[key] = correct.get(key, 0) + int((logits.argmax(1) == labels).sum())
    model.train(was_training)
    return {k: v / max(len(dataset), 1) for k, v in correct.items()}


# ------------------------------------------------------------------------------ task
class MultimodalClassifierTask(BaseTask):
    """A multimodal classifier trained with the gradient integrator ``cfg.pareto.method``.

    Args:
        cfg: the validated config; ``cfg.data.modalities`` picks the modalities (one
            modality trains it alone: its encoder, the fusion head over it and its head).
        splits: prebuilt data for ``cfg.data`` (saves rebuilding it).

    Under torchrun each rank takes its slice of the seeded global batch, the integrator
    works on this rank's per-loss gradients and the loop sums the results over ranks (the
    terms are each rank's share, ``loss / W``): with MMPareto this integrates per rank
    rather than on the global gradients.
    """

    kind = "multimodal"
    uses_ddp = False  # integrators take per-loss gradients with torch.autograd.grad
    headline_metric = "test_acc"

    def __init__(self, cfg: ParetoExperimentConfig, *, splits: MultimodalSplits | None = None):
        cfg.validate()
        self.cfg = cfg
        self.method = cfg.pareto.method
        self.train_cfg, self.optim_cfg = cfg.train, cfg.optim
        self.splits = splits

    def config_dict(self) -> dict[str, Any]:
        return pareto_config_to_dict(self.cfg)

    def prepare_data(self, run: RunContext) -> None:
        cfg = self.cfg
        self.run = run
        splits = self.splits if self.splits is not None else build_multimodal_splits(cfg.data)
        train_set, test_set = splits.train, splits.test
        if cfg.data.modalities:
            try:
                train_set = train_set.select(cfg.data.modalities)
                test_set = test_set.select(cfg.data.modalities)
            except ValueError as exc:
                raise ConfigError(f"data.modalities: {exc}") from exc
        self.train_set, self.test_set = train_set, test_set
        self.mods = train_set.modalities
        if "multimodal" in self.mods:
            raise ConfigError("a modality may not be called 'multimodal' (the fused loss's name)")
        if cfg.model.fusion == "early" and TRUNK in self.mods:
            raise ConfigError(
                f"a modality may not be called {TRUNK!r} with early fusion (the trunk's name)"
            )
        shapes = train_set.input_shapes()
        m = cfg.model
        try:
            self.model_cfg = MultimodalClassifierConfig(
                modalities=self.mods,
                input_shapes=tuple(shapes[mod] for mod in self.mods),
                num_classes=train_set.num_classes,
                encoder=m.encoder,
                hidden=m.hidden,
                embed_dim=m.embed_dim,
                fusion=m.fusion,
                patch=m.patch,
                depth=m.depth,
                num_heads=m.num_heads,
            )
        except ValueError as exc:
            raise ConfigError(f"model (fusion {m.fusion!r}): {exc}") from exc

    def build_model(self) -> torch.nn.Module:
        self.model = MultimodalClassifier(self.model_cfg)
        return self.model

    def model_config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.model_cfg)

    def prepare_training(self, run: RunContext, model: torch.nn.Module) -> None:
        cfg, device = self.cfg, run.device
        self.sampler = EpochSampler(len(self.train_set), seed=cfg.train.seed)
        self.noise_gen = torch.Generator(device=device).manual_seed(cfg.train.seed + 17)
        try:
            if cfg.model.fusion == "early":
                self.integ: GradientIntegrator | GroupIntegrator = self._group_integrator()
            else:
                self.integ = self._encoder_integrator()
        except ValueError as exc:
            raise ConfigError(f"pareto.method {self.method!r}: {exc}") from exc
        self.diagnosis_is_extra = not self.integ.needs_per_loss
        self.forward: torch.nn.Module = self.model

    def _encoder_integrator(self) -> GradientIntegrator:
        """Late fusion: two objectives per encoder (the multimodal integrators)."""
        p = self.cfg.pareto
        options: dict[str, Any] = {"vjp": p.vjp}
        if self.method == "mmpareto":
            options.update(gamma=p.gamma, scale=p.scale)
        elif self.method == "ogm_ge":
            options.update(alpha=p.ogm_alpha, generator=self.noise_gen)
        return build_integrator(
            self.method,
            encoders=self.model.encoder_parameters(),
            heads=self.model.head_parameters(),
            **options,
        )

    def _group_integrator(self) -> GroupIntegrator:
        """Early fusion: each tokenizer has the multimodal loss and its own unimodal loss
        as objectives, the shared trunk has all of them (``1 + M`` objectives)."""
        p = self.cfg.pareto
        if self.method not in EARLY_METHODS:
            raise ValueError(
                f"with model.fusion = 'early' the methods are {sorted(EARLY_METHODS)} "
                "(OGM-GE modulates per-modality encoders of a late-fusion model)"
            )
        groups: dict[str, tuple[Any, tuple[str, ...]]] = {
            mod: (params, ("multimodal", mod))
            for mod, params in self.model.encoder_parameters().items()
        }
        groups[TRUNK] = (self.model.shared_parameters(), ("multimodal", *self.mods))
        options: dict[str, Any] = {}
        if self.method == "mmpareto":
            options.update(gamma=p.gamma, scale=p.scale)
        elif self.method == "pcgrad":
            options.update(generator=self.noise_gen)
        return build_group_integrator(
            EARLY_METHODS[self.method],
            groups=groups,
            heads=self.model.head_parameters(),
            **options,
        )

    def state(self) -> TaskState:
        return TaskState(self.sampler, {"noise": self.noise_gen})

    checkpoint_state = state

    def forward_module(self) -> torch.nn.Module:
        return self.model

    def next_batch(self, step: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        dist: DistContext = self.run.dist
        idx = self.sampler.draw(self.cfg.train.batch_size)  # [b], the same on every rank
        n = len(idx) // dist.world_size
        idx = idx[dist.rank * n : (dist.rank + 1) * n]  # [b / W]
        inputs, labels = self.train_set.batch(idx)
        device = self.run.device
        return {m: x.to(device) for m, x in inputs.items()}, labels.to(device)

    def losses(
        self, batch: tuple[dict[str, torch.Tensor], torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        inputs, labels = batch
        out = self.forward(inputs)
        terms = {"multimodal": F.cross_entropy(out["logits"], labels)}
        terms.update({m: F.cross_entropy(out["unimodal_logits"][m], labels) for m in self.mods})
        self.confidences = (
            {m: _confidence(out["unimodal_logits"][m], labels) for m in self.mods}
            if self.method == "ogm_ge"
            else None
        )
        w = self.run.dist.world_size
        return terms if w == 1 else {k: v / w for k, v in terms.items()}

    def diagnose(self, step: int) -> bool:
        every = self.cfg.train.diag_every
        return every > 0 and (step + 1) % every == 0

    def backward(
        self, terms: Mapping[str, torch.Tensor], *, grad_scale: float, diagnose: bool
    ) -> dict[str, Any]:
        if grad_scale != 1.0:
            raise ValueError("the multimodal task does not use DDP: grad_scale must be 1")
        if isinstance(self.integ, GroupIntegrator):
            gdiag = self.integ.backward(losses=terms, diagnose=diagnose)
            return gdiag.to_dict() if diagnose else {}
        diag = self.integ.backward(
            multimodal_loss=terms["multimodal"],
            unimodal_losses={m: terms[m] for m in self.mods},
            confidences=self.confidences,
            diagnose=diagnose,
        )
        return diag.to_dict() if diagnose else {}

    def evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        scores = evaluate_multimodal(
            self.model,
            self.test_set,
            batch_size=self.cfg.train.eval_batch_size,
            device=self.run.device,
        )
        return {f"test_{k}": v for k, v in scores.items()}

    def summary_extras(self, out: Path) -> dict[str, Any]:
        extras: dict[str, Any] = {"modalities": list(self.mods)}
        diags = read_jsonl(out / "diagnostics.jsonl")
        groups = [*self.mods, TRUNK] if self.cfg.model.fusion == "early" else self.mods
        for m in groups:
            cos = [d[f"cos/{m}"] for d in diags if d.get(f"cos/{m}") is not None]
            if cos:
                extras[f"mean_cos/{m}"] = sum(cos) / len(cos)
                extras[f"conflict_rate/{m}"] = sum(c <= 0 for c in cos) / len(cos)
        return extras


def train_pareto(
    cfg: ParetoExperimentConfig,
    out_dir: str | os.PathLike[str],
    *,
    splits: MultimodalSplits | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train a multimodal classifier: :class:`MultimodalClassifierTask` (``splits``) in the
    one loop; returns the summary, which adds ``modalities`` and, over the diagnosed steps,
    ``mean_cos/<m>`` and ``conflict_rate/<m>`` to the loop's keys.

    ``options`` are :func:`curatorch.train.train_task`'s: ``resume``, ``overwrite``,
    ``progress``, ``on_eval``, ``dist``.
    """
    return train_task(MultimodalClassifierTask(cfg, splits=splits), out_dir, **options)
