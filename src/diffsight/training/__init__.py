"""The training loop (Accelerate), losses, EMA, exact checkpoints and the training configuration."""

from diffsight.training.checkpoint import Checkpoint, CheckpointError, latest_checkpoint, load_checkpoint
from diffsight.training.config import DataConfig, ModelConfig, TrainConfig, TrainSettings, load_config
from diffsight.training.trainer import Trainer, TrainResult, train

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "TrainResult",
    "TrainSettings",
    "Trainer",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "train",
]
