"""Freezing a network: its parameters become :class:`Frozen` variables.

The trainer's default trainable filter is ``nnx.Param``, so a frozen sub-network inside a model
(a pretrained encoder, an autoencoder, a teacher) gets no gradient, no optimiser state, no weight
decay and no EMA copy, whatever the rest of the run does, without a hand-written filter.
"""

from __future__ import annotations

import jax
from flax import nnx

__all__ = ["Frozen", "freeze"]


class Frozen(nnx.Variable):
    """A parameter that no optimiser trains (not an ``nnx.Param``)."""


def freeze(module: nnx.Module) -> nnx.Module:
    """A copy of ``module`` whose ``nnx.Param`` variables are :class:`Frozen` (same values).

    Example:
      >>> model.encoder = freeze(pretrained_encoder)  # then Trainer(model, ...) trains the rest
    """
    if not isinstance(module, nnx.Module):
        raise TypeError(f"freeze: module must be an nnx.Module, got {type(module).__name__}")
    graphdef, state = nnx.split(module)

    def convert(v: nnx.Variable) -> nnx.Variable:
        return Frozen(v.get_value()) if isinstance(v, nnx.Param) else v

    frozen = jax.tree.map(convert, state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return nnx.merge(graphdef, frozen)
