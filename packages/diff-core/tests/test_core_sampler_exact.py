"""Samplers against exact references (core spec §6, checks 17–24 and the §3.11a DDIM-8 check).

Every reference here is exact or independent of the samplers: closed-form contraction laws,
Gaussian moment recursions written from the spec's formulas, the exact probability-flow map,
quadrature of the true density, and metrics against exact mixtures. Monte Carlo uses fixed seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from diff_core.grids import uniform_t
from diff_core.metrics import frechet_distance_to, mmd2, mode_distance_ratio, mode_tv
from diff_core.samplers import ddim, ddpm, dpmpp_2m, euler, heun
from diff_core.sampling import sample
from diff_core.schedules import CosineSchedule
from diff_core.testing import (
    assert_sampler_order,
    convergence_order,
    flow_errors_gaussian,
    output_moments_gaussian,
    problem,
    pushforward_1d,
)
from diff_protocol import numpy_noise
from diff_protocol.testing import BACKENDS, backend, to_numpy


def _draw(name: str, sampler, n_steps: int, n: int, seed: int, final: str = "denoise"):
    prob = problem(name)
    mix = prob.mixture
    noise = numpy_noise(seed, (n, *mix.event_shape))
    grid = uniform_t(prob.schedule, n_steps)
    return sample(mix.denoiser("x"), sampler, grid, noise, final=final)


# ----------------------------------------------------------------------------------------------
# check 17: DDIM on N(0, 1) with the untruncated cosine contracts by cos(π/2N)^N


@pytest.mark.parametrize(("n_steps", "expected"), [(2, 0.5), (4, 0.72855339), (10, 0.88348518)])
@pytest.mark.smoke
def test_ddim_std_normal_contraction_float64(n_steps, expected):
    factor = math.cos(math.pi / (2 * n_steps)) ** n_steps
    assert abs(factor - expected) < 5e-9
    z = np.linspace(-3.0, 3.0, 13)[:, None]
    grid = uniform_t(CosineSchedule(-math.inf, math.inf), n_steps)
    out = sample(problem("std_normal").mixture.denoiser("x"), ddim(), grid, None, z_init=z)
    np.testing.assert_allclose(out, factor * z, rtol=0, atol=1e-12)


def test_ddim_one_step_returns_the_mean():
    z = np.linspace(-3.0, 3.0, 13)[:, None]
    grid = uniform_t(CosineSchedule(-math.inf, math.inf), 1)
    out = sample(problem("std_normal").mixture.denoiser("x"), ddim(), grid, None, z_init=z)
    assert np.max(np.abs(out)) < 1e-12


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("n_steps", [2, 4, 10])
def test_ddim_std_normal_contraction_float32_backends(name, n_steps):
    _, asarray = backend(name)
    z = np.linspace(-3.0, 3.0, 13)[:, None]
    grid = uniform_t(CosineSchedule(-math.inf, math.inf), n_steps)
    den = problem("std_normal").mixture.denoiser("x")
    out = sample(den, ddim(), grid, None, z_init=asarray(z, "float32"))
    assert "float32" in str(out.dtype)
    factor = math.cos(math.pi / (2 * n_steps)) ** n_steps
    np.testing.assert_allclose(np.asarray(to_numpy(out), np.float64), factor * z, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# check 18: exact output moments on N(0.3, 0.5²) against a scalar recursion from spec §3.5


def _recursion(kind: str, param: float, logsnr: np.ndarray, mu: float, s: float, final: str):
    """Mean and variance of the chain, propagated as z = P z_prev + Q + R ξ (all affine)."""

    def alpha_sigma(lam: float) -> tuple[float, float]:
        return math.sqrt(1 / (1 + math.exp(-lam))), math.sqrt(1 / (1 + math.exp(lam)))

    m, q = 0.0, 1.0  # z_init ~ N(0, 1)
    n = len(logsnr) - 1
    for k in range(n):
        a_t, s_t = alpha_sigma(logsnr[k])
        a_s, s_s = alpha_sigma(logsnr[k + 1])
        v = a_t**2 * s**2 + s_t**2
        A, B = a_t * s**2 / v, mu * s_t**2 / v  # exact denoiser x̂ = A z + B
        if k == n - 1 and final == "denoise":
            return A * m + B, A * A * q
        c = -math.expm1(logsnr[k] - logsnr[k + 1])
        if kind == "ddpm":
            cz = (a_t / a_s) * (s_s**2 / s_t**2)
            P, Q = cz + a_s * c * A, a_s * c * B
            var = math.exp(param * math.log(c * s_t**2) + (1 - param) * math.log(c * s_s**2))
        else:  # ddim(eta): z_s = α_s x̂ + σ_s √(1 − η²c) ε̂ + η σ_s √c ξ, ε̂ = (z − α_t x̂)/σ_t
            g = s_s * math.sqrt(1 - param**2 * c) / s_t
            P, Q = a_s * A + g * (1 - a_t * A), a_s * B - g * a_t * B
            var = param**2 * c * s_s**2
        m, q = P * m + Q, P * P * q + var
    return m, q


@pytest.mark.parametrize(
    ("kind", "param", "n_steps"),
    [("ddpm", 0.0, 64), ("ddpm", 0.5, 64), ("ddpm", 1.0, 16), ("ddim", 0.0, 64),
     ("ddim", 0.5, 32), ("ddim", 1.0, 16)],
)  # fmt: skip
@pytest.mark.parametrize("final", ["denoise", "step"])
def test_output_moments_match_recursion(kind, param, n_steps, final):
    schedule = problem("gauss1d").schedule
    grid = uniform_t(schedule, n_steps)
    sampler = ddpm(param) if kind == "ddpm" else ddim(param)
    got = output_moments_gaussian(sampler, grid, 0.3, 0.5, final=final)
    mean, var = _recursion(kind, param, np.asarray(grid.logsnr), 0.3, 0.5, final)
    assert abs(got.mean - mean) < 1e-9
    assert abs(got.var - var) < 1e-9


@pytest.mark.parametrize(
    ("sampler", "n_steps", "std", "mean"),
    [(ddpm(0.0), 64, 0.473955, 0.300000), (ddpm(0.5), 64, 0.489417, 0.300000),
     (ddpm(1.0), 16, 0.520473, 0.300000), (ddim(0.0), 64, 0.488090, 0.299919)],
)  # fmt: skip
def test_output_moments_golden_numbers(sampler, n_steps, std, mean):
    grid = uniform_t(problem("gauss1d").schedule, n_steps)
    got = output_moments_gaussian(sampler, grid, 0.3, 0.5)
    assert abs(got.std - std) < 1e-6
    assert abs(got.mean - mean) < 1e-6


@pytest.mark.slow
def test_ddpm_output_std_approaches_data_std_at_rate_one_over_n():
    """Results table: std 0.4740 (64) → 0.4927 (256) → 0.4981 (1024) against 0.5."""
    stds = []
    for n_steps in (64, 256, 1024):
        grid = uniform_t(problem("gauss1d").schedule, n_steps)
        stds.append(output_moments_gaussian(ddpm(0.0), grid, 0.3, 0.5).std)
    np.testing.assert_allclose(stds, [0.4740, 0.4927, 0.4981], atol=1e-4)
    gaps = 0.5 - np.asarray(stds)
    assert 3.5 < gaps[0] / gaps[1] < 4.5 and 3.5 < gaps[1] / gaps[2] < 4.5


# ----------------------------------------------------------------------------------------------
# check 19: convergence order against the exact probability-flow map


@pytest.mark.parametrize("sampler", [ddim(), euler("logsnr")], ids=["ddim", "euler_logsnr"])
def test_first_order_samplers(sampler):
    errors = flow_errors_gaussian(sampler, (64, 128))
    order = convergence_order((64, 128), errors)
    assert 0.85 <= order <= 1.2, (errors, order)


@pytest.mark.parametrize(
    "sampler",
    [heun("sigma"), heun("logsnr"), dpmpp_2m()],
    ids=["heun_sigma", "heun_logsnr", "dpmpp_2m"],
)
def test_second_order_samplers(sampler):
    orders = assert_sampler_order(sampler, 2, tol=0.4, steps=(32, 64, 128))
    assert len(orders) == 2 and min(orders) >= 1.6


def test_assert_sampler_order_rejects_a_first_order_method():
    with pytest.raises(AssertionError, match="ddim orders"):
        assert_sampler_order(ddim, 2, tol=0.4, steps=(32, 64, 128))


# ----------------------------------------------------------------------------------------------
# check 20: quadrature of DDIM's output law on mix1d


def _true_mode2_mass(mix) -> tuple[float, list[float]]:
    """Mass of the region assigned to component 1 under the true density, by exact CDFs."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    def margin(x: float) -> float:
        lp = mix.component_log_prob(np.array([[x]]))[0] + np.log(mix.weights)
        return float(lp[1] - lp[0])

    xs = np.linspace(-10.0, 10.0, 20001)
    labels = mix.assign(xs[:, None])
    roots = [brentq(margin, xs[i], xs[i + 1], xtol=1e-14) for i in np.nonzero(np.diff(labels))[0]]
    assert len(roots) == 2 and labels[0] == 1 and labels[-1] == 1  # 1 | 0 | 1
    mass = 0.0
    for w, m, s in zip(mix.weights, mix.means[:, 0], mix.stds):
        mass += w * (norm.cdf(roots[0], m, s) + norm.sf(roots[1], m, s))
    return float(mass), roots


