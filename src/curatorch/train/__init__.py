"""Training: configs, the one loop (:func:`train_task`), its tasks (contrastive two-tower,
multimodal classifier), checkpoints, schedule and data order."""

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
from curatorch.train.contrastive import ContrastiveTask, train
from curatorch.train.loop import (
    OutputDirError,
    Progress,
    Trainer,
    TrainingError,
    TrainingInterrupted,
    build_optimizer,
    prepare_run_dir,
    train_task,
)
from curatorch.train.model_config import model_config_for
from curatorch.train.sampler import EpochSampler
from curatorch.train.schedule import lr_at
from curatorch.train.task import BaseTask, RunContext, Task, TaskState

__all__ = [
    "BaseTask",
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "ContrastiveTask",
    "EpochSampler",
    "EvalConfig",
    "ExperimentConfig",
    "ModelSection",
    "OptimConfig",
    "OutputDirError",
    "Progress",
    "RunContext",
    "StrategyConfig",
    "Task",
    "TaskState",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "TrainingInterrupted",
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
    "train_task",
]
