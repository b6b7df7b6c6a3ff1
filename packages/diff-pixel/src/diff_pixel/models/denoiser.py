"""Adapters from NNX backbones to diff-protocol denoisers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

__all__ = ["NNXDenoiser", "as_denoiser", "split_denoiser"]

_PREDICTIONS = ("eps", "v", "x")


class NNXDenoiser:
    """A deterministic diff-protocol ``Denoiser`` wrapping an NNX model (no dropout).

    Hashes by identity, so diff-core's JAX driver can treat it as a static argument.
    """

    def __init__(self, model: nnx.Module) -> None:
        self.model = model
        self.prediction = getattr(model, "prediction", "v")

    def __call__(self, z: jax.Array, logsnr: jax.Array, cond: Any = None) -> jax.Array:
        return self.model(z, logsnr, cond, dropout_key=None)

    def __repr__(self) -> str:
        return f"NNXDenoiser({type(self.model).__name__}, prediction={self.prediction!r})"


def as_denoiser(model: nnx.Module) -> NNXDenoiser:
    """Wrap ``model(z, logsnr, cond, *, dropout_key)`` as a protocol denoiser (``prediction`` from
    the model, ``"v"`` for every backbone preset)."""
    if not isinstance(model, nnx.Module) or not callable(model):
        raise TypeError(
            f"as_denoiser: model must be a callable nnx.Module, got {type(model).__name__}"
        )
    pred = getattr(model, "prediction", "v")
    if pred not in _PREDICTIONS:
        raise ValueError(
            f"as_denoiser: model.prediction must be one of {_PREDICTIONS}, got {pred!r}"
        )
    return NNXDenoiser(model)


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