def _pushed_mass(pf, mix, roots) -> float:
    """Mass whose output is assigned to component 1, with the crossings of the monotone map
    ``z → x`` located by linear interpolation (so the z-grid's spacing does not enter)."""
    from scipy.stats import norm

    crossings = [float(np.interp(r, pf.x, pf.z)) for r in roots]  # pf.x increasing in z
    return float(norm.cdf(crossings[0]) + norm.sf(crossings[1]))


def test_mix1d_ddim_pushforward_mode_mass_converges_first_order():
    prob = problem("mix1d")
    mix = prob.mixture
    truth, roots = _true_mode2_mass(mix)
    assert abs(truth - 0.749990) < 1e-6
    errors = []
    for n_steps in (64, 128, 256):
        pf = pushforward_1d(ddim(), mix.denoiser("x"), uniform_t(prob.schedule, n_steps))
        assert np.all(np.diff(pf.x) > 0)  # the deterministic map is monotone
        quad = float(np.sum(pf.weights[mix.assign(pf.x[:, None]) == 1]))
        mass = _pushed_mass(pf, mix, roots)
        assert abs(quad - mass) < 2e-4  # the raw quadrature agrees to within its resolution
        errors.append(mass - truth)
    assert 0.0030 < errors[0] < 0.0042 and 0.0006 < errors[2] < 0.0011  # measured 0.0036, 0.00086
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    assert all(1.6 <= r <= 2.4 for r in ratios), (errors, ratios)


