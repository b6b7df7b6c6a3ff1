"""The weighted loss: the three error spaces agree (check 13), the irreducible loss (check 14)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diff_core.losses import diffusion_loss, training_inputs
from diff_core.schedules import CosineSchedule, KarrasSchedule
from diff_core.timesampling import stratified_times
from diff_core.weighting import (
    SPACES,
    edm,
    elbo,
    eps_mse,
    kingma_gao,
    min_snr,
    sigmoid,
    v_mse,
    x_mse,
)
from diff_protocol import alpha_sigma, diffuse
from diff_protocol.testing import BACKENDS, backend, to_numpy

PREDICTIONS = ("eps", "x", "v")


def _weightings():
    return [
        eps_mse(),
        v_mse(),
        x_mse(),
        elbo(),
        kingma_gao(lambda lam: 1.0 / (1.0 + lam**2)),
        sigmoid(-1.0),
        sigmoid(2.0),
        edm(),
        min_snr(),
    ]


def _random_problem(b: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, 3, 4))
    eps = rng.standard_normal((b, 3, 4))
    out = rng.standard_normal((b, 3, 4))
    lam = rng.uniform(-20.0, 15.0, b)
    slope = -rng.uniform(0.5, 500.0, b)
    return x, eps, out, lam, slope


def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


@pytest.mark.smoke
def test_three_spaces_agree_float64_check13():
    x, eps, out, lam, slope = _random_problem(256)
    z = diffuse(x, eps, lam)
    worst = 0.0
    for pred in PREDICTIONS:
        for w in _weightings():
            losses = [
                diffusion_loss(out, x, eps, lam, slope, prediction=pred, weighting=w, space=s)
                for s in SPACES
            ]
            # through the given z (conversion as a network pipeline does it): same numbers
            for k, space in enumerate(SPACES):
                with_z = diffusion_loss(
                    out, x, eps, lam, slope, prediction=pred, weighting=w, space=space, z=z
                )
                np.testing.assert_allclose(with_z, losses[k], rtol=1e-10)
            for other in losses[1:]:
                rel = np.max(np.abs(other / losses[0] - 1))
                worst = max(worst, rel)
                assert rel <= 1e-10, (pred, w.name, rel)
            assert losses[0].shape == (256,)
    assert worst > 0.0  # the spaces are really computed differently


@pytest.mark.parametrize("name", BACKENDS)
def test_three_spaces_agree_float32_every_backend(name):
    xp, asarray = backend(name)
    x, eps, out, lam, slope = (asarray(a, "float32") for a in _random_problem(32, seed=1))
    for pred in PREDICTIONS:
        for w in (eps_mse(), v_mse(), x_mse(), elbo(), sigmoid(-1.0), edm(), min_snr()):
            losses = [
                to_numpy(
                    diffusion_loss(out, x, eps, lam, slope, prediction=pred, weighting=w, space=s)
                ).astype(np.float64)
                for s in SPACES
            ]
            for other in losses[1:]:
                np.testing.assert_allclose(other, losses[0], rtol=1e-4, err_msg=f"{pred} {w.name}")
    loss = diffusion_loss(out, x, eps, lam, slope, prediction="v", weighting=sigmoid(), space="x")
    assert loss.dtype == x.dtype and tuple(loss.shape) == (32,)


def test_own_space_is_the_plain_formula_and_reduce():
    x, eps, out, lam, slope = _random_problem(16, seed=2)
    w = sigmoid(-1.0)
    factor = -slope * _sig(-1.0 - lam)
    got = diffusion_loss(out, x, eps, lam, slope, prediction="eps", weighting=w)
    np.testing.assert_allclose(
        got, 0.5 * factor * np.mean((eps - out) ** 2, axis=(1, 2)), rtol=1e-14
    )
    total = diffusion_loss(out, x, eps, lam, slope, prediction="eps", weighting=w, reduce="sum")
    np.testing.assert_allclose(total, 12 * got, rtol=1e-14)
    # x prediction in x-space: ½ (−λ') e^b sigmoid(λ − b) ‖x − x̂‖²/D
    got_x = diffusion_loss(out, x, eps, lam, slope, prediction="x", weighting=w)
    fx = -slope * math.exp(-1.0) * _sig(lam + 1.0)
    np.testing.assert_allclose(got_x, 0.5 * fx * np.mean((x - out) ** 2, axis=(1, 2)), rtol=1e-13)
    # a perfect prediction has zero loss in every space
    a, s = alpha_sigma(lam[:, None, None])
    perfect_v = a * eps - s * x
    for space in SPACES:
        zero = diffusion_loss(
            perfect_v, x, eps, lam, slope, prediction="v", weighting=w, space=space
        )
        assert np.max(np.abs(zero)) < 1e-18, space


def test_per_frame_logsnr():
    """logsnr with shape (B, F) weights each frame with its own factor (rolling diffusion)."""
    rng = np.random.default_rng(3)
    x, eps, out = (rng.standard_normal((4, 5, 6)) for _ in range(3))
    lam = rng.uniform(-5, 5, (4, 5))
    got = diffusion_loss(out, x, eps, lam, prediction="x", weighting=v_mse(), space="eps")
    z = diffuse(x, eps, lam)
    a, s = alpha_sigma(lam[..., None])
    eps_hat = (z - a * out) / s
    ref = 0.5 * np.mean((1 + np.exp(-lam))[..., None] * (eps - eps_hat) ** 2, axis=(1, 2))
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_irreducible_loss_check14():
    """Data N(0.3, 0.5²), exact denoiser, cos±15, sigmoid(−1): MC mean vs the closed form."""
    from scipy import integrate

    mu, std, b = 0.3, 0.5, -1.0
    lmin, lmax = -15.0, 15.0
    c = 2 * math.log(std)
    k = b + c

    def softplus(v):
        return max(v, 0.0) + math.log1p(math.exp(-abs(v)))

    def big_f(lam):
        return softplus(lam + c) - softplus(b - lam) - lam

    closed = 0.5 * (big_f(lmax) - big_f(lmin)) / (1 - math.exp(-k))
    quad, _ = integrate.quad(
        lambda lam: 0.5 * _sig(b - lam) * _sig(lam + c), lmin, lmax, epsabs=1e-14, epsrel=1e-13
    )
    assert abs(closed - quad) <= 1e-9
    assert abs(closed - 0.1208479) < 5e-8

    s = CosineSchedule(lmin, lmax)
    rng = np.random.default_rng(14)
    n = 2**20
    t = stratified_times(rng.random(n))
    x = mu + std * rng.standard_normal((n, 1))
    eps = rng.standard_normal((n, 1))
    z, lam, slope = training_inputs(s, x, t, eps)
    a, sg = alpha_sigma(lam[:, None])
    eps_hat = sg * (z - a * mu) / (a**2 * std**2 + sg**2)
    loss = diffusion_loss(eps_hat, x, eps, lam, slope, prediction="eps", weighting=sigmoid(b))
    mc = float(np.mean(loss))
    assert abs(mc / closed - 1) < 0.0075, mc


def test_training_inputs():
    s = KarrasSchedule()
    rng = np.random.default_rng(5)
    x, eps = rng.standard_normal((8, 2, 3)), rng.standard_normal((8, 2, 3))
    t = rng.random(8)
    z, lam, slope = training_inputs(s, x, t, eps)
    np.testing.assert_array_equal(lam, s.logsnr(t))
    np.testing.assert_array_equal(slope, s.dlogsnr_dt(t))
    lam3 = lam[:, None, None]
    ref = np.sqrt(_sig(lam3)) * x + np.sqrt(_sig(-lam3)) * eps
    np.testing.assert_allclose(z, ref, rtol=1e-13, atol=1e-14)
    z32, lam32, slope32 = training_inputs(s, x.astype(np.float32), t.astype(np.float32), eps)
    assert lam32.dtype == slope32.dtype == z32.dtype == np.float32


def test_low_precision_output_gives_float32_loss():
    torch = pytest.importorskip("torch")
    x, eps, out, lam, slope = (torch.from_numpy(a) for a in _random_problem(8, seed=6))
    ref = diffusion_loss(
        out.float(),
        x.float(),
        eps.float(),
        lam.float(),
        slope.float(),
        prediction="v",
        weighting=sigmoid(),
    )
    got = diffusion_loss(
        out.bfloat16(),
        x.bfloat16(),
        eps.bfloat16(),
        lam,
        slope,
        prediction="v",
        weighting=sigmoid(),
    )
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=0.05)


def test_jit_and_gradient_under_jax():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x, eps, out, lam, slope = (jnp.asarray(a, dtype=jnp.float32) for a in _random_problem(8, 7))
    w = sigmoid(-2.0)

    def mean_loss(o):
        return jnp.mean(diffusion_loss(o, x, eps, lam, slope, prediction="eps", weighting=w))

    g = jax.jit(jax.grad(mean_loss))(out)
    factor = -np.asarray(slope) * _sig(-2.0 - np.asarray(lam))
    ref = factor[:, None, None] * (np.asarray(out) - np.asarray(eps)) / (12 * 8)
    np.testing.assert_allclose(np.asarray(g), ref, rtol=1e-5, atol=1e-8)


def test_loss_errors():
    x, eps, out, lam, slope = _random_problem(4)
    kw = {"prediction": "eps", "weighting": eps_mse()}
    with pytest.raises(
        ValueError, match="diffusion_loss: dlogsnr_dt must be an array for weighting 'elbo'"
    ):
        diffusion_loss(out, x, eps, lam, None, prediction="eps", weighting=elbo())
    with pytest.raises(
        ValueError, match="diffusion_loss: prediction must be one of 'eps', 'v', 'x', got 'epsilon'"
    ):
        diffusion_loss(out, x, eps, lam, prediction="epsilon", weighting=eps_mse())
    with pytest.raises(ValueError, match="diffusion_loss: space must be one of"):
        diffusion_loss(out, x, eps, lam, space="score", **kw)
    with pytest.raises(ValueError, match="diffusion_loss: reduce must be one of 'mean', 'sum'"):
        diffusion_loss(out, x, eps, lam, reduce="max", **kw)
    with pytest.raises(ValueError, match=r"diffusion_loss: eps shape \(4, 3\) must equal x shape"):
        diffusion_loss(out, x, eps[:, :, 0], lam, **kw)
    with pytest.raises(TypeError, match="diffusion_loss: weighting must be a diff_core Weighting"):
        diffusion_loss(out, x, eps, lam, prediction="eps", weighting="sigmoid")
    with pytest.raises(ValueError, match=r"logsnr shape \(3,\) must be a prefix of z shape"):
        diffusion_loss(out, x, eps, lam[:3], space="x", **kw)
    with pytest.raises(
        ValueError, match=r"training_inputs: t shape \(3,\) must be a prefix of x shape"
    ):
        training_inputs(CosineSchedule(), x, np.full(3, 0.5), eps)
    # a weighting that ignores dλ/dt accepts None; Python-float logsnr works
    one = diffusion_loss(out, x, eps, 0.0, prediction="x", weighting=x_mse(), space="eps")
    np.testing.assert_allclose(one, 0.5 * np.mean((x - out) ** 2, axis=(1, 2)), rtol=1e-12)
