"""Public test helpers: named exact problems, exact references for samplers, convergence orders.

Every package of the monorepo checks its samplers, schedules and distillation targets against
these references (the e3nn ``util.test`` idea: ship the checks with the library).

* :func:`problem` — named data distributions with exact denoisers and their schedule.
* :func:`exact_flow_gaussian` — the probability-flow ODE map for Gaussian data (closed form).
* :func:`output_moments_gaussian` — exact mean and variance of any sampler's output on Gaussian
  data by linear response (no Monte Carlo).
* :func:`pushforward_1d` — quadrature of a deterministic sampler's output law in 1-D.
* :func:`reference_ode` — a fine DPM-Solver++(2M) solution (the "exact teacher").
* :func:`convergence_order`, :func:`assert_sampler_order` — empirical order of accuracy.
* :func:`check_schedule` (from :mod:`diff_core.schedule_checks`) and the analytic classes
  :class:`GaussianMixture`, :class:`EmpiricalDistribution`, :class:`ConditionalMixture`,
  :func:`gaussian` (from :mod:`diff_core.analytic`).

Samplers, grids and the driver are imported inside the functions that use them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from diff_protocol import SamplerStep, alpha_sigma, arg_error, check_grid
from diff_protocol.arrays import as_float_array
from diff_protocol.testing import to_backend, to_numpy

from .analytic import ConditionalMixture, EmpiricalDistribution, GaussianMixture, gaussian
from .schedule_checks import check_schedule

__all__ = [
    "PROBLEMS",
    "ConditionalMixture",
    "EmpiricalDistribution",
    "GaussianMixture",
    "GaussianMoments",
    "Problem",
    "Pushforward",
    "assert_sampler_order",
    "check_schedule",
    "convergence_order",
    "exact_flow_gaussian",
    "flow_errors_gaussian",
    "gaussian",
    "output_moments_gaussian",
    "problem",
    "pushforward_1d",
    "reference_ode",
]


# --------------------------------------------------------------------------------------------
# named problems


class Problem(NamedTuple):
    """A named exact data distribution, the schedule its tests use, and a one-line description."""

    mixture: Any
    schedule: Any
    description: str


PROBLEMS = (
    "std_normal",
    "gauss1d",
    "mix1d",
    "ring6",
    "hadamard16",
    "guidance1d",
    "ring8",
    "mix64",
    "image3x32",
)


def _ring(k: int, stds: Sequence[float], weights: Sequence[float]) -> GaussianMixture:
    ang = 2.0 * np.pi * np.arange(k) / k
    return GaussianMixture(weights, np.stack([np.cos(ang), np.sin(ang)], axis=1), stds)


def _hadamard16() -> GaussianMixture:
    h = np.ones((1, 1))
    for _ in range(4):  # Sylvester: H_{2n} = [[H, H], [H, -H]]
        h = np.kron(np.array([[1.0, 1.0], [1.0, -1.0]]), h)
    k = np.arange(8)
    return GaussianMixture(k + 1.0, 0.25 * h[1:9], 0.10 + 0.02 * k)


def _mix64() -> GaussianMixture:
    rng = np.random.default_rng(64)
    means = 0.5 * rng.standard_normal((16, 64))
    stds = rng.uniform(0.1, 0.3, 16)
    weights = rng.uniform(0.5, 1.5, 16)
    return GaussianMixture(weights / weights.sum(), means, stds)


def _image3x32() -> GaussianMixture:
    rng = np.random.default_rng(3232)
    noise = rng.standard_normal((100, 32, 32, 3))
    # periodic Gaussian filter, std 3 px: the DFT of the wrapped, normalised 2-D kernel
    d = np.minimum(np.arange(32), 32 - np.arange(32)).astype(np.float64)
    g = np.exp(-(d**2) / (2 * 3.0**2))
    g /= g.sum()
    kernel_hat = np.fft.fft2(np.outer(g, g))
    blurred = np.real(
        np.fft.ifft2(np.fft.fft2(noise, axes=(1, 2)) * kernel_hat[:, :, None], axes=(1, 2))
    )
    means = 0.9 * blurred / np.max(np.abs(blurred), axis=(1, 2, 3), keepdims=True)
    stds = rng.uniform(0.05, 0.2, 100)
    weights = rng.uniform(0.5, 1.5, 100)
    return GaussianMixture(weights / weights.sum(), means, stds)


_DESCRIPTIONS = {
    "std_normal": "N(0, 1), event shape (1,)",
    "gauss1d": "N(0.3, 0.5^2), event shape (1,)",
    "mix1d": "1-D mixture: weights 0.25/0.75, means -2/1, stds 0.25/0.5",
    "ring6": "2-D ring of 6 Gaussians, stds 0.05..0.15, weights prop. to 1..3.5",
    "hadamard16": "16-D, 8 Gaussians at 0.25 x rows 1..8 of Sylvester H16 (norm 1, spacing sqrt 2)",
    "guidance1d": "2 classes: A = {-2.5, +1.5}, B = {-1.5, +2.5}, std 0.25, equal weights",
    "ring8": "2-D ring of 8 Gaussians, std 0.08, weights prop. to (1, 1.5, 2, 2.5, 2.5, 3, 3.5, 4)",
    "mix64": "64-D, 16 Gaussians from default_rng(64)",
    "image3x32": "32x32x3 'images', 100 blurred-noise Gaussians from default_rng(3232)",
}


def _build(name: str) -> Any:
    if name == "std_normal":
        return gaussian(0.0, 1.0)
    if name == "gauss1d":
        return gaussian(0.3, 0.5)
    if name == "mix1d":
        return GaussianMixture([0.25, 0.75], [[-2.0], [1.0]], [0.25, 0.5])
    if name == "ring6":
        return _ring(6, [0.05, 0.07, 0.09, 0.11, 0.13, 0.15], [1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    if name == "hadamard16":
        return _hadamard16()
    if name == "guidance1d":
        a = GaussianMixture([0.5, 0.5], [[-2.5], [1.5]], [0.25, 0.25])
        b = GaussianMixture([0.5, 0.5], [[-1.5], [2.5]], [0.25, 0.25])
        return ConditionalMixture([a, b], [0.5, 0.5], null_label=-1)
    if name == "ring8":
        return _ring(8, [0.08] * 8, [1.0, 1.5, 2.0, 2.5, 2.5, 3.0, 3.5, 4.0])
    if name == "mix64":
        return _mix64()
    return _image3x32()


@functools.cache
def problem(name: str) -> Problem:
    """The named problem (cached: the same objects on every call, so JAX caches stay warm).

    Names: ``std_normal``, ``gauss1d``, ``mix1d``, ``ring6``, ``hadamard16``, ``guidance1d``
    (a :class:`ConditionalMixture`), ``ring8``, ``mix64``, ``image3x32`` (see
    :data:`PROBLEMS`; core spec §3.11 and §3.11a). 1-D problems have event shape ``(1,)``. The
    schedule is ``CosineSchedule(-15, 15)`` for all of them.
    """
    if name not in PROBLEMS:
        raise arg_error("problem", "name", f"one of {', '.join(PROBLEMS)}", repr(name))
    from .schedules import CosineSchedule

    return Problem(_build(name), CosineSchedule(-15.0, 15.0), _DESCRIPTIONS[name])


# --------------------------------------------------------------------------------------------
# exact references


def exact_flow_gaussian(z: Any, logsnr_from: Any, logsnr_to: Any, mean: Any, std: Any) -> Any:
    """Probability-flow ODE map for data ``N(mean, std²)`` from ``λ_t`` to ``λ_s``.

    ``z_s = α_s μ + √((α_s² s² + σ_s²)/(α_t² s² + σ_t²)) (z_t − α_t μ)``: the marginals are
    Gaussian and the flow is affine and orientation preserving, so it is the monotone map between
    them. Array API in ``z``; ``logsnr_*``, ``mean`` and ``std`` are numbers or arrays that
    broadcast against ``z``.
    """
    xp = array_api_compat.array_namespace(z)
    lt, ls, mu, s = (as_float_array(xp, v, z) for v in (logsnr_from, logsnr_to, mean, std))
    a_t, s_t = alpha_sigma(lt)
    a_s, s_s = alpha_sigma(ls)
    ratio = xp.sqrt((a_s**2 * s**2 + s_s**2) / (a_t**2 * s**2 + s_t**2))
    return a_s * mu + ratio * (z - a_t * mu)


class GaussianMoments(NamedTuple):
    """Mean and variance of a sampler's output (``std`` = √var)."""

    mean: float
    var: float

    @property
    def std(self) -> float:
        return math.sqrt(self.var)


