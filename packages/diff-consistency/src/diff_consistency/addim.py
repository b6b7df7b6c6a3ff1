r"""Adjusted DDIM (aDDIM, MCM Algorithm 3; Heek, Hoogeboom & Salimans, arXiv 2403.06807).

DDIM moves along ε̂ = (z_t − α_t x̂)/σ_t and so loses the part of the variance of z_s that comes
from the uncertainty of x̂ (the blur of few-step DDIM). aDDIM adds it back with the same single
evaluation:

.. math::
    z_s = \alpha_s \hat x + \sqrt{\sigma_s^2 + D\,(\alpha_s - \alpha_t\sigma_s/\sigma_t)^2\,
          \mathrm{Var}_x / \lVert\hat\epsilon\rVert^2}\;\hat\epsilon
        = \alpha_s \hat x + \sigma_s\sqrt{1 + r}\,\hat\epsilon,
    \qquad r = D\,e^{\lambda_s}\,\mathrm{expm1}\!\big(\tfrac{\lambda_t-\lambda_s}{2}\big)^2
               \mathrm{Var}_x / \lVert\hat\epsilon\rVert^2,

with ``Var_x`` the per-dimension variance of x̂'s error and D the dimensions of one example; the
factor (α_s − α_t σ_s/σ_t)² = α_s² expm1((λ_t − λ_s)/2)² is evaluated in the expm1 form.
It is computed as diff-core's DDIM step (``diff_core.samplers.ddim(0.0).step``) plus the
correction σ_s (√(1+r) − 1) ε̂ = σ_s r/(√(1+r) + 1) ε̂, selected with ``where`` only where r > 0,
so that ``x_var = 0`` returns the DDIM step *bitwise*. ``r = 0`` where ``x_var == 0``, where
SNR_s ≥ ``max_snr``, and at σ_s = 0 (λ_s = +∞), where the step returns x̂.

Written against the array API (numpy, JAX, torch): the variance models and the sampler factory
import no framework.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np

from diff_core import samplers as core_samplers
from diff_protocol import SamplerStep, alpha_sigma, expand_like, jax_normal
from diff_protocol.arrays import as_float_array, is_lazy, is_scalar, namespace, work_dtype

__all__ = [
    "AnalyticVariance",
    "EmpiricalVariance",
    "OracleVariance",
    "addim",
    "addim_step",
    "estimate_variance_table",
]


def _check_max_snr(func: str, max_snr: Any) -> float:
    if isinstance(max_snr, bool) or not isinstance(max_snr, (int, float)) or not max_snr > 0:
        raise ValueError(f"{func}: max_snr must be a positive number (inf = off), got {max_snr!r}")
    return float(max_snr)


def _per_example(xp: Any, a: Any, z: Any, func: str, arg: str) -> Any:
    """``a`` (number, 0-d or (B,) array) expanded against z in z's working dtype."""
    a = as_float_array(xp, a, z)
    a = xp.astype(a, work_dtype(xp, z))
    return expand_like(a, z, func=func, arg=arg)


def addim_step(
    z_t: Any,
    x_hat: Any,
    logsnr_t: Any,
    logsnr_s: Any,
    *,
    x_var: Any,
    max_snr: float = math.inf,
) -> Any:
    """One aDDIM step from λ_t to λ_s > λ_t (module docstring).

    Args:
      z_t: state (B, ...). x_hat: the data estimate at (z_t, λ_t).
      logsnr_t, logsnr_s: numbers, 0-d or (B,) arrays; λ_s may be +∞ (returns x̂).
      x_var: per-dimension variance of x̂'s error, a number, 0-d or (B,) array, ≥ 0.
      max_snr: no inflation where e^{λ_s} ≥ max_snr (inf: the paper's formula).

    Returns:
      z_s, z_t's dtype; bitwise ``diff_core.samplers.ddim(0.0).step(...)[0]`` where x_var == 0.
    """
    max_snr = _check_max_snr("addim_step", max_snr)
    xp = namespace(z_t, x_hat)
    if is_scalar(x_var) or not is_lazy(x_var):
        xv = np.asarray(x_var, dtype=np.float64)
        if not (np.all(np.isfinite(xv)) and np.all(xv >= 0)):
            raise ValueError(f"addim_step: x_var must be finite and >= 0, got {xv!r}")
    z_ddim, _ = core_samplers.ddim(0.0).step(z_t, x_hat, logsnr_t, logsnr_s, None)
    dt = work_dtype(xp, z_t)
    z32 = xp.astype(z_t, dt)
    x32 = xp.astype(x_hat, dt)
    lt = _per_example(xp, logsnr_t, z_t, "addim_step", "logsnr_t")
    ls = _per_example(xp, logsnr_s, z_t, "addim_step", "logsnr_s")
    var = _per_example(xp, x_var, z_t, "addim_step", "x_var")
    alpha_t, sigma_t = alpha_sigma(lt)
    _, sigma_s = alpha_sigma(ls)
    eps_hat = (z32 - alpha_t * x32) / sigma_t
    axes = tuple(range(1, eps_hat.ndim))
    dim = math.prod(z_t.shape[1:]) if z_t.ndim > 1 else 1
    if axes:
        n2 = xp.sum(eps_hat * eps_hat, axis=axes, keepdims=True)
    else:
        n2 = eps_hat * eps_hat
    finite_s = xp.isfinite(ls)
    active = (var > 0) & finite_s & (ls < math.log(max_snr))
    ls_safe = xp.where(finite_s, ls, xp.zeros_like(ls))
    em = xp.expm1(0.5 * (lt - ls_safe))
    r = dim * xp.exp(ls_safe) * em * em * var / xp.where(n2 > 0, n2, xp.ones_like(n2))
    r = xp.where(active, r, xp.zeros_like(r))
    extra = sigma_s * (r / (xp.sqrt(1.0 + r) + 1.0)) * eps_hat
    z_s = xp.where(active, xp.astype(xp.astype(z_ddim, dt) + extra, z_ddim.dtype), z_ddim)
    return z_s


