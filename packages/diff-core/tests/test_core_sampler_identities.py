"""Check 16 (sampler identities with shared noise) and check 4 (DDIM / inverse DDIM)."""

from __future__ import annotations

import numpy as np
import pytest

from diff_core import grids, sample
from diff_core.samplers import ddim, ddpm, dpmpp_2m, euler, heun
from diff_core.testing import problem
from diff_core.transitions import ddim as ddim_map
from diff_core.transitions import inv_ddim
from diff_protocol import alpha_sigma, numpy_noise, table_noise


@pytest.fixture(scope="module")
def ring6():
    prob = problem("ring6")
    grid = grids.uniform_t(prob.schedule, 64)
    return prob, grid


def _run(prob, grid, sampler, seed=3, n=512, final="step"):
    noise = numpy_noise(seed, (n, 2))
    return sample(prob.mixture.denoiser("x"), sampler, grid, noise, final=final)


@pytest.mark.smoke
def test_ddim_eta1_equals_ddpm_gamma0(ring6):
    prob, grid = ring6
    a = _run(prob, grid, ddim(eta=1.0))
    b = _run(prob, grid, ddpm(gamma=0.0))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    # and the chains are genuinely stochastic: a different seed moves the output
    c = _run(prob, grid, ddpm(gamma=0.0), seed=4)
    assert np.abs(c - b).max() > 0.1


def test_euler_sigma_equals_ddim_eta0(ring6):
    prob, grid = ring6
    a = _run(prob, grid, euler("sigma"))
    b = _run(prob, grid, ddim(eta=0.0))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_first_dpmpp_2m_step_equals_ddim(ring6):
    prob, grid = ring6
    den = prob.mixture.denoiser("x")
    z = numpy_noise(0, (512, 2))(0)
    lt, ls = grid.logsnr[0], grid.logsnr[1]
    x_hat = den(z, np.full(512, lt))
    step = dpmpp_2m()
    z_dpm, state = step.step(z, x_hat, lt, ls, None, step.init(z))
    z_ddim, _ = ddim().step(z, x_hat, lt, ls, None, ())
    np.testing.assert_allclose(z_dpm, z_ddim, rtol=0, atol=1e-12)
    assert bool(state[2]) and float(state[1]) == pytest.approx(0.5 * (ls - lt), rel=1e-15)
    # the second step is genuinely second order: it differs from DDIM by the 2M correction
    l2 = grid.logsnr[2]
    x2 = den(z_dpm, np.full(512, ls))
    z2_dpm, _ = step.step(z_dpm, x2, ls, l2, None, state)
    z2_ddim, _ = ddim().step(z_dpm, x2, ls, l2, None, ())
    r = (0.5 * (ls - lt)) / (0.5 * (l2 - ls))
    alpha_s, _ = alpha_sigma(l2)
    expected = z2_ddim - alpha_s * np.expm1(-0.5 * (l2 - ls)) * (x2 - x_hat) / (2 * r)
    np.testing.assert_allclose(z2_dpm, expected, rtol=0, atol=1e-12)


def test_full_dpmpp_chain_matches_hand_recursion(ring6):
    prob, grid = ring6
    den = prob.mixture.denoiser("x")
    z = numpy_noise(5, (256, 2))(0)
    out = sample(den, dpmpp_2m(), grid, None, z_init=z, final="step")
    x_prev, h_prev = None, None
    for k in range(grid.n_steps):
        lt, ls = grid.logsnr[k], grid.logsnr[k + 1]
        x_hat = den(z, np.full(256, lt))
        h = 0.5 * (ls - lt)
        d = x_hat if x_prev is None else x_hat + (h / (2 * h_prev)) * (x_hat - x_prev)
        a_s, s_s = alpha_sigma(ls)
        _, s_t = alpha_sigma(lt)
        z = (s_s / s_t) * z - a_s * np.expm1(-h) * d
        x_prev, h_prev = x_hat, h
    np.testing.assert_allclose(out, z, rtol=0, atol=1e-12)