def _as_sampler(func: str, sampler: Any) -> SamplerStep:
    if isinstance(sampler, SamplerStep):
        return sampler
    if callable(sampler):
        out = sampler()
        if isinstance(out, SamplerStep):
            return out
    raise arg_error(func, "sampler", "a SamplerStep or a factory returning one", sampler, TypeError)


def output_moments_gaussian(
    sampler: Any,
    grid: Any,
    mean: float,
    std: float,
    final: str = "denoise",
    backend: str = "numpy",
    dtype: str = "float64",
) -> GaussianMoments:
    """Exact mean and variance of ``sample(...)``'s output for data ``N(mean, std²)``.

    With the exact (affine) Gaussian denoiser the whole chain is affine in
    ``(z_init, noise_1, ..., noise_N)``, all independent standard normals. One batch of N + 2
    inputs through :func:`diff_protocol.table_noise` gives the offset (all inputs 0) and every
    coefficient (a unit impulse in one input minus the offset): ``mean = offset``,
    ``var = Σ coefficients²``. No Monte Carlo.
    """
    from diff_protocol import table_noise

    from .sampling import sample

    func = "output_moments_gaussian"
    step = _as_sampler(func, sampler)
    grid = check_grid(grid, func)
    n = grid.n_steps
    table = np.zeros((n + 1, n + 2, 1))
    table[0, 1, 0] = 1.0  # draw 0 is z_init
    for i in range(1, n + 1):
        table[i, i + 1, 0] = 1.0
    noise = table_noise(to_backend(table, backend, dtype))
    den = gaussian(float(mean), float(std)).denoiser("x")
    out = np.asarray(to_numpy(sample(den, step, grid, noise, final=final)), dtype=np.float64)
    out = out[:, 0]
    coef = out[1:] - out[0]
    return GaussianMoments(float(out[0]), float(np.sum(coef**2)))


