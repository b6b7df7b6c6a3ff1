"""The JAX trainer shared by the diff-* JAX packages.

Named optimisers (:class:`OptimizerSpec`), frozen parts (anything no optimiser selects;
:func:`freeze`), phases for alternating schemes (:class:`Phase`), method state (``extra``), hooks
(:class:`Hook`, :class:`StopAt`), Orbax checkpoints with exact resume, data parallelism over a
``data`` mesh axis, and :func:`fit_to_denoiser` built on it.
"""

from diff_pixel.train.checkpoint import (
    DamagedCheckpointError,
    RunCheckpoints,
    adam_second_moment,
    config_differences,
    flat_arrays,
    package_versions,
)
from diff_pixel.train.config import RESUMABLE_FIELDS, TrainConfig
from diff_pixel.train.fit import fit_to_denoiser
from diff_pixel.train.freeze import Frozen, freeze
from diff_pixel.train.hooks import Hook, PeriodicHook, StopAt
from diff_pixel.train.logging import MetricsAccumulator, MetricsLog, read_metrics
from diff_pixel.train.optim import (
    DEFAULT_OPTIMIZER,
    OptimizerSpec,
    default_optimizer,
    ema_decay_at,
    lr_schedule,
)
from diff_pixel.train.sharding import (
    batch_sharding,
    data_mesh,
    mesh_size,
    replicate,
    replicated,
    shard_batch,
)
from diff_pixel.train.spec import LossFn, Phase, StepSpec
from diff_pixel.train.state import (
    TrainState,
    ema_model,
    init_train_state,
    state_model,
    train_model,
)
from diff_pixel.train.step import StepFn, TrainStep, make_train_step, train_step_fn
from diff_pixel.train.trainer import (
    SAMPLE_KEY,
    Trainer,
    TrainingInterrupted,
    describe_model,
    restore_arrays,
)

__all__ = [
    "DEFAULT_OPTIMIZER",
    "DamagedCheckpointError",
    "RESUMABLE_FIELDS",
    "SAMPLE_KEY",
    "Frozen",
    "Hook",
    "PeriodicHook",
    "LossFn",
    "MetricsAccumulator",
    "MetricsLog",
    "OptimizerSpec",
    "Phase",
    "RunCheckpoints",
    "StepFn",
    "StepSpec",
    "StopAt",
    "TrainConfig",
    "TrainState",
    "TrainStep",
    "Trainer",
    "TrainingInterrupted",
    "adam_second_moment",
    "batch_sharding",
    "config_differences",
    "data_mesh",
    "default_optimizer",
    "describe_model",
    "ema_decay_at",
    "ema_model",
    "fit_to_denoiser",
    "flat_arrays",
    "freeze",
    "init_train_state",
    "lr_schedule",
    "make_train_step",
    "mesh_size",
    "package_versions",
    "read_metrics",
    "replicate",
    "replicated",
    "restore_arrays",
    "shard_batch",
    "state_model",
    "train_model",
    "train_step_fn",
]
