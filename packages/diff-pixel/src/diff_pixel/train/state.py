"""The train state: one pytree holding everything a step reads and writes.

``TrainState(graph_state, ema, step, key)``:

* ``graph_state = nnx.state((model, optimizer))`` with ``optimizer = nnx.Optimizer(model, tx,
  wrt=nnx.Param)`` — the model's variables and the optax state; the matching ``graphdef`` is
  split once and kept outside the state (static);
* ``ema``: an exponential moving average of the model's ``nnx.Param`` leaves (float32);
* ``step``: int32, the number of completed steps;
* ``key``: the run's raw key data (``jax.random.key_data``); step ``s`` uses
  ``fold_in(key, s)``, so the key itself never changes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

__all__ = ["TrainState", "ema_decay_at", "ema_model", "init_train_state", "train_model"]


class TrainState(NamedTuple):
    """Model + optimizer variables, EMA parameters, step counter and run key (a pytree)."""

    graph_state: Any
    ema: Any
    step: jax.Array
    key: jax.Array

    def as_dict(self) -> dict[str, Any]:
        """The checkpointed form ``{"graph_state", "ema", "step", "key"}``."""
        return {
            "graph_state": self.graph_state,
            "ema": self.ema,
            "step": self.step,
            "key": self.key,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(d["graph_state"], d["ema"], d["step"], d["key"])


def init_train_state(
    model: nnx.Module, tx: optax.GradientTransformation, seed: int
) -> tuple[nnx.GraphDef, TrainState]:
    """Split ``(model, nnx.Optimizer(model, tx, wrt=nnx.Param))`` once into graphdef and state.

    The EMA starts as a copy of the parameters; ``step`` is 0; ``key`` is the key data of
    ``jax.random.key(seed)``.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(
            f"init_train_state: model must be an nnx.Module, got {type(model).__name__}"
        )
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    graphdef, graph_state = nnx.split((model, optimizer))
    ema = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
    key = jax.random.key_data(jax.random.key(seed))
    return graphdef, TrainState(graph_state, ema, jnp.asarray(0, jnp.int32), key)


def ema_decay_at(step: jax.Array | int, decay: float, warmup: bool) -> jax.Array:
    """EMA decay used by the update that follows ``step`` completed steps.

    ``decay_s = min(decay, (1 + s)/(10 + s))`` with warm-up, else ``decay`` (float32). The
    warm-up keeps early EMA weights from being dominated by the initialisation.
    """
    d = jnp.asarray(decay, jnp.float32)
    if not warmup:
        return d
    s = jnp.asarray(step, jnp.float32)
    return jnp.minimum(d, (1.0 + s) / (10.0 + s))


def train_model(graphdef: nnx.GraphDef, state: TrainState) -> nnx.Module:
    """The model with the current (raw) weights (a copy: later donated steps cannot touch it)."""
    model, _ = nnx.merge(graphdef, jax.tree.map(jnp.copy, state.graph_state))
    return model


def ema_model(graphdef: nnx.GraphDef, state: TrainState) -> nnx.Module:
    """The model with the EMA weights as parameters (a copy, like :func:`train_model`)."""
    model, _ = nnx.merge(graphdef, jax.tree.map(jnp.copy, state.graph_state))
    nnx.update(model, jax.tree.map(jnp.copy, state.ema))
    return model
