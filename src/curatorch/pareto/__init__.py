"""MMPareto and baseline gradient integrators.

``mmpareto_combine`` applies the rule to one encoder's per-tensor gradients (a multimodal
and a unimodal objective), ``mmpareto_combine_n`` to a parameter group with any number of
objectives (``min_norm_simplex`` solves the min-norm problem). The multimodal integrators
(``MMPareto``, ``Uniform``, ``MultimodalOnly``, ``MGDA``, ``PCGrad``, ``OGMGE``) fill
``.grad`` of any model's encoder and head parameters from its losses; the group
integrators (``build_group_integrator``) do the same for parameter groups shared by many
objectives (multi-task models, early-fusion trunks). See ``docs/pareto.md``.
"""

from curatorch.pareto.groups import (
    GROUP_INTEGRATORS,
    FirstObjective,
    GroupDiagnostics,
    GroupIntegrator,
    GroupMGDA,
    GroupMMPareto,
    GroupPCGrad,
    GroupUniform,
    build_group_integrator,
    pcgrad_weights,
)
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
from curatorch.pareto.nrule import (
    SOLVERS,
    NWeights,
    min_norm_simplex,
    mmpareto_combine_n,
    mmpareto_weights_n,
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
    "GROUP_INTEGRATORS",
    "INTEGRATORS",
    "MGDA",
    "OGMGE",
    "SCALES",
    "SOLVERS",
    "VJP_MODES",
    "FirstObjective",
    "GradientIntegrator",
    "GroupDiagnostics",
    "GroupIntegrator",
    "GroupMGDA",
    "GroupMMPareto",
    "GroupPCGrad",
    "GroupUniform",
    "MMPareto",
    "ModalityDiagnostics",
    "MultimodalOnly",
    "NWeights",
    "PCGrad",
    "PairStats",
    "SplitFeatures",
    "StepDiagnostics",
    "Uniform",
    "build_group_integrator",
    "build_integrator",
    "min_norm_simplex",
    "min_norm_weights",
    "mmpareto_combine",
    "mmpareto_combine_n",
    "mmpareto_weights",
    "mmpareto_weights_n",
    "pair_stats",
    "pcgrad_weights",
    "split_features",
    "true_class_confidence",
]