def test_mix1d_ddim_one_step_from_pure_noise_gives_the_mean():
    mix = problem("mix1d").mixture
    grid = uniform_t(CosineSchedule(-math.inf, math.inf), 1)
    pf = pushforward_1d(ddim(), mix.denoiser("x"), grid, n_points=101)
    assert np.max(np.abs(pf.x - 0.25)) < 1e-12


# ----------------------------------------------------------------------------------------------
# check 21: ancestral Monte Carlo on mix1d


def _mix1d_mode2(n: int, seed: int) -> tuple[float, float]:
    mix = problem("mix1d").mixture
    x = _draw("mix1d", ddpm(0.0), 256, n, seed)
    k = mix.assign(x)
    return float(np.mean(k == 1)), float(np.std(x[k == 1]))


def test_mix1d_ddpm_monte_carlo_mode_weight_and_std():
    weight, std = _mix1d_mode2(2**17, seed=21)
    assert abs(weight - 0.75) < 0.006, weight
    assert abs(std / 0.5 - 1) < 0.02, std


@pytest.mark.slow
def test_mix1d_ddpm_monte_carlo_million_samples():
    weight, std = _mix1d_mode2(10**6, seed=2121)
    assert abs(weight - 0.75) < 0.006, weight
    assert abs(std / 0.5 - 1) < 0.02, std


