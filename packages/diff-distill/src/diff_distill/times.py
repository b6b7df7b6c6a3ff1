"""Time pairs of moment matching training (spec §5.2).

s ~ U(0, 1) (or sigmoid(N(0, 1)) with ``time_sampling="logit_normal"``, the other port's choice),
u ~ U(0, 1), t = min(s + u/k, 1). So 0 ≤ t − s ≤ 1/k, and t = 1 keeps an atom of mass ≈ 1/(2k)
(the first sampler step is trained). Continuous pairs matter: at s = 0 the moment condition is
empty, so a student trained on grid pairs only gets no signal for its last step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["sample_time_pairs", "time_pairs_from_uniforms"]


def _check_k(func: str, k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{func}: k must be a positive integer, got {k!r}")
    return k


def time_pairs_from_uniforms(
    u_s: jax.Array, u_t: jax.Array, k: int, time_sampling: str = "uniform"
) -> tuple[jax.Array, jax.Array]:
    """``(t, s)`` from uniforms: ``s = u_s`` (uniform) or ``sigmoid(Φ⁻¹(u_s))`` (logit-normal),
    ``t = min(s + u_t/k, 1)``."""
    k = _check_k("time_pairs_from_uniforms", k)
    if time_sampling == "uniform":
        s = u_s
    elif time_sampling == "logit_normal":
        tiny = jnp.finfo(jnp.asarray(u_s).dtype).tiny
        s = jax.nn.sigmoid(jax.scipy.special.ndtri(jnp.clip(u_s, tiny, 1.0 - 1e-7)))
    else:
        raise ValueError(
            "time_pairs_from_uniforms: time_sampling must be one of uniform, logit_normal, "
            f"got {time_sampling!r}"
        )
    t = jnp.minimum(s + u_t / k, 1.0)
    return t, s


def sample_time_pairs(
    key: jax.Array, batch: int, k: int, time_sampling: str = "uniform"
) -> tuple[jax.Array, jax.Array]:
    """``(t, s)``, each of shape ``(batch,)``: s ~ U(0, 1), t = min(s + u/k, 1), u ~ U(0, 1).

    Example:
      >>> t, s = sample_time_pairs(jax.random.key(0), 4, 8)
      >>> bool(jnp.all((t - s >= 0) & (t - s <= 1 / 8)))
      True
    """
    k = _check_k("sample_time_pairs", k)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"sample_time_pairs: batch must be a positive int, got {batch!r}")
    k_s, k_t = jax.random.split(key)
    u_s = jax.random.uniform(k_s, (batch,))
    u_t = jax.random.uniform(k_t, (batch,))
    return time_pairs_from_uniforms(u_s, u_t, k, time_sampling)