class Pushforward(NamedTuple):
    """Quadrature of a 1-D output law: ``E f(x) ≈ Σ_i weights_i f(x_i)``; ``x_i`` = output of
    the sampler started at ``z_i``."""

    z: np.ndarray
    x: np.ndarray
    weights: np.ndarray


def pushforward_1d(
    sampler: Any,
    denoiser: Any,
    grid: Any,
    n_points: int = 20001,
    lo: float = -8.0,
    hi: float = 8.0,
    *,
    final: str = "denoise",
    cond: Any = None,
) -> Pushforward:
    """Output of a deterministic sampler on the grid ``z_i = linspace(lo, hi, n_points)`` (shape
    ``(n_points, 1)``, numpy float64) with weights ``φ(z_i) Δz``: a quadrature of its output
    distribution (1-D data, event shape ``(1,)``)."""
    from .sampling import sample

    func = "pushforward_1d"
    step = _as_sampler(func, sampler)
    if step.stochastic:
        raise arg_error(func, "sampler", "deterministic", f"stochastic sampler {step.name!r}")
    if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 2:
        raise arg_error(func, "n_points", "an int >= 2", repr(n_points))
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise arg_error(func, "lo", f"finite and < hi={hi!r}", repr(lo))
    z = np.linspace(lo, hi, n_points)
    x = sample(denoiser, step, grid, None, z_init=z[:, None], final=final, cond=cond)
    dz = (hi - lo) / (n_points - 1)
    w = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi) * dz
    return Pushforward(z, np.asarray(to_numpy(x), dtype=np.float64)[:, 0], w)


def _reference_grid(logsnr_from: float, logsnr_to: float, n_steps: int) -> Any:
    from diff_protocol import TimeGrid

    lo, hi = float(logsnr_from), float(logsnr_to)
    lo_f = lo if math.isfinite(lo) else min(-30.0, (hi if math.isfinite(hi) else 0.0) - 30.0)
    hi_f = hi if math.isfinite(hi) else max(30.0, lo_f + 30.0)
    n_inf = int(not math.isfinite(lo)) + int(not math.isfinite(hi))
    n_fin = n_steps + 1 - n_inf
    if n_fin < 2:
        raise arg_error("reference_ode", "n_steps", f">= {1 + n_inf}", str(n_steps))
    lam = np.linspace(lo_f, hi_f, n_fin)
    if not math.isfinite(lo):
        lam = np.concatenate([[-math.inf], lam])
    if not math.isfinite(hi):
        lam = np.concatenate([lam, [math.inf]])
    return TimeGrid(np.linspace(1.0, 0.0, n_steps + 1), lam)


