"""The train state: one pytree holding everything a step reads and writes.

``TrainState(variables, opt, ema, count, step, key, extra)``:

* ``variables = nnx.state(model)``: every variable of the model, trained and frozen; the matching
  ``graphdef`` is split once and kept outside the state (static);
* ``opt``: ``{optimizer name: optax state}`` of the variables each named optimiser trains;
* ``ema``: ``{optimizer name: nnx.State}``, the exponential moving average of those variables
  (in their dtype, float32 for every diff-pixel model), for the optimisers that keep one;
* ``count``: ``{optimizer name: int32}``, the updates each optimiser has applied (its EMA warm-up
  reads it; with alternating updates the counts differ from ``step``);
* ``step``: int32, the number of completed steps; ``key``: the run's raw key data
  (``jax.random.key_data``); step ``s`` uses ``fold_in(key, s)``, so the key never changes;
* ``extra``: any pytree of arrays a method keeps between steps (a curriculum position, running
  moments, a preconditioner), checkpointed and restored with the rest.

Variables that no optimiser selects are frozen: no optimiser state, no EMA copy, never updated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from diff_pixel.train.optim import OptimizerSpec

__all__ = [
    "TrainState",
    "check_optimizer_filters",
    "ema_model",
    "init_train_state",
    "state_model",
    "train_model",
]


class TrainState(NamedTuple):
    """Model variables, optimiser states, EMAs, update counts, step, run key and method state."""

    variables: Any
    opt: dict[str, Any]
    ema: dict[str, Any]
    count: dict[str, jax.Array]
    step: jax.Array
    key: jax.Array
    extra: Any = None


def _paths(model: nnx.Module, wrt: Any) -> set[tuple[Any, ...]]:
    return {tuple(p) for p, _ in nnx.to_flat_state(nnx.state(model, wrt))}


def check_optimizer_filters(model: nnx.Module, optimizers: Mapping[str, OptimizerSpec]) -> None:
    """Raise ``ValueError`` when an optimiser selects no variable or two optimisers share one."""
    seen: dict[tuple[Any, ...], str] = {}
    for name, spec in optimizers.items():
        paths = _paths(model, spec.wrt)
        if not paths:
            raise ValueError(
                f"Trainer: optimizer {name!r} must select at least one variable, got none "
                f"(wrt={spec.wrt!r})"
            )
        for p in sorted(paths, key=str):
            if p in seen:
                raise ValueError(
                    f"Trainer: optimizers must select disjoint variables, got "
                    f"{'/'.join(map(str, p))!r} in both {seen[p]!r} and {name!r}"
                )
            seen[p] = name


def init_train_state(
    model: nnx.Module,
    optimizers: Mapping[str, OptimizerSpec],
    seed: int,
    extra: Any = None,
) -> tuple[nnx.GraphDef, TrainState]:
    """Split ``model`` once into graphdef and state and initialise every named optimiser.

    ``optimizers`` must be resolved (``OptimizerSpec.resolved``: ``tx`` set). The EMA of an
    optimiser starts as a copy of its variables; counts and ``step`` are 0; ``key`` is the key
    data of ``jax.random.key(seed)``.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(
            f"init_train_state: model must be an nnx.Module, got {type(model).__name__}"
        )
    check_optimizer_filters(model, optimizers)
    graphdef, variables = nnx.split(model)
    # the state is donated to every step: copy it, so the caller's model keeps its arrays
    variables = jax.tree.map(jnp.copy, variables)
    opt, ema, count = {}, {}, {}
    for name, spec in optimizers.items():
        if spec.tx is None:
            raise ValueError(
                f"init_train_state: optimizer {name!r} must be resolved (tx set), got tx=None"
            )
        trained = nnx.state(model, spec.wrt)
        opt[name] = spec.tx.init(trained)
        if spec.ema_decay is not None:
            ema[name] = jax.tree.map(jnp.copy, trained)
        count[name] = jnp.asarray(0, jnp.int32)
    if extra is not None:
        extra = jax.tree.map(jnp.asarray, extra)
    key = jax.random.key_data(jax.random.key(seed))
    state = TrainState(
        variables=variables,
        opt=opt,
        ema=ema,
        count=count,
        step=jnp.asarray(0, jnp.int32),
        key=key,
        extra=extra,
    )
    return graphdef, state


def state_model(graphdef: nnx.GraphDef, variables: Any, ema: Mapping[str, Any] | None = None):
    """A model (a copy) from ``variables`` with the EMA states in ``ema`` written over them."""
    model = nnx.merge(graphdef, jax.tree.map(jnp.copy, variables))
    for part in (ema or {}).values():
        nnx.update(model, jax.tree.map(jnp.copy, part))
    return model


def train_model(graphdef: nnx.GraphDef, state: TrainState) -> nnx.Module:
    """The model with the current (raw) weights (a copy: later donated steps cannot touch it)."""
    return state_model(graphdef, state.variables)


def ema_model(graphdef: nnx.GraphDef, state: TrainState) -> nnx.Module:
    """The model with every optimiser's EMA weights in place of its raw weights (frozen and
    non-EMA variables as they are; a copy)."""
    return state_model(graphdef, state.variables, state.ema)