# ---------------------------------------------------------------------------------------------
# variance models: variance(z_t, logsnr_t) -> per-dimension x_var (0-d or (B,))


@dataclasses.dataclass(frozen=True)
class AnalyticVariance:
    """``x_var(λ_t) = scale / (2 + e^{λ_t})`` (MCM: scale = 0.1, "works as well as" the empirical
    table on ImageNet)."""

    scale: float = 0.1

    def __post_init__(self) -> None:
        s = self.scale
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not (s >= 0 and s < math.inf):
            raise ValueError(f"AnalyticVariance: scale must be a finite number >= 0, got {s!r}")

    def __call__(self, z_t: Any, logsnr_t: Any) -> Any:
        xp = namespace(logsnr_t)
        return self.scale / (2.0 + xp.exp(logsnr_t))


@dataclasses.dataclass(frozen=True, eq=False)
class OracleVariance:
    """``η · tr Var[x | z_t] / D`` from an exact mixture (``diff_core.analytic.GaussianMixture``
    or anything with ``posterior_trace_var(z, logsnr)``): the variance aDDIM assumes, exactly.
    Hashes by identity (a JAX static argument)."""

    mixture: Any
    eta: float = 0.75

    def __post_init__(self) -> None:
        if not callable(getattr(self.mixture, "posterior_trace_var", None)):
            raise TypeError(
                "OracleVariance: mixture must have posterior_trace_var(z, logsnr), got "
                f"{type(self.mixture).__name__}"
            )
        if isinstance(self.eta, bool) or not isinstance(self.eta, (int, float)) or self.eta < 0:
            raise ValueError(f"OracleVariance: eta must be a number >= 0, got {self.eta!r}")

    def __call__(self, z_t: Any, logsnr_t: Any) -> Any:
        dim = math.prod(z_t.shape[1:])
        return self.eta * self.mixture.posterior_trace_var(z_t, logsnr_t) / dim


@dataclasses.dataclass(frozen=True, eq=False)
class EmpiricalVariance:
    """A table over t of ``η · E‖x̂(z_t) − x‖² / D`` (MCM: η = 0.75 of the teacher's measured
    error), linearly interpolated in t (clamped at the table's ends); t = ``schedule.t_of(λ)``.
    Hashes by identity. ``save(path)`` / ``load(path)`` use ``.npz``."""

    t: Any
    values: Any
    schedule: Any

    def __post_init__(self) -> None:
        t = np.asarray(self.t, dtype=np.float64)
        v = np.asarray(self.values, dtype=np.float64)
        if t.ndim != 1 or t.shape != v.shape or t.size < 2:
            raise ValueError(
                f"EmpiricalVariance: t and values must be 1-D of equal length >= 2, got shapes "
                f"{t.shape} and {v.shape}"
            )
        if not np.all(np.diff(t) > 0):
            raise ValueError("EmpiricalVariance: t must be strictly increasing")
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise ValueError("EmpiricalVariance: values must be finite and >= 0")
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "values", v)

    def __call__(self, z_t: Any, logsnr_t: Any) -> Any:
        if not type(logsnr_t).__module__.startswith("jax"):
            return np.interp(np.asarray(self.schedule.t_of(logsnr_t)), self.t, self.values)
        import jax.numpy as jnp  # only reached with JAX arrays (tracers included)

        t = jnp.asarray(self.schedule.t_of(logsnr_t))
        return jnp.interp(t, jnp.asarray(self.t, t.dtype), jnp.asarray(self.values, t.dtype))

    def save(self, path: str) -> None:
        """Write ``t``, ``values`` and the schedule's JSON to ``path`` (.npz, atomic)."""
        import io

        from diff_protocol import schedule_to_json
        from diff_protocol.io import atomic_write

        buf = io.BytesIO()
        np.savez(buf, t=self.t, values=self.values, schedule=schedule_to_json(self.schedule))
        atomic_write(path, buf.getvalue())

    @classmethod
    def load(cls, path: str) -> EmpiricalVariance:
        """Read a table written by :meth:`save`; a damaged file is a ``ValueError`` naming it."""
        from diff_protocol import schedule_from_json

        try:
            with np.load(path, allow_pickle=False) as f:
                return cls(f["t"], f["values"], schedule_from_json(str(f["schedule"])))
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(
                f"EmpiricalVariance.load: {path} is not a variance table ({err})"
            ) from None


