"""The pure train step: loss, gradient, clipping + AdamW, EMA, non-finite guard.

Step ``s`` (``state.step = s`` completed steps before it):

1. ``model, optimizer = nnx.merge(graphdef, state.graph_state)``;
2. ``(loss, metrics), g = nnx.value_and_grad(loss_fn)(model, batch, fold_in(key, s), aux)``;
3. ``‖g‖`` (global norm, before clipping); ``optimizer.update(model, g)`` applies the optax
   chain (global-norm clipping, AdamW);
4. ``ema ← d_s·ema + (1 − d_s)·θ`` with ``d_s = min(decay, (1 + s)/(10 + s))`` (warm-up);
5. ``finite = isfinite(loss) ∧ isfinite(‖g‖)``; if not finite the new variables and EMA are
   discarded (``optax.apply_if_finite`` semantics) and only the step counter advances, so the
   data stream moves on; the trainer raises or skips according to ``on_nonfinite``.

``aux`` carries frozen pytrees (a teacher, an encoder) as jit *arguments*, never as
closed-over constants, so they are neither baked into the executable nor recompiled.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from diff_pixel.train.sharding import replicated
from diff_pixel.train.state import TrainState, ema_decay_at

__all__ = ["LossFn", "StepFn", "make_train_step", "train_step_fn"]

LossFn = Callable[[nnx.Module, Mapping[str, jax.Array], jax.Array, Any], tuple[jax.Array, dict]]
StepFn = Callable[[TrainState, Mapping[str, jax.Array], Any], tuple[TrainState, dict]]


def train_step_fn(
    graphdef: nnx.GraphDef,
    loss_fn: LossFn,
    ema_decay: float,
    ema_warmup: bool = True,
) -> StepFn:
    """The un-jitted step ``step(state, batch, aux) -> (state, metrics)`` described above.

    ``metrics`` holds the loss function's metrics plus ``loss``, ``grad_norm``, ``ema_decay``
    and ``finite`` (bool). A replacement built with the same signature can be passed to
    :class:`~diff_pixel.train.Trainer` as ``step_fn`` (e.g. alternating updates of two
    models held in one container module).
    """
    if not callable(loss_fn):
        raise TypeError(f"train_step_fn: loss_fn must be callable, got {type(loss_fn).__name__}")

    def step(
        state: TrainState, batch: Mapping[str, jax.Array], aux: Any = None
    ) -> tuple[TrainState, dict]:
        # copy=True: the merged Variables must not alias state.graph_state, which is still needed
        # unchanged for the non-finite fallback below.
        model, optimizer = nnx.merge(graphdef, state.graph_state, copy=True)
        key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)

        def objective(m: nnx.Module) -> tuple[jax.Array, dict]:
            loss, metrics = loss_fn(m, batch, key, aux)
            return jnp.asarray(loss, jnp.float32), metrics

        (loss, loss_metrics), grads = nnx.value_and_grad(objective, has_aux=True)(model)
        grad_norm = optax.tree.norm(grads)
        optimizer.update(model, grads)
        graph_state = nnx.state((model, optimizer))
        decay = ema_decay_at(state.step, ema_decay, ema_warmup)
        ema = jax.tree.map(
            lambda e, p: decay * e + (1.0 - decay) * p, state.ema, nnx.state(model, nnx.Param)
        )
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

        def keep_if_finite(new: Any, old: Any) -> Any:
            return jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)

        new_state = TrainState(
            graph_state=keep_if_finite(graph_state, state.graph_state),
            ema=keep_if_finite(ema, state.ema),
            step=state.step + 1,
            key=state.key,
        )
        metrics = dict(loss_metrics)
        metrics.update(loss=loss, grad_norm=grad_norm, ema_decay=decay, finite=finite)
        return new_state, metrics

    return step


def make_train_step(
    graphdef: nnx.GraphDef,
    loss_fn: LossFn,
    ema_decay: float,
    ema_warmup: bool = True,
    *,
    mesh: Mesh | None = None,
    step_fn: Callable[..., StepFn] | None = None,
) -> Callable[[TrainState, Mapping[str, jax.Array], Any], tuple[TrainState, dict]]:
    """``jax.jit`` of :func:`train_step_fn` with the state donated (``donate_argnums=0``).

    Args:
      graphdef: from ``nnx.split((model, optimizer))`` (see ``init_train_state``).
      loss_fn: ``loss_fn(model, batch, key, aux) -> (loss, metrics)``.
      ema_decay, ema_warmup: EMA settings.
      mesh: when given, the new state and the metrics are constrained to stay replicated on
        ``mesh`` (the batch is expected sharded over its data axis).
      step_fn: a builder with :func:`train_step_fn`'s signature that replaces the default step.

    Returns:
      ``step(state, batch, aux) -> (state, metrics)``; the input ``state`` is consumed.
    """
    args = (graphdef, loss_fn, float(ema_decay), bool(ema_warmup), mesh, step_fn)
    try:
        return _jitted_step(*args)
    except TypeError:  # an unhashable loss_fn or step_fn: build without the cache
        return _jitted_step.__wrapped__(*args)


@functools.lru_cache(maxsize=64)
def _jitted_step(
    graphdef: nnx.GraphDef,
    loss_fn: LossFn,
    ema_decay: float,
    ema_warmup: bool,
    mesh: Mesh | None,
    step_fn: Callable[..., StepFn] | None,
) -> Callable[[TrainState, Mapping[str, jax.Array], Any], tuple[TrainState, dict]]:
    # Cached on (graphdef, loss_fn, ...): trainers of equal models (a resumed run, the trainers of
    # a test suite) share one jitted function and therefore one compiled executable per input
    # signature, instead of recompiling for every Trainer instance.
    builder = train_step_fn if step_fn is None else step_fn
    pure = builder(graphdef, loss_fn, ema_decay, ema_warmup)
    if mesh is None:
        return jax.jit(pure, donate_argnums=0)
    rep = replicated(mesh)
    return jax.jit(pure, donate_argnums=0, out_shardings=(rep, rep))
