"""One interface for every unlearning method: a loss on diff-pixel's trainer.

An :class:`UnlearnMethod` is what :func:`diff_unlearn.unlearn` hands to
:class:`diff_pixel.Trainer`: the loss of its one phase (signature
``loss(model, batch, key, aux, extra) -> (loss, metrics, extra)``, ``aux = {"original": θ₀}``, the
frozen original model travelling as a jit argument), the filter of the variables it trains, and an
optional ``init`` that computes method state once (SalUn's saliency mask) into the trainer's
checkpointed ``extra``. Methods that update with a combination of gradients rather than the
gradient of one loss (EraseDiff, gradient projection) return a *surrogate*: a loss whose value is
the method's objective and whose gradient is exactly the combined update direction
(:func:`with_gradient`).

Losses are frozen dataclasses, so equal methods hash equally and trainers share compiled steps;
their ``__name__`` spells the hyperparameters, which the run configuration stores, so a resume
with other hyperparameters is refused with the differing field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from diff_unlearn.losses import LossSetup

__all__ = [
    "MethodLoss",
    "UnlearnMethod",
    "batch_part",
    "check_weight",
    "global_dot",
    "param_split",
    "with_gradient",
]


def batch_part(batch: Mapping[str, jax.Array], part: str) -> dict[str, jax.Array]:
    """``{"x", "label", "index"}`` of the ``"forget"`` or ``"retain"`` half of a trainer batch."""
    return {k: batch[f"{part}_{k}"] for k in ("x", "label", "index")}


def check_weight(method: str, name: str, value: Any) -> float:
    """A finite, non-negative loss weight, else ``ValueError`` naming the method and argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{method}: {name} must be >= 0, got {value!r}")
    if value == float("inf"):
        raise ValueError(f"{method}: {name} must be finite, got {value!r}")
    return float(value)


def param_split(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """``(graphdef, params, rest)``: the model's ``nnx.Param`` variables and everything else."""
    return nnx.split(model, nnx.Param, ...)


def global_dot(a: Any, b: Any) -> jax.Array:
    """``⟨a, b⟩`` summed over every leaf of two pytrees of equal structure (float32)."""
    parts = jax.tree.leaves(jax.tree.map(lambda x, y: jnp.vdot(x, y), a, b))
    return jnp.sum(jnp.stack(parts)) if parts else jnp.asarray(0.0, jnp.float32)


def with_gradient(value: jax.Array, params: Any, direction: Any) -> jax.Array:
    """A scalar equal to ``value`` whose gradient with respect to ``params`` is ``direction``.

    ``value + ⟨sg(d), p⟩ − sg(⟨d, p⟩)``: the linear term's derivative is ``d`` exactly, and it
    cancels in the value.
    """
    s = global_dot(jax.lax.stop_gradient(direction), params)
    return jax.lax.stop_gradient(value) + s - jax.lax.stop_gradient(s)


@dataclass(frozen=True)
class MethodLoss:
    """Base of the method losses: ``setup`` plus hyperparameters; ``__name__`` lists them.

    A subclass adds its hyperparameters as fields and defines
    ``__call__(model, batch, key, aux, extra) -> (loss, metrics, extra)``.
    """

    setup: LossSetup

    method: str = field(default="", init=False)

    def _hidden(self) -> tuple[str, ...]:
        """Fields left out of ``__name__`` (a subclass hides the settings of an option that is
        off, so runs made before the option existed keep their name and resume)."""
        return ()

    @property
    def __name__(self) -> str:  # noqa: A003 - read by the trainer's phase description
        hidden = ("setup", "method", *self._hidden())
        hp = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name not in hidden
        )
        return f"{self.method}({hp})"


@dataclass(frozen=True)
class UnlearnMethod:
    """A method for :func:`diff_unlearn.unlearn`.

    Attributes:
      name: the method's name (``distill``, ``salun``, ...).
      loss: the phase loss ``loss(model, batch, key, aux, extra) -> (loss, metrics, extra)``.
      trainable: NNX filter of the variables it trains (default every ``nnx.Param``).
      init: ``init(model, original, task, setup, seed, forget_batch) -> extra``, computed once
        before the first step (``None``: no method state).
      hparams: the hyperparameters, for reports.
    """

    name: str
    loss: Callable[..., tuple]
    trainable: Any = nnx.Param
    init: Callable[..., Any] | None = None
    hparams: tuple[tuple[str, Any], ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **dict(self.hparams)}
