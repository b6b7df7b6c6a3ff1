"""Adapters from NNX models to diff-protocol denoisers.

:class:`NNXDenoiser` is a JAX pytree whose child is the model (Flax NNX modules are pytrees of
their variables), so diff-core's JAX driver traces the weights: a model updated in place, or
swapped for another of the same structure, reaches the next ``sample`` call without
recompiling, and its weights are never baked into the executable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

from diff_protocol import PREDICTIONS

__all__ = ["NNXDenoiser", "as_denoiser", "split_denoiser"]


@jax.tree_util.register_pytree_node_class
class NNXDenoiser:
    """A deterministic diff-protocol ``Denoiser`` over an NNX model (no dropout)."""

    def __init__(self, model: nnx.Module, prediction: str) -> None:
        self.model = model
        self.prediction = prediction

    def __call__(self, z: jax.Array, logsnr: jax.Array, cond: Any = None) -> jax.Array:
        return self.model(z, logsnr, cond, dropout_key=None)

    def tree_flatten(self) -> tuple[tuple[nnx.Module], str]:
        return (self.model,), self.prediction

    @classmethod
    def tree_unflatten(cls, prediction: str, children: tuple[nnx.Module]) -> NNXDenoiser:
        return cls(children[0], prediction)

    def __repr__(self) -> str:
        return f"NNXDenoiser({type(self.model).__name__}, prediction={self.prediction!r})"


def as_denoiser(model: nnx.Module) -> NNXDenoiser:
    """Wrap ``model(z, logsnr, cond, *, dropout_key)`` as a protocol denoiser; ``prediction`` is
    the model's (``"v"`` for every backbone preset, the wrapper's for a parameterisation)."""
    if not isinstance(model, nnx.Module) or not callable(model):
        raise TypeError(
            f"as_denoiser: model must be a callable nnx.Module, got {type(model).__name__}"
        )
    pred = getattr(model, "prediction", "v")
    if pred not in PREDICTIONS:
        raise ValueError(
            f"as_denoiser: model.prediction must be one of {PREDICTIONS}, got {pred!r}"
        )
    return NNXDenoiser(model, pred)


def split_denoiser(
    model: nnx.Module,
) -> tuple[nnx.GraphDef, nnx.State, Callable[..., jax.Array]]:
    """``(graphdef, state, apply)`` with ``apply(state, z, logsnr, cond=None, dropout_key=None)``
    a pure function, for use inside ``jax.jit`` (the state is an argument, not a constant)."""
    if not isinstance(model, nnx.Module):
        raise TypeError(f"split_denoiser: model must be an nnx.Module, got {type(model).__name__}")
    graphdef, state = nnx.split(model)

    def apply(
        state: nnx.State,
        z: jax.Array,
        logsnr: jax.Array,
        cond: Any = None,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        return nnx.merge(graphdef, state)(z, logsnr, cond, dropout_key=dropout_key)

    return graphdef, state, apply
