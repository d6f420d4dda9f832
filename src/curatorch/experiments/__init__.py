"""Experiments that compose the trainer with the method libraries (may import
``curatorch.train``; the method packages never import this one)."""

from curatorch.experiments.scaling import (
    ScalingExperimentConfig,
    ScalingSection,
    alignment_scores,
    load_scaling_config,
    run_scaling_experiment,
    scaling_config_from_dict,
    split_buckets,
)

__all__ = [
    "ScalingExperimentConfig",
    "ScalingSection",
    "alignment_scores",
    "load_scaling_config",
    "run_scaling_experiment",
    "scaling_config_from_dict",
    "split_buckets",
]
