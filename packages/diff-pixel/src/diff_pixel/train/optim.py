"""Optimisers of a run: the learning-rate schedule, the default transformation and named optimisers.

A run trains one or more *named optimisers*. Each :class:`OptimizerSpec` says which variables it
trains (a Flax NNX filter, default ``nnx.Param``), with which optax transformation (default
:func:`default_optimizer`: global-norm clipping then AdamW with :func:`lr_schedule`) and whether
it keeps an exponential moving average (EMA) of those variables. Variables that no optimiser
selects are frozen: they get no gradient, no optimiser state, no weight decay and no EMA copy
(a teacher, a pretrained encoder, an autoencoder).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from diff_pixel.train.config import TrainConfig

__all__ = ["DEFAULT_OPTIMIZER", "OptimizerSpec", "default_optimizer", "ema_decay_at", "lr_schedule"]

#: Name of the optimiser a run has when none are given.
DEFAULT_OPTIMIZER = "model"


def lr_schedule(config: TrainConfig) -> optax.Schedule:
    """Learning rate at optimiser count ``c`` (updates already applied).

    Linear warm-up ``lr·min(1, (c + 1)/warmup_steps)`` (so the first update is not wasted at
    lr = 0), then ``lr_decay``: ``"constant"``; ``"cosine"``
    ``lr·½(1 + cos(π·(c − w)/(steps − w)))`` down to 0 at ``steps``; ``"linear"``
    ``lr·(1 − (c − w)/(steps − w))`` down to 0 at ``steps``.
    """
    lr, warm, total = float(config.lr), int(config.warmup_steps), int(config.steps)

    def schedule(count: Any) -> jax.Array:
        c = jnp.asarray(count, jnp.float32)
        ramp = jnp.minimum(1.0, (c + 1.0) / warm) if warm > 0 else jnp.asarray(1.0, jnp.float32)
        if config.lr_decay == "constant":
            return lr * ramp
        frac = jnp.clip((c - warm) / max(total - warm, 1), 0.0, 1.0)
        if config.lr_decay == "cosine":
            return lr * ramp * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
        return lr * ramp * (1.0 - frac)

    return schedule


def default_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping (``grad_clip > 0``) followed by AdamW with :func:`lr_schedule`.

    Equal optimiser settings return the identical transformation object, so trainers of equal
    models share compiled steps.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"default_optimizer: config must be a TrainConfig, got {type(config).__name__}"
        )
    fields = ("lr", "warmup_steps", "lr_decay", "b1", "b2", "eps", "weight_decay", "grad_clip")
    key = tuple((f, getattr(config, f)) for f in fields)
    steps = config.steps if config.lr_decay != "constant" else 0
    return _optimizer(key + (("steps", steps),))


@functools.lru_cache(maxsize=64)
def _optimizer(key: tuple[tuple[str, Any], ...]) -> optax.GradientTransformation:
    config = TrainConfig(batch_size=1, **dict(key))
    adamw = optax.adamw(
        lr_schedule(config),
        b1=config.b1,
        b2=config.b2,
        eps=config.eps,
        weight_decay=config.weight_decay,
    )
    if config.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(config.grad_clip), adamw)
    return adamw


def ema_decay_at(step: jax.Array | int, decay: float, warmup: bool) -> jax.Array:
    """EMA decay used by the update that follows ``step`` completed updates.

    ``decay_s = min(decay, (1 + s)/(10 + s))`` with warm-up, else ``decay`` (float32). The
    warm-up keeps early EMA weights from being dominated by the initialisation.
    """
    d = jnp.asarray(decay, jnp.float32)
    if not warmup:
        return d
    s = jnp.asarray(step, jnp.float32)
    return jnp.minimum(d, (1.0 + s) / (10.0 + s))


@dataclass(frozen=True)
class OptimizerSpec:
    """One named optimiser of a run.

    Attributes:
      wrt: Flax NNX filter selecting the variables this optimiser trains (default ``nnx.Param``),
        e.g. ``nnx.All(nnx.Param, nnx.PathContains("student"))``. The filters of a run's
        optimisers must select disjoint variables.
      tx: the optax transformation; ``None`` uses :func:`default_optimizer` of the run's
        :class:`TrainConfig`.
      ema_decay: EMA decay of this optimiser's variables; ``"config"`` takes the run's
        ``TrainConfig.ema_decay``; ``None`` keeps no EMA.
      ema_warmup: use ``min(decay, (1 + s)/(10 + s))`` with s this optimiser's update count;
        ``None`` takes the run's ``TrainConfig.ema_warmup``.
    """

    wrt: Any = nnx.Param
    tx: optax.GradientTransformation | None = None
    ema_decay: float | str | None = "config"
    ema_warmup: bool | None = None

    def __post_init__(self) -> None:
        if self.tx is not None and not (hasattr(self.tx, "init") and hasattr(self.tx, "update")):
            raise TypeError(
                f"OptimizerSpec: tx must be an optax GradientTransformation or None, "
                f"got {type(self.tx).__name__}"
            )
        d = self.ema_decay
        if not (d is None or d == "config"):
            if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d < 1.0:
                raise ValueError(
                    f"OptimizerSpec: ema_decay must be 'config', None or a float in [0, 1), "
                    f"got {d!r}"
                )
        if self.ema_warmup is not None and not isinstance(self.ema_warmup, bool):
            raise TypeError(
                f"OptimizerSpec: ema_warmup must be a bool or None, got {self.ema_warmup!r}"
            )

    def resolved(self, config: TrainConfig) -> OptimizerSpec:
        """The spec with the run's defaults filled in (tx, EMA decay and warm-up)."""
        tx = default_optimizer(config) if self.tx is None else self.tx
        decay = config.ema_decay if self.ema_decay == "config" else self.ema_decay
        warm = config.ema_warmup if self.ema_warmup is None else self.ema_warmup
        return dataclasses.replace(
            self, tx=tx, ema_decay=None if decay is None else float(decay), ema_warmup=warm
        )

    def describe(self) -> dict[str, Any]:
        """JSON-able summary stored in checkpoints (the filter by its repr)."""
        decay = self.ema_decay
        if isinstance(decay, float) and not math.isfinite(decay):  # pragma: no cover - validated
            decay = str(decay)
        return {
            "wrt": repr(self.wrt),
            "tx": "default" if self.tx is None else "custom",
            "ema_decay": decay,
            "ema_warmup": self.ema_warmup,
        }