def estimate_variance_table(
    teacher: Any,
    data: Any,
    schedule: Any,
    *,
    cond: Any = None,
    num_t: int = 64,
    num_batches: int = 16,
    batch_size: int = 256,
    eta: float = 0.75,
    seed: int = 0,
) -> EmpiricalVariance:
    """Measure ``η·E‖x̂(z_t) − x‖²/D`` of ``teacher`` at ``num_t`` times t_k = (k + ½)/num_t.

    Args:
      teacher: any diff-protocol denoiser (JAX).
      data: array (N, ...) of clean examples; batch b takes rows drawn with
        ``default_rng([seed, b])``.
      cond: optional per-example condition builder ``cond(rows) -> cond`` (e.g. labels).
      num_t, num_batches, batch_size: grid size and Monte-Carlo effort per time.
      eta: the fraction of the measured error kept (MCM: 0.75).
    """
    import jax
    import jax.numpy as jnp

    from diff_protocol import denoise, diffuse

    for name, v in (("num_t", num_t), ("num_batches", num_batches), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"estimate_variance_table: {name} must be a positive int, got {v!r}")
    if num_t < 2:
        raise ValueError(f"estimate_variance_table: num_t must be >= 2, got {num_t}")
    x_all = np.asarray(data, dtype=np.float32)
    if x_all.ndim < 2:
        raise ValueError(
            f"estimate_variance_table: data must be an array (N, ...), got shape {x_all.shape}"
        )
    t = (np.arange(num_t, dtype=np.float64) + 0.5) / num_t
    lam = np.asarray(schedule.logsnr(t), dtype=np.float64)
    dim = math.prod(x_all.shape[1:])
    sums = np.zeros(num_t)

    @jax.jit
    def err(x, eps, lam_k, c):
        lam_b = jnp.full((x.shape[0],), lam_k, jnp.float32)
        z = diffuse(x, eps, lam_b)
        x_hat, _ = denoise(teacher, z, lam_b, c)
        return jnp.mean(jnp.sum(jnp.square(x_hat - x).reshape(x.shape[0], -1), axis=-1))

    for b in range(num_batches):
        rng = np.random.default_rng([seed, b])
        rows = rng.integers(0, x_all.shape[0], batch_size)
        x = jnp.asarray(x_all[rows])
        c = cond(rows) if cond is not None else None
        key = jax.random.fold_in(jax.random.key(seed), b)
        for k in range(num_t):
            eps = jax_normal(jax.random.fold_in(key, k), x.shape)
            sums[k] += float(err(x, eps, jnp.float32(lam[k]), c))
    values = eta * sums / (num_batches * dim)
    return EmpiricalVariance(t, values, schedule)


@functools.cache
def addim(variance: Any = None, *, max_snr: float = math.inf) -> SamplerStep:
    """aDDIM as a :class:`~diff_protocol.SamplerStep` (registered as ``"addim"``; deterministic,
    order 1): ``step(z_t, x̂, λ_t, λ_s) = addim_step(..., x_var=variance(z_t, λ_t))``.

    ``variance`` defaults to :class:`AnalyticVariance` (0.1/(2 + SNR)). Equal arguments return the
    identical object (JAX compilation caches stay warm). A variance of 0 gives DDIM bitwise.
    """
    if variance is None:
        variance = AnalyticVariance()
    if not callable(variance):
        raise TypeError(
            "addim: variance must be callable variance(z_t, logsnr_t), e.g. AnalyticVariance(), "
            f"got {type(variance).__name__}"
        )
    max_snr = _check_max_snr("addim", max_snr)

    def step(z_t, x_hat, logsnr_t, logsnr_s, noise=None, state=()):
        x_var = variance(z_t, logsnr_t)
        return addim_step(z_t, x_hat, logsnr_t, logsnr_s, x_var=x_var, max_snr=max_snr), state

    return SamplerStep(
        name="addim",
        init=lambda z: (),
        step=step,
        stochastic=False,
        requires_finite_start=False,
        order=1,
    )
