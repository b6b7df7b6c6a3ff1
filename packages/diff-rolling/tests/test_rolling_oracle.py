"""Checks 3-4 of rolling.md §10: the exact linear-Gaussian denoiser and the Bayes floor of the
rolling objective."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diff_rolling import GaussianVideo
from diff_rolling.losses import RollingRecipe, rolling_loss


def _ortho_dft(n: int) -> np.ndarray:
    """The unitary 2-D DFT matrix acting on flattened n×n frames (fft2 with norm="ortho")."""
    f1 = np.fft.fft(np.eye(n), norm="ortho")
    return np.kron(f1, f1)


def _pixel_joint(gv: GaussianVideo, window: int) -> np.ndarray:
    """Covariance of (context, x_0..x_{W-1}) in pixel space, built from the sampling recursion
    x_{k+1} = T x_k + noise with T, Q, S0 the pixel-space operators (no mode algebra)."""
    n = gv.resolution
    phi, power = gv.modes()
    f = _ortho_dft(n)
    fi = f.conj().T

    def op(diag):
        return np.real(fi @ np.diag(diag.ravel()) @ f)

    t_op, q, s0 = op(phi), op(power * (1 - np.abs(phi) ** 2)), op(power.astype(complex))
    frames = window + 1
    d = n * n
    cov = np.zeros((frames * d, frames * d))
    var = [s0]
    for _ in range(1, frames):
        var.append(t_op @ var[-1] @ t_op.T + q)
    for i in range(frames):
        block = var[i]
        for j in range(i, frames):
            cov[j * d : (j + 1) * d, i * d : (i + 1) * d] = block
            cov[i * d : (i + 1) * d, j * d : (j + 1) * d] = block.T
            block = t_op @ block
    return cov


@pytest.mark.smoke
def test_rolling_exact_denoiser_equals_brute_force_conditioning():
    gv = GaussianVideo(
        resolution=3, phi=0.8, spectrum="power", velocity=(0.7, -0.3), diffusivity=0.05
    )
    w, d = 4, 9
    cov = _pixel_joint(gv, w)
    rng = np.random.default_rng(0)
    lam = rng.uniform(-4, 6, size=(2, w))
    alpha = np.sqrt(1 / (1 + np.exp(-lam)))
    sigma = np.sqrt(1 / (1 + np.exp(lam)))
    ctx = rng.normal(size=(2, 1, 3, 3, 1))
    z = rng.normal(size=(2, w, 3, 3, 1))
    with jax.enable_x64(True):
        got = np.asarray(
            gv.exact_denoiser()(jnp.asarray(z), jnp.asarray(lam), {"context": jnp.asarray(ctx)})
        )
    for b in range(2):
        # condition x (window) on c (context) and z = A x + S e
        c_cc = cov[:d, :d]
        c_xc = cov[d:, :d]
        c_xx = cov[d:, d:]
        a = np.repeat(alpha[b], d)
        s2 = np.repeat(sigma[b] ** 2, d)
        # joint of (c, z): observations y = [c; z]
        h = np.zeros(((w + 1) * d, (w + 1) * d))
        h[:d, :d] = np.eye(d)
        h[d:, d:] = np.diag(a)
        full = cov
        c_yy = h @ full @ h.T + np.diag(np.concatenate([np.zeros(d), s2]))
        c_xy = np.concatenate([c_xc, c_xx], axis=1) @ h.T
        y = np.concatenate([ctx[b].ravel(), z[b].ravel()])
        expect = c_xy @ np.linalg.solve(c_yy, y)
        assert np.max(np.abs(got[b].ravel() - expect)) < 1e-8
        assert c_cc.shape == (d, d)


def test_rolling_exact_denoiser_white_is_scalar_ar1():
    gv = GaussianVideo(resolution=4, phi=0.9)
    w = 5
    rng = np.random.default_rng(1)
    lam = rng.uniform(-5, 8, size=(3, w))
    ctx = rng.normal(size=(3, 2, 4, 4, 1))
    z = rng.normal(size=(3, w, 4, 4, 1))
    with jax.enable_x64(True):
        got = np.asarray(
            gv.exact_denoiser()(jnp.asarray(z), jnp.asarray(lam), {"context": jnp.asarray(ctx)})
        )
    a = 0.9
    i = np.arange(w)
    cov = a ** np.abs(i[:, None] - i[None, :]) - np.outer(a ** (i + 1), a ** (i + 1))
    for b in range(3):
        al = np.sqrt(1 / (1 + np.exp(-lam[b])))
        s2 = 1 / (1 + np.exp(lam[b]))
        c = ctx[b, -1].ravel()
        mean = np.outer(a ** (i + 1), c)  # (W, pixels)
        gain = cov * al[None, :] @ np.linalg.inv(al[:, None] * cov * al[None, :] + np.diag(s2))
        zz = z[b].reshape(w, -1)
        expect = mean + gain @ (zz - al[:, None] * mean)
        assert np.max(np.abs(got[b].reshape(w, -1) - expect)) < 1e-10
    # the uniform fast path and the per-mode path agree (a white spectrum forced through the FFT)
    den = gv.exact_denoiser()
    den._uniform = False
    with jax.enable_x64(True):
        slow = np.asarray(den(jnp.asarray(z), jnp.asarray(lam), {"context": jnp.asarray(ctx)}))
    assert np.max(np.abs(slow - got)) < 1e-10


@pytest.mark.parametrize(
    ("window", "regime", "expected"),
    [
        (4, "rolling", 0.26139),
        (4, "init", 0.21875),
        (4, "mixed", 0.25713),
        (8, "rolling", 0.28528),
        (8, "init", 0.27742),
        (8, "mixed", 0.28449),
    ],
)
def test_rolling_loss_floor_quadrature(window, regime, expected):
    floor = GaussianVideo(resolution=4).loss_floor(window, regime, beta=0.1)
    assert abs(floor.mean - expected) < 5e-5  # the spec quotes five decimals
    if (window, regime) == (4, "rolling"):
        assert np.allclose(floor.per_position, [0.4066, 0.2313, 0.1964, 0.2113], atol=2e-4)


@pytest.mark.parametrize("regime", ["rolling", pytest.param("mixed", marks=pytest.mark.slow)])
def test_rolling_loss_monte_carlo_equals_bayes_floor(regime):
    """4096 stratified windows × 256 pixels of the objective with the exact denoiser."""
    gv = GaussianVideo(resolution=16, phi=0.9)
    x = gv.sample(jax.random.key(0), 4096, 5)
    recipe = RollingRecipe(window=4, context=1, regime=regime, beta=0.1)
    den = gv.exact_denoiser()
    batch = {"x": x, "index": jnp.arange(4096)}
    loss, m = jax.jit(lambda b, k: rolling_loss(den, b, k, recipe))(batch, jax.random.key(1))
    floor = gv.loss_floor(4, regime, beta=0.1)
    assert abs(float(loss) - floor.mean) < 0.01 * floor.mean
    if regime == "rolling":
        per = np.asarray(m["loss_per_position"])
        assert np.all(np.abs(per - floor.per_position) < 0.02 * floor.per_position)
        assert float(m["frac_init"]) == 0.0 and float(m["loss_init"]) == 0.0
    else:
        assert abs(float(m["frac_init"]) - 0.1) < 0.02
        assert np.isfinite(float(m["loss_init"])) and float(m["loss_init"]) > 0