def reference_ode(
    denoiser: Any,
    z: Any,
    logsnr_from: float,
    logsnr_to: float,
    n_steps: int = 4096,
    *,
    cond: Any = None,
) -> Any:
    """Probability-flow ODE solution from ``logsnr_from`` to ``logsnr_to`` (the exact teacher).

    DPM-Solver++(2M) (arXiv 2211.01095) with ``n_steps`` steps uniform in λ; an infinite start
    (``−inf``) is reached by a first step from ``min(−30, λ_to − 30)``, an infinite end by a last
    step from ``max(30, …)`` (the dynamics are frozen beyond). Runs in ``z``'s dtype: pass float64
    for a reference (numpy, torch, or JAX with x64).
    """
    from .samplers import dpmpp_2m
    from .sampling import sample

    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise arg_error("reference_ode", "n_steps", "a positive int", repr(n_steps))
    if not float(logsnr_from) < float(logsnr_to):
        raise arg_error(
            "reference_ode", "logsnr_to", f"> logsnr_from={logsnr_from!r}", repr(logsnr_to)
        )
    grid = _reference_grid(logsnr_from, logsnr_to, n_steps)
    return sample(denoiser, dpmpp_2m(), grid, None, z_init=z, final="step", cond=cond)


# --------------------------------------------------------------------------------------------
# convergence orders


def convergence_order(steps: Sequence[float], errors: Sequence[float]) -> float:
    """Least-squares slope of ``−log(error)`` against ``log(steps)`` (2 for ``error ∝ N⁻²``)."""
    s = np.asarray(steps, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    if s.shape != e.shape or s.ndim != 1 or s.size < 2:
        raise arg_error("convergence_order", "errors", "as many as steps (>= 2)", f"{e.size}")
    if np.any(s <= 0) or np.any(e <= 0) or not np.all(np.isfinite(e)):
        raise arg_error("convergence_order", "errors", "positive and finite", repr(e.tolist()))
    return float(-np.polyfit(np.log(s), np.log(e), 1)[0])


def flow_errors_gaussian(
    sampler: Any,
    steps: Sequence[int],
    *,
    name: str = "gauss1d",
    z_init: Sequence[float] = (-2.0, 0.0, 2.0),
) -> list[float]:
    """Max error over ``z_init`` of ``sample(..., final="step")`` against
    :func:`exact_flow_gaussian`, for each N in ``steps`` (uniform-t grid of the problem's
    schedule, exact Gaussian denoiser, numpy float64)."""
    from .grids import uniform_t
    from .sampling import sample

    step = _as_sampler("flow_errors_gaussian", sampler)
    prob = problem(name)
    mix = prob.mixture
    if not isinstance(mix, GaussianMixture) or mix.n_components != 1 or mix.dim != 1:
        raise arg_error("flow_errors_gaussian", "name", "a 1-D Gaussian problem", repr(name))
    mu, s = float(mix.means.reshape(-1)[0]), float(mix.stds.reshape(-1)[0])
    z0 = np.asarray(z_init, dtype=np.float64)[:, None]
    errors = []
    for n in steps:
        grid = uniform_t(prob.schedule, int(n))
        x = sample(mix.denoiser("x"), step, grid, None, z_init=z0, final="step")
        exact = exact_flow_gaussian(z0, float(grid.logsnr[0]), float(grid.logsnr[-1]), mu, s)
        errors.append(float(np.max(np.abs(np.asarray(x) - exact))))
    return errors


def assert_sampler_order(
    factory: Callable[[], SamplerStep] | SamplerStep,
    order: float,
    tol: float = 0.4,
    *,
    upper: float | None = None,
    steps: Sequence[int] = (32, 64, 128),
    name: str = "gauss1d",
) -> list[float]:
    """Assert that a deterministic sampler converges to the exact flow at rate ``order``.

    Errors from :func:`flow_errors_gaussian`; the order between each pair of consecutive step
    counts must be ``>= order − tol`` (and ``<= upper`` when given). Returns those orders.
    Raises ``AssertionError`` with the measured errors and orders otherwise.
    """
    step = _as_sampler("assert_sampler_order", factory)
    if step.stochastic:
        raise arg_error("assert_sampler_order", "factory", "deterministic", repr(step.name))
    errors = flow_errors_gaussian(step, steps, name=name)
    orders = [convergence_order(steps[i : i + 2], errors[i : i + 2]) for i in range(len(steps) - 1)]
    ok = all(o >= order - tol and (upper is None or o <= upper) for o in orders)
    if not ok:
        raise AssertionError(
            f"assert_sampler_order: {step.name} orders {[round(o, 3) for o in orders]} between "
            f"steps {list(steps)} (errors {[f'{e:.3g}' for e in errors]}) are not within "
            f"[{order - tol}, {upper if upper is not None else 'inf'}]"
        )
    return orders
