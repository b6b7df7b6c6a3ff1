"""The JAX trainer shared by the diff-* JAX packages (config, state, step, loop, checkpoints)."""

from diff_pixel.train.checkpoint import RunCheckpoints, config_differences, package_versions
from diff_pixel.train.config import RESUMABLE_FIELDS, TrainConfig
from diff_pixel.train.logging import MetricsAccumulator, MetricsLog, read_metrics
from diff_pixel.train.sharding import (
    batch_sharding,
    data_mesh,
    mesh_size,
    replicate,
    replicated,
    shard_batch,
)
from diff_pixel.train.state import (
    TrainState,
    ema_decay_at,
    ema_model,
    init_train_state,
    train_model,
)
from diff_pixel.train.step import LossFn, StepFn, make_train_step, train_step_fn
from diff_pixel.train.trainer import (
    SampleFn,
    Trainer,
    default_optimizer,
    describe_model,
    lr_schedule,
    model_from_description,
)

__all__ = [
    "RESUMABLE_FIELDS",
    "LossFn",
    "MetricsAccumulator",
    "MetricsLog",
    "RunCheckpoints",
    "SampleFn",
    "StepFn",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "batch_sharding",
    "config_differences",
    "data_mesh",
    "default_optimizer",
    "describe_model",
    "ema_decay_at",
    "ema_model",
    "init_train_state",
    "lr_schedule",
    "make_train_step",
    "model_from_description",
    "mesh_size",
    "package_versions",
    "read_metrics",
    "replicate",
    "replicated",
    "shard_batch",
    "train_model",
    "train_step_fn",
]
