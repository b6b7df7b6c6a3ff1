"""Entropy models: Ballé's factorized prior and the conditional Gaussian (arXiv 1802.01436).

**Factorized prior** (appendix 6.1 of arXiv 1802.01436): per channel a univariate cumulative
``c(x) = sigmoid(f_K ∘ … ∘ f_1(x))`` with ``f_k(x) = g_k(softplus(H_k) x + b_k)`` and
``g_k(x) = x + tanh(a_k) ⊙ tanh(x)`` for k < K. The likelihood of an integer bin is
``|sigmoid(s·u) − sigmoid(s·l)|`` with ``u, l`` the logits at ``z ± ½`` and ``s = −sign(u + l)``
(computed in the far tail without cancellation).

**Gaussian conditional**: ``p(y | μ, σ) = Φ((½ − |y − μ|)/σ) − Φ((−½ − |y − μ|)/σ)``.

Both are floored at ``likelihood_min = 2^-24``, the smallest probability constriction's 24-bit
models give a symbol, so the estimate never charges more than the coder does (our default;
CompressAI uses 1e-9).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_protocol import jax_uniform

__all__ = [
    "LIKELIHOOD_MIN",
    "FactorizedPrior",
    "GaussianConditional",
    "factorized_logits_np",
    "gaussian_likelihood_np",
    "scale_index",
    "scale_table",
]

LIKELIHOOD_MIN = 2.0**-24


def _lower_bound(x: jax.Array, bound: float) -> jax.Array:
    """``max(x, bound)`` with the gradient passed where x < bound pushes upward (CompressAI's
    ``LowerBound``), so a floored likelihood still trains."""
    y = jnp.maximum(x, bound)
    return x + jax.lax.stop_gradient(y - x)


class FactorizedPrior(nnx.Module):
    """Ballé's non-parametric univariate density, one per channel.

    Args:
      channels: number of channels C (last axis of the inputs).
      filters: hidden widths of the cumulative's network.
      init_scale: initial width of the density (as CompressAI's ``EntropyBottleneck``).
      likelihood_min: floor of the bin likelihood.
    """

    def __init__(
        self,
        channels: int,
        filters: tuple[int, ...] = (3, 3, 3),
        init_scale: float = 10.0,
        likelihood_min: float = LIKELIHOOD_MIN,
        *,
        rngs: nnx.Rngs,
    ) -> None:
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"FactorizedPrior: channels must be a positive int, got {channels!r}")
        self.channels = channels
        self.filters = tuple(int(f) for f in filters)
        self.likelihood_min = float(likelihood_min)
        widths = (1, *self.filters, 1)
        scale = init_scale ** (1.0 / (len(self.filters) + 1))
        mats, biases, factors = [], [], []
        for i in range(len(self.filters) + 1):
            init = math.log(math.expm1(1.0 / scale / widths[i + 1]))
            mats.append(nnx.Param(jnp.full((channels, widths[i + 1], widths[i]), init)))
            key = rngs.params()
            biases.append(
                nnx.Param(jax_uniform(key, (channels, widths[i + 1], 1), minval=-0.5, maxval=0.5))
            )
            if i < len(self.filters):
                factors.append(nnx.Param(jnp.zeros((channels, widths[i + 1], 1))))
        self.matrices = nnx.List(mats)
        self.biases = nnx.List(biases)
        self.factors = nnx.List(factors)

    def logits_cumulative(self, x: jax.Array) -> jax.Array:
        """Logit of ``c`` at ``x`` of shape (C, 1, n) → (C, 1, n)."""
        logits = x
        for i in range(len(self.filters) + 1):
            logits = jnp.matmul(jax.nn.softplus(self.matrices[i][...]), logits)
            logits = logits + self.biases[i][...]
            if i < len(self.filters):
                logits = logits + jnp.tanh(self.factors[i][...]) * jnp.tanh(logits)
        return logits

    def numpy_params(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """The parameters as float64 host arrays (for :func:`factorized_logits_np`)."""
        out = []
        for i in range(len(self.filters) + 1):
            fac = np.asarray(self.factors[i][...], np.float64) if i < len(self.filters) else None
            out.append(
                (
                    np.asarray(self.matrices[i][...], np.float64),
                    np.asarray(self.biases[i][...], np.float64),
                    fac,
                )
            )
        return out

    def likelihood(self, z: jax.Array) -> jax.Array:
        """Bin likelihood of ``z`` (..., C), floored at ``likelihood_min``."""
        shape = z.shape
        v = jnp.moveaxis(z, -1, 0).reshape(self.channels, 1, -1)
        lower = self.logits_cumulative(v - 0.5)
        upper = self.logits_cumulative(v + 0.5)
        sign = -jnp.sign(lower + upper)
        sign = jax.lax.stop_gradient(jnp.where(sign == 0, 1.0, sign))
        lik = jnp.abs(jax.nn.sigmoid(sign * upper) - jax.nn.sigmoid(sign * lower))
        lik = _lower_bound(lik, self.likelihood_min)
        lik = lik.reshape(self.channels, *shape[:-1])
        return jnp.moveaxis(lik, 0, -1)


def factorized_logits_np(
    params: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]], x: np.ndarray
) -> np.ndarray:
    """Float64 host evaluation of the factorized cumulative's logits at ``x`` (C, 1, n)."""
    logits = np.asarray(x, np.float64)
    for mat, bias, fac in params:
        sp = np.logaddexp(0.0, mat)
        logits = np.matmul(sp, logits) + bias
        if fac is not None:
            logits = logits + np.tanh(fac) * np.tanh(logits)
    return logits


class GaussianConditional:
    """Discretised Gaussian bin likelihood (symmetric form), floored at ``likelihood_min``."""

    def __init__(self, scale_min: float = 0.11, likelihood_min: float = LIKELIHOOD_MIN) -> None:
        self.scale_min = float(scale_min)
        self.likelihood_min = float(likelihood_min)

    def likelihood(self, y: jax.Array, means: jax.Array, scales: jax.Array) -> jax.Array:
        values = jnp.abs(y - means)
        scales = jnp.maximum(scales, self.scale_min)
        inv = 1.0 / (scales * math.sqrt(2.0))
        upper = 0.5 * jax.scipy.special.erfc(-(0.5 - values) * inv)
        lower = 0.5 * jax.scipy.special.erfc(-(-0.5 - values) * inv)
        return _lower_bound(upper - lower, self.likelihood_min)


def gaussian_likelihood_np(
    sym: np.ndarray, scales: np.ndarray, likelihood_min: float = LIKELIHOOD_MIN
) -> np.ndarray:
    """Float64 host version of :meth:`GaussianConditional.likelihood` for ``sym = y − μ``."""
    from scipy.special import erfc

    v = np.abs(np.asarray(sym, np.float64))
    s = np.asarray(scales, np.float64) * math.sqrt(2.0)
    lik = 0.5 * erfc(-(0.5 - v) / s) - 0.5 * erfc(-(-0.5 - v) / s)
    return np.maximum(lik, likelihood_min)


def scale_table(n: int = 64, lo: float = 0.11, hi: float = 256.0) -> np.ndarray:
    """``n`` log-spaced scales from ``lo`` to ``hi`` (CompressAI's ``get_scale_table``), float64."""
    if n < 2 or not (0 < lo < hi):
        raise ValueError(f"scale_table: need n >= 2 and 0 < lo < hi, got n={n}, lo={lo}, hi={hi}")
    return np.exp(np.linspace(math.log(lo), math.log(hi), n))


def scale_index(sigma: np.ndarray, table: np.ndarray, rounding: str = "nearest") -> np.ndarray:
    """Index of each σ in ``table``: nearest in log space (``clip(round((ln σ − ln lo)/Δ))``),
    computed in float32; ``rounding="up"`` takes the first entry ≥ σ (CompressAI)."""
    if rounding not in ("nearest", "up"):
        raise ValueError(f"scale_index: rounding must be 'nearest' or 'up', got {rounding!r}")
    n = len(table)
    sig = np.asarray(sigma, np.float32)
    if rounding == "up":
        idx = np.searchsorted(np.asarray(table, np.float32), sig, side="left")
        return np.clip(idx, 0, n - 1).astype(np.uint8 if n <= 256 else np.int32)
    lo = np.float32(math.log(table[0]))
    delta = np.float32((math.log(table[-1]) - math.log(table[0])) / (n - 1))
    idx = np.round((np.log(sig) - lo) / delta)
    return np.clip(idx, 0, n - 1).astype(np.uint8 if n <= 256 else np.int32)
