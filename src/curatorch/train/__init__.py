"""Training: configs, the one loop, checkpoints, schedule and data order."""

from curatorch.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    find_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
)
from curatorch.train.config import (
    ConfigError,
    EvalConfig,
    ExperimentConfig,
    ModelSection,
    OptimConfig,
    StrategyConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)
from curatorch.train.loop import (
    OutputDirError,
    TrainingError,
    build_optimizer,
    prepare_run_dir,
    train,
)
from curatorch.train.model_config import model_config_for
from curatorch.train.sampler import EpochSampler
from curatorch.train.schedule import lr_at

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "EpochSampler",
    "EvalConfig",
    "ExperimentConfig",
    "ModelSection",
    "OptimConfig",
    "OutputDirError",
    "StrategyConfig",
    "TrainConfig",
    "TrainingError",
    "apply_overrides",
    "build_optimizer",
    "config_from_dict",
    "config_to_dict",
    "find_checkpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "load_model_weights",
    "lr_at",
    "model_config_for",
    "prepare_run_dir",
    "save_checkpoint",
    "train",
]