def test_ddpm_gamma1_adds_large_variance():
    const = np.full((4, 3), 0.7)
    z = np.linspace(-1, 1, 12).reshape(4, 3)
    lt, ls = -1.3, 2.1
    step = ddpm(gamma=1.0).step
    with_noise, _ = step(z, const, lt, ls, np.ones_like(z), ())
    without, _ = step(z, const, lt, ls, np.zeros_like(z), ())
    c = -np.expm1(lt - ls)
    _, sigma_t = alpha_sigma(np.float64(lt))
    np.testing.assert_allclose(with_noise - without, np.sqrt(c * sigma_t**2), rtol=1e-13)
    # gamma=0 uses the posterior variance c·σ_s² and gamma=0.5 their geometric mean
    _, sigma_s = alpha_sigma(np.float64(ls))
    d0 = ddpm(0.0).step(z, const, lt, ls, np.ones_like(z), ())[0] - without
    d5 = ddpm(0.5).step(z, const, lt, ls, np.ones_like(z), ())[0] - without
    np.testing.assert_allclose(d0, np.sqrt(c) * sigma_s, rtol=1e-13)
    np.testing.assert_allclose(d5, np.sqrt(c * sigma_s * sigma_t), rtol=1e-13)


def test_ddpm_mean_is_posterior_mean():
    from diff_protocol import posterior

    z = np.linspace(-2, 2, 10).reshape(5, 2)
    x = np.linspace(1, -1, 10).reshape(5, 2)
    mean, var = posterior(z, x, -0.4, 1.7)
    out, _ = ddpm(0.0).step(z, x, -0.4, 1.7, np.zeros_like(z), ())
    np.testing.assert_allclose(out, mean, rtol=1e-14, atol=1e-15)


def test_heun_corrector_is_trapezoid_in_sigma():
    den = problem("ring6").mixture.denoiser("x")
    z = numpy_noise(1, (64, 2))(0) * 3.0
    lt, ls = -2.0, -1.0
    h = heun("sigma")
    x_t = den(z, np.full(64, lt))
    z_pred, _ = h.step(z, x_t, lt, ls, None, ())
    x_s = den(z_pred, np.full(64, ls))
    z_s, _ = h.corrector(z, x_t, z_pred, x_s, lt, ls, ())
    (a_t, s_t), (a_s, s_s) = alpha_sigma(np.float64(lt)), alpha_sigma(np.float64(ls))
    e_t, e_s = (z - a_t * x_t) / s_t, (z_pred - a_s * x_s) / s_s
    se_t, se_s = np.exp(-lt / 2), np.exp(-ls / 2)
    expected = a_s * (z / a_t + (se_s - se_t) * 0.5 * (e_t + e_s))
    np.testing.assert_allclose(z_s, expected, rtol=1e-13)


# --- check 4: DDIM and its inverse --------------------------------------------------------------


def test_inv_ddim_inverts_ddim_on_grid():
    lam = np.linspace(-10, 10, 50)
    lt, ls = np.meshgrid(lam, lam, indexing="ij")
    mask = lt < ls
    lt, ls = lt[mask], ls[mask]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(lt.shape)
    z_t = rng.standard_normal(lt.shape)
    z_s = ddim_map(x, z_t, lt, ls)
    back = inv_ddim(z_s, z_t, lt, ls)
    np.testing.assert_allclose(back, x, rtol=1e-10, atol=1e-10 * np.abs(x).max())
    # with z_t on the forward process the clean x is recovered from the noisy pair
    eps = rng.standard_normal(lt.shape)
    (a_t, s_t), (a_s, s_s) = alpha_sigma(lt), alpha_sigma(ls)
    zt = a_t * x + s_t * eps
    np.testing.assert_allclose(inv_ddim(a_s * x + s_s * eps, zt, lt, ls), x, rtol=1e-9, atol=1e-9)


def test_inv_ddim_rejects_wrong_order():
    with pytest.raises(ValueError, match="inv_ddim: logsnr_s must be > logsnr_t"):
        inv_ddim(np.zeros(3), np.zeros(3), 1.0, 1.0)
    with pytest.raises(ValueError, match="logsnr_s"):
        inv_ddim(np.zeros(3), np.zeros(3), 2.0, 1.0)


def test_table_noise_drives_the_same_chain_as_the_source():
    prob = problem("ring6")
    grid = grids.uniform_t(prob.schedule, 8)
    src = numpy_noise(9, (128, 2))
    tab = table_noise(np.stack([src(i) for i in range(9)]))
    den = prob.mixture.denoiser("x")
    a = sample(den, ddpm(), grid, src)
    b = sample(den, ddpm(), grid, tab)
    np.testing.assert_array_equal(a, b)
