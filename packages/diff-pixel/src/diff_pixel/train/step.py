"""The pure train step: phases, gradients, named optimisers, EMAs, non-finite guard.

Step ``s`` (``state.step = s`` completed steps before it), for each active phase in order
(:class:`~diff_pixel.train.spec.Phase`):

1. merge the current variables into the model; split off the variables of the phase's
   optimisers (their filters) from the rest (read-only inside the loss);
2. ``(loss, metrics), g = value_and_grad(loss)`` with respect to those variables; ``‖g‖`` is the
   global norm before clipping;
3. each optimiser applies its optax transformation to its part of ``g``; its EMA takes
   ``ema ← d·ema + (1 − d)·θ`` with ``d = min(decay, (1 + c)/(10 + c))`` (warm-up; c = that
   optimiser's update count); its count advances;
4. ``finite = isfinite(loss) ∧ isfinite(‖g‖)`` over the phases; if not finite, every update of
   the step is discarded (``optax.apply_if_finite`` semantics) and only the step counter
   advances, so the data stream moves on; the trainer raises or skips per ``on_nonfinite``.

Optimisers that no active phase names keep their variables and optimiser states bitwise; frozen
variables (selected by no optimiser) never change. ``aux`` carries frozen pytrees (a teacher, an
encoder) as jit *arguments*, never closed-over constants, so they are neither baked into the
executable nor recompiled for new values.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from diff_pixel.models.cost import lowered_cost
from diff_pixel.train.optim import ema_decay_at
from diff_pixel.train.sharding import replicated
from diff_pixel.train.spec import Phase, StepSpec
from diff_pixel.train.state import TrainState

__all__ = ["StepFn", "TrainStep", "make_train_step", "train_step_fn"]

StepFn = Callable[[TrainState, Mapping[str, jax.Array], Any], tuple[TrainState, dict]]


def _prefixed(spec: StepSpec, phase: Phase, key: str) -> str:
    return key if len(spec.phases) == 1 else f"{phase.name}/{key}"


def _check_loss_output(phase: Phase, out: Any) -> tuple[Any, dict, Any]:
    n = 3 if phase.updates_extra else 2
    if not isinstance(out, tuple) or len(out) != n:
        form = "(loss, metrics, extra)" if phase.updates_extra else "(loss, metrics)"
        raise TypeError(
            f"train step: the loss of phase {phase.name or 0!r} must return {form}, got "
            f"{type(out).__name__}{'' if not isinstance(out, tuple) else f' of {len(out)}'}"
        )
    if not isinstance(out[1], Mapping):
        raise TypeError(
            f"train step: the metrics of phase {phase.name or 0!r} must be a dict, got "
            f"{type(out[1]).__name__}"
        )
    return out if phase.updates_extra else (out[0], out[1], None)


def train_step_fn(spec: StepSpec, active: tuple[int, ...]) -> StepFn:
    """The un-jitted step ``step(state, batch, aux) -> (state, metrics)`` running the phases
    ``active`` (indices into ``spec.phases``), as described in the module docstring."""
    if not isinstance(spec, StepSpec):
        raise TypeError(f"train_step_fn: spec must be a StepSpec, got {type(spec).__name__}")
    optimizers = dict(spec.optimizers)

    def step(
        state: TrainState, batch: Mapping[str, jax.Array], aux: Any = None
    ) -> tuple[TrainState, dict]:
        step_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
        variables, extra = state.variables, state.extra
        opt, ema, count = dict(state.opt), dict(state.ema), dict(state.count)
        finite = jnp.asarray(True)
        metrics: dict[str, Any] = {}
        for i in active:
            phase = spec.phases[i]
            key = step_key if len(spec.phases) == 1 else jax.random.fold_in(step_key, i)
            names = phase.optimizers
            model = nnx.merge(spec.graphdef, variables, copy=True)
            graphdef, *parts = nnx.split(model, *[optimizers[n].wrt for n in names], ...)
            trained, rest = parts[:-1], parts[-1]

            def objective(
                trained: list[Any], phase=phase, graphdef=graphdef, rest=rest, key=key, extra=extra
            ):
                m = nnx.merge(graphdef, *trained, rest)
                args = (m, batch, key, aux) + ((extra,) if phase.updates_extra else ())
                loss, mets, new_extra = _check_loss_output(phase, phase.loss(*args))
                return jnp.asarray(loss, jnp.float32), (dict(mets), new_extra)

            if names:
                (loss, (mets, new_extra)), grads = jax.value_and_grad(objective, has_aux=True)(
                    trained
                )
                grad_norm = optax.tree.norm(grads)
            else:
                loss, (mets, new_extra) = objective(trained)
                grads, grad_norm = [], jnp.asarray(0.0, jnp.float32)
            new_trained = []
            for n, g, p in zip(names, grads, trained, strict=True):
                spec_n = optimizers[n]
                updates, opt[n] = spec_n.tx.update(g, opt[n], p)
                p = optax.apply_updates(p, updates)
                new_trained.append(p)
                if n in ema:
                    decay = ema_decay_at(count[n], spec_n.ema_decay, spec_n.ema_warmup)
                    ema[n] = jax.tree.map(lambda e, q, d=decay: d * e + (1.0 - d) * q, ema[n], p)
                    metrics[_prefixed(spec, phase, "ema_decay")] = decay
                count[n] = count[n] + 1
            variables = nnx.state(nnx.merge(graphdef, *new_trained, rest))
            if phase.updates_extra:
                extra = new_extra
            finite = finite & jnp.isfinite(loss) & jnp.isfinite(grad_norm)
            for k, v in mets.items():
                metrics[_prefixed(spec, phase, k)] = v
            metrics[_prefixed(spec, phase, "loss")] = loss
            if names:
                metrics[_prefixed(spec, phase, "grad_norm")] = grad_norm

        def keep_if_finite(new: Any, old: Any) -> Any:
            return jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)

        new_state = TrainState(
            variables=keep_if_finite(variables, state.variables),
            opt=keep_if_finite(opt, state.opt),
            ema=keep_if_finite(ema, state.ema),
            count=keep_if_finite(count, state.count),
            step=state.step + 1,
            key=state.key,
            extra=keep_if_finite(extra, state.extra),
        )
        metrics["finite"] = finite
        return new_state, metrics

    return step


class TrainStep:
    """The jitted step of a :class:`StepSpec`: ``step(state, batch, aux=None, *, step=None)``.

    One executable per set of active phases (compiled on first use; alternating schemes compile
    one per pattern), each ``jax.jit`` of :func:`train_step_fn` with the state donated. ``step``
    is the host's count of completed steps (saves a device read); without it the state's
    counter is read.
    """

    def __init__(self, spec: StepSpec) -> None:
        self.spec = spec
        self._compiled: dict[tuple[int, ...], Callable[..., Any]] = {}

    def jitted(self, active: tuple[int, ...]) -> Callable[..., Any]:
        fn = self._compiled.get(active)
        if fn is None:
            pure = train_step_fn(self.spec, active)
            if self.spec.mesh is None:
                fn = jax.jit(pure, donate_argnums=0)
            else:
                rep = replicated(self.spec.mesh)
                fn = jax.jit(pure, donate_argnums=0, out_shardings=(rep, rep))
            self._compiled[active] = fn
        return fn

    def __call__(
        self,
        state: TrainState,
        batch: Mapping[str, jax.Array],
        aux: Any = None,
        *,
        step: int | None = None,
    ) -> tuple[TrainState, dict]:
        return self._program(state, step)(state, batch, aux)

    def _program(self, state: TrainState, step: int | None) -> Callable[..., Any]:
        """The jitted program of the phases active at ``step`` (default: the state's step)."""
        s = int(jax.device_get(state.step)) if step is None else int(step)
        return self.jitted(self.spec.active(s))

    def cost(
        self,
        state: TrainState,
        batch: Mapping[str, jax.Array],
        aux: Any = None,
        *,
        step: int | None = None,
    ) -> dict[str, float]:
        """XLA's cost analysis of the step that ``__call__`` would run on these arguments, from
        the lowered program (nothing is compiled or run; the state is not consumed): ``flops``,
        ``bytes accessed`` and the other numeric entries XLA reports. For throughput figures
        (TFLOP/s of a benchmark) without reaching into the trainer."""
        return lowered_cost(self._program(state, step).lower(state, batch, aux))


def make_train_step(spec: StepSpec) -> TrainStep:
    """The jitted step of ``spec`` (state donated: the input state is consumed).

    Equal specs (same graphdef, phases, optimisers and mesh) return the same :class:`TrainStep`,
    so trainers of equal models share compiled executables.
    """
    if not isinstance(spec, StepSpec):
        raise TypeError(f"make_train_step: spec must be a StepSpec, got {type(spec).__name__}")
    try:
        return _cached_step(spec)
    except TypeError:  # an unhashable loss or filter: build without the cache
        return TrainStep(spec)


@functools.lru_cache(maxsize=64)
def _cached_step(spec: StepSpec) -> TrainStep:
    return TrainStep(spec)