# ----------------------------------------------------------------------------------------------
# check 22: the finite-set oracle memorises


def test_empirical_ddpm_memorises_training_points():
    from diff_core.analytic import EmpiricalDistribution

    data = np.random.Generator(np.random.PCG64(0)).standard_normal((64, 64))
    emp = EmpiricalDistribution(data)
    grid = uniform_t(problem("ring6").schedule, 64)
    x = sample(emp.denoiser("x"), ddpm(0.0), grid, numpy_noise(22, (2000, 64)))
    idx = np.asarray(emp.assign(x))
    rms = np.sqrt(np.mean((x - data[idx]) ** 2, axis=1))
    assert rms.max() < 1e-6, rms.max()
    counts = np.bincount(idx, minlength=64)
    assert np.all(counts > 0)
    expected = 2000 / 64
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert chi2 < 103.4, chi2


# ----------------------------------------------------------------------------------------------
# check 23: ring6 MMD²


def test_ring6_mmd_falls_with_steps_and_beats_the_floor():
    mix = problem("ring6").mixture
    ref = mix.sample(2000, seed=230)[0]
    floor = mmd2(mix.sample(2000, seed=231)[0], ref)
    assert abs(floor) < 0.005, floor
    ddim_mmd = [mmd2(_draw("ring6", ddim(), n, 2000, 23), ref) for n in (4, 16, 64)]
    ddpm_mmd = [mmd2(_draw("ring6", ddpm(0.0), n, 2000, 23), ref) for n in (4, 64)]
    assert ddim_mmd[0] > ddim_mmd[1] > ddim_mmd[2], ddim_mmd
    assert ddim_mmd[2] <= 0.005 and ddpm_mmd[1] <= 0.005, (ddim_mmd, ddpm_mmd)
    assert ddim_mmd[0] > 0.05 and ddpm_mmd[0] > 0.05, (ddim_mmd, ddpm_mmd)


# ----------------------------------------------------------------------------------------------
# check 24: hadamard16 Fréchet distance to the exact moments


def test_hadamard16_frechet_distance_falls_and_ddim_beats_ddpm():
    mix = problem("hadamard16").mixture
    mean, cov = mix.mean(), mix.covariance()

    def fd(sampler, n_steps):
        return frechet_distance_to(_draw("hadamard16", sampler, n_steps, 4000, 24), mean, cov)

    fd_ddim = [fd(ddim(), n) for n in (4, 8, 16)]
    fd_ddpm = [fd(ddpm(0.0), n) for n in (8, 16)]
    assert fd_ddim[0] / fd_ddim[1] >= 2.5 and fd_ddim[1] / fd_ddim[2] >= 2.5, fd_ddim
    assert fd_ddim[1] < fd_ddpm[0] and fd_ddim[2] < fd_ddpm[1], (fd_ddim, fd_ddpm)


# ----------------------------------------------------------------------------------------------
# §3.11a: DDIM-8 on ring8


def test_ring8_ddim8_mode_tv_and_mmd():
    """Mode TV from a stratified (quantile-grid) start, so its Monte Carlo error (±0.0013 at
    2^17 random starts) does not decide the test; MMD² from 4096 random draws."""
    from scipy.special import ndtri

    prob = problem("ring8")
    mix = prob.mixture
    grid = uniform_t(prob.schedule, 8)
    q = ndtri((np.arange(256) + 0.5) / 256)
    z = np.stack(np.meshgrid(q, q, indexing="ij"), axis=-1).reshape(-1, 2)
    tv = mode_tv(sample(mix.denoiser("x"), ddim(), grid, None, z_init=z), mix)
    assert 0.010 <= tv <= 0.020, tv  # measured 0.0192 (2e6 random starts: 0.0192)
    x = _draw("ring8", ddim(), 8, 4096, 8)
    mmd = mmd2(x, mix.sample(4096, seed=88)[0])
    assert 0.017 <= mmd <= 0.025, mmd
    assert mode_distance_ratio(x, mix) > 1.05  # DDIM-8 blurs the modes (measured 1.12)
