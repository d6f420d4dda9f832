"""MMPareto and baseline gradient integrators for multimodal + unimodal losses.

``mmpareto_combine`` applies the rule to one encoder's per-tensor gradients; the
integrators (``MMPareto``, ``Uniform``, ``MultimodalOnly``, ``MGDA``, ``PCGrad``,
``OGMGE``) fill ``.grad`` of any model's encoder and head parameters from its losses.
See ``docs/pareto.md``.
"""

from curatorch.pareto.integrators import (
    INTEGRATORS,
    MGDA,
    OGMGE,
    VJP_MODES,
    GradientIntegrator,
    MMPareto,
    ModalityDiagnostics,
    MultimodalOnly,
    PCGrad,
    SplitFeatures,
    StepDiagnostics,
    Uniform,
    build_integrator,
    split_features,
    true_class_confidence,
)
from curatorch.pareto.rule import (
    DEFAULT_GAMMA,
    SCALES,
    PairStats,
    min_norm_weights,
    mmpareto_combine,
    mmpareto_weights,
    pair_stats,
)

__all__ = [
    "DEFAULT_GAMMA",
    "INTEGRATORS",
    "MGDA",
    "OGMGE",
    "SCALES",
    "VJP_MODES",
    "GradientIntegrator",
    "MMPareto",
    "ModalityDiagnostics",
    "MultimodalOnly",
    "PCGrad",
    "PairStats",
    "SplitFeatures",
    "StepDiagnostics",
    "Uniform",
    "build_integrator",
    "min_norm_weights",
    "mmpareto_combine",
    "mmpareto_weights",
    "pair_stats",
    "split_features",
    "true_class_confidence",
]
