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
    GradientIntegrator,
    MMPareto,
    ModalityDiagnostics,
    MultimodalOnly,
    PCGrad,
    StepDiagnostics,
    Uniform,
    build_integrator,
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
    "GradientIntegrator",
    "MMPareto",
    "ModalityDiagnostics",
    "MultimodalOnly",
    "PCGrad",
    "PairStats",
    "StepDiagnostics",
    "Uniform",
    "build_integrator",
    "min_norm_weights",
    "mmpareto_combine",
    "mmpareto_weights",
    "pair_stats",
    "true_class_confidence",
]
