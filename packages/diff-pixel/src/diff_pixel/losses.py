"""Per-example randomness for losses: every draw of example j depends only on (key, j).

A loss draws the time, the noise and the condition dropout of example j from
``example_keys(key, index)[j]`` with ``index`` the global example number, so results do not
depend on the batch split, the device count or the sharding. Streams: ``fold_in(k, 0)`` time,
``fold_in(k, 1)`` noise, ``fold_in(k, 2)`` condition dropout; a package's own draws use
``fold_in(k, 3)`` and above.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from diff_core import timesampling
from diff_protocol import jax_normal

__all__ = ["drop_mask", "example_keys", "noise_batch", "stratified_times", "uniform_times"]


def example_keys(key: jax.Array, index: jax.Array) -> jax.Array:
    """Per-example keys ``vmap(fold_in)(key, index)``; ``index`` is the global example number."""
    index = jnp.asarray(index)
    if index.ndim != 1 or not jnp.issubdtype(index.dtype, jnp.integer):
        raise ValueError(
            f"example_keys: index must be a 1-D integer array, got {index.dtype}{index.shape}"
        )
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, index.astype(jnp.uint32))


def stratified_times(keys: jax.Array, slot: jax.Array | None = None) -> jax.Array:
    """Stratified times :math:`t_i = (\\mathrm{slot}_i + u_i)/B` with :math:`u_i` from example i's
    key.

    ``slot`` is each example's position in the global batch (default ``arange(B)``; it must be a
    permutation of 0..B−1). The stratification is diff-core's ``stratified_times``.
    """
    b = keys.shape[0]
    u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 0), ()))(keys)
    if slot is None:
        return timesampling.stratified_times(u)
    slot = jnp.asarray(slot, jnp.int32)
    # diff-core stratifies by row position; place u_i at row slot_i and read it back.
    u_by_slot = jnp.zeros((b,), u.dtype).at[slot].set(u)
    return timesampling.stratified_times(u_by_slot)[slot]


def noise_batch(keys: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """ε of shape ``(B, *shape[1:])`` with row i drawn from example i's key."""
    return jax.vmap(lambda k: jax_normal(jax.random.fold_in(k, 1), tuple(shape[1:]), dtype))(keys)


def drop_mask(keys: jax.Array, p_uncond: float) -> jax.Array:
    """Label dropout for classifier-free guidance: ``drop_i ~ Bernoulli(p_uncond)`` per example
    key."""
    return jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, 2), p_uncond))(keys)


def uniform_times(keys: jax.Array) -> jax.Array:
    """Independent times :math:`t_i \\sim U(0, 1)` from example i's key (stream 0), through
    diff-core's ``uniform_times``."""
    u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 0), ()))(keys)
    return timesampling.uniform_times(u)
