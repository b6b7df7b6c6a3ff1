r"""Rotary position embedding (RoPE) with axial 1-D / 2-D / 3-D positions.

Su et al., *RoFormer*, arXiv 2104.09864. Pair :math:`i` of a head vector is rotated by the
angle :math:`\theta_i = p_{a(i)} \, \omega_i`, where :math:`a(i)` is the position axis the pair
is assigned to and :math:`\omega_i = \text{base}^{-k/n_a}` for the k-th of the :math:`n_a` pairs
of axis a. The dot product of a rotated query at position p and a rotated key at position p'
depends on p − p' only, so shifting every position by a constant leaves attention unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["grid_positions", "rope", "rope_pairs"]


def rope_pairs(head_dim: int, num_axes: int) -> tuple[int, ...]:
    """Number of rotary pairs per position axis.

    1 axis: all ``head_dim/2`` pairs; 2 axes (rows, columns): half each (rows get the extra pair
    when the count is odd); 3 axes (frame, rows, columns): ``head_dim/8`` pairs for the frame index,
    the rest split between rows and columns.
    """
    if head_dim % 2 or head_dim < 2:
        raise ValueError(f"rope: head_dim must be a positive even integer, got {head_dim}")
    pairs = head_dim // 2
    if num_axes == 1:
        return (pairs,)
    if num_axes == 2:
        return (pairs - pairs // 2, pairs // 2)
    if num_axes == 3:
        nf = max(head_dim // 8, 1)
        rest = pairs - nf
        return (nf, rest - rest // 2, rest // 2)
    raise ValueError(f"rope: positions must have 1, 2 or 3 axes, got {num_axes}")


def grid_positions(height: int, width: int, frames: int | None = None) -> np.ndarray:
    """Positions of a row-major token grid: (h·w, 2) as (row, col), or (F·h·w, 3) as (frame, row,
    col)."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    pos = np.stack([rows.ravel(), cols.ravel()], axis=-1).astype(np.float32)
    if frames is None:
        return pos
    f = np.repeat(np.arange(frames, dtype=np.float32), height * width)[:, None]
    return np.concatenate([f, np.tile(pos, (frames, 1))], axis=-1)


def rope(x: jax.Array, positions: jax.Array | np.ndarray, base: float = 10000.0) -> jax.Array:
    r"""Rotate the pairs ``(x[..., i], x[..., i + D/2])`` of ``x`` by position-dependent angles.

    Args:
      x: (..., T, N, D) queries or keys (N heads of size D).
      positions: (T, A) per-token coordinates on A ∈ {1, 2, 3} axes (see :func:`rope_pairs`).
      base: frequency base.

    Returns:
      The rotated array, same shape and dtype as ``x`` (angles computed in float32).
    """
    positions = jnp.asarray(positions, jnp.float32)
    if positions.ndim != 2 or positions.shape[0] != x.shape[-3]:
        raise ValueError(
            f"rope: positions must have shape ({x.shape[-3]}, A) matching x's token axis, "
            f"got {tuple(positions.shape)}"
        )
    counts = rope_pairs(x.shape[-1], positions.shape[1])
    angles = []
    for axis, n in enumerate(counts):
        if n == 0:
            continue
        freqs = base ** (-jnp.arange(n, dtype=jnp.float32) / n)
        angles.append(positions[:, axis, None] * freqs[None, :])
    theta = jnp.concatenate(angles, axis=-1)[:, None, :]  # (T, 1, D/2)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    half = x.shape[-1] // 2
    x1 = x[..., :half].astype(jnp.float32)
    x2 = x[..., half:].astype(jnp.float32)
    out = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    return out.astype(x.dtype)
