"""The validation ELBO in bits per dimension (diff_pixel.metrics.elbo) against closed forms.

Gaussian data x ~ N(0, s² I) with its exact denoiser has an analytic bound per dimension
(nats): diffusion ½ ln((1 + s² e^{λmax}) / (1 + s² e^{λmin})) (I-MMSE: the ε-MMSE at λ is
s² e^λ / (1 + s² e^λ)), prior ½(α²s² + σ² − 1 − ln σ²) at λmin and continuous reconstruction
½ ln(2π σ²/α²) + ½ at λmax. Monte Carlo terms are compared with 4 standard errors computed from
the per-image values.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import log_ndtr as log_ndtr64

import diff_protocol
from diff_core.schedules import CosineSchedule
from diff_pixel.metrics.elbo import _log_bin_mass, _per_image_nats, elbo_bpd

LN2 = math.log(2.0)
S = 0.5  # data std of the Gaussian tests
SHAPE = (4, 4, 1)
D = 16
GAUSS = CosineSchedule(-10.0, 10.0)


def _coeffs(logsnr):
    lam = logsnr[:, None, None, None]
    return jax.nn.sigmoid(lam), jax.nn.sigmoid(-lam)  # α², σ²


def _eps_exact(z, logsnr):
    a2, s2 = _coeffs(logsnr)
    return jnp.sqrt(s2) * z / (a2 * S**2 + s2)


def _x_exact(z, logsnr):
    a2, s2 = _coeffs(logsnr)
    return jnp.sqrt(a2) * S**2 * z / (a2 * S**2 + s2)


def _v_exact(z, logsnr):
    a2, s2 = _coeffs(logsnr)
    return jnp.sqrt(a2) * _eps_exact(z, logsnr) - jnp.sqrt(s2) * _x_exact(z, logsnr)


EPS = diff_protocol.as_denoiser(_eps_exact, "eps")
XPRED = diff_protocol.as_denoiser(_x_exact, "x")
VPRED = diff_protocol.as_denoiser(_v_exact, "v")


def _diffusion_exact(s2, lam_min, lam_max):
    return 0.5 * math.log((1 + s2 * math.exp(lam_max)) / (1 + s2 * math.exp(lam_min)))


def _prior_exact(x2, lam_min):
    a2 = 1.0 / (1.0 + math.exp(-lam_min))
    sig2 = 1.0 - a2
    return 0.5 * (a2 * x2 + sig2 - 1.0 - math.log(sig2))


def _mean_se(values):
    """Mean and standard error per dimension of per-image nats."""
    v = np.asarray(values) / D
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


@pytest.fixture(scope="module")
def gaussian():
    x = (S * np.random.default_rng(0).standard_normal((16384, *SHAPE))).astype(np.float32)
    kw = dict(key=jax.random.key(0), time_samples=16, bin_width=None, batch_size=4096)
    return x, kw, _per_image_nats(EPS, x, GAUSS, **kw)


def test_gaussian_terms_match_closed_forms(gaussian):
    x, kw, per = gaussian
    lam_min, lam_max = GAUSS.logsnr_range
    expected = {
        "diffusion": _diffusion_exact(S**2, lam_min, lam_max),  # 4.3069 nats/dim
        "prior": _prior_exact(S**2, lam_min),  # 5.675e-6
        "reconstruction": 0.5 * math.log(2 * math.pi * math.exp(-lam_max)) + 0.5,  # -3.5811
    }
    for name, value in expected.items():
        mean, se = _mean_se(per[name])
        # measured (nats/dim): diffusion 4.3063 ± 0.0235, prior 5.688e-6 ± 1.6e-8,
        # reconstruction -3.58287 ± 0.00137
        assert abs(mean - value) < 4 * se, (name, mean, value, se)
    # the estimator is not degenerate: 16 stratified times give ~0.5 % error on the diffusion term
    assert _mean_se(per["diffusion"])[1] < 0.01 * expected["diffusion"]

    # the bound: E[total] − h(x) = ½ ln(1 + e^{−λmax}/s²) − ½ ln(1 + s² e^{λmin}) + prior ≥ 0,
    # 9.1e-5 nats (1.3e-4 bits) per dimension for s = 0.5 and λ ∈ [−10, 10]
    entropy = 0.5 * math.log(2 * math.pi * math.e * S**2) / LN2  # 1.0471 bits
    margin = sum(expected.values()) / LN2 - entropy
    assert 0.0 < margin < 2e-4
    out = elbo_bpd(EPS, x, GAUSS, **kw)
    total = (per["diffusion"] + per["prior"] + per["reconstruction"]) / (D * LN2)
    assert out["bpd"] == pytest.approx(total.mean(), rel=1e-9)
    assert out["bpd_stderr"] == pytest.approx(total.std(ddof=1) / math.sqrt(total.size))
    for name in ("diffusion", "prior", "reconstruction"):
        assert out[f"{name}_bpd"] == pytest.approx(per[name].mean() / (D * LN2), rel=1e-9)
    # measured: bpd 1.0437 ± 0.0340 against h(x) = 1.0471 bits/dim
    assert -4 * out["bpd_stderr"] < out["bpd"] - entropy < margin + 4 * out["bpd_stderr"]


def test_schedule_time_sampling_estimates_the_same_term(gaussian):
    # t uniform under the cosine's λ(t) instead of λ uniform: the same integral, other variance.
    x, kw, per = gaussian
    other = _per_image_nats(EPS, x, GAUSS, **dict(kw, time_sampling="schedule"))
    value = _diffusion_exact(S**2, *GAUSS.logsnr_range)
    mean, se = _mean_se(other["diffusion"])
    assert abs(mean - value) < 4 * se, (mean, value, se)
    assert not np.array_equal(other["diffusion"], per["diffusion"])
    np.testing.assert_array_equal(other["prior"], per["prior"])


def test_x_and_v_predictors_give_the_same_diffusion_term(gaussian):
    x, kw, per = gaussian
    for den in (XPRED, VPRED):
        other = _per_image_nats(den, x, GAUSS, **kw)
        # measured: per image within 9e-6 (x) and 4e-7 (v) relative, the means within 1e-9
        np.testing.assert_allclose(other["diffusion"], per["diffusion"], rtol=1e-4)
        assert other["diffusion"].mean() == pytest.approx(per["diffusion"].mean(), rel=1e-6)
        np.testing.assert_array_equal(other["prior"], per["prior"])
        np.testing.assert_array_equal(other["reconstruction"], per["reconstruction"])


# 8-bit levels k (x = k/127.5 − 1), with both edge levels 0 and 255 and their neighbours
LEVELS = np.array([0, 1, 2, 50, 100, 127, 128, 129, 150, 200, 250, 253, 254, 255, 64, 192])
X_STAR = (LEVELS / 127.5 - 1.0).astype(np.float32).reshape(SHAPE)


def _x_star(z, logsnr):
    return jnp.broadcast_to(jnp.asarray(X_STAR), z.shape)


POINT = diff_protocol.as_denoiser(_x_star, "x")


def _bin_nll_expected(lam_max, w=2 / 255):
    """E_ε −ln(mass of each level's bin under N(x + e^{−λmax/2} ε, e^{−λmax})), summed over the
    16 pixels, by trapezoidal quadrature over ε in float64 (not the code under test's method).

    In decoder stds the bin is [−ε − h, −ε + h] with h = (w/2) e^{λmax/2}; the interior mass is
    even in ε, so it is taken at −|ε| where both ends are ≤ h (no 1 − 1 cancellation)."""
    h = 0.5 * w * math.exp(0.5 * lam_max)
    e = np.linspace(-12.0, 12.0, 48001)
    pdf = np.exp(-0.5 * e**2) / math.sqrt(2 * math.pi)
    hi, lo = log_ndtr64(h - np.abs(e)), log_ndtr64(-h - np.abs(e))
    nll_interior = np.trapezoid(-(hi + np.log1p(-np.exp(lo - hi))) * pdf, e)
    nll_edge = np.trapezoid(-log_ndtr64(h - e) * pdf, e)  # bin (−∞, −ε + h]
    n_edge = int(np.sum((LEVELS == 0) | (LEVELS == 255)))
    return n_edge * nll_edge + (LEVELS.size - n_edge) * nll_interior


def test_point_mass_on_8_bit_levels():
    x = np.broadcast_to(X_STAR, (1024, *SHAPE)).copy()
    lam_min = -6.0
    prior = sum(_prior_exact(float(v) ** 2, lam_min) for v in X_STAR.ravel())  # nats / image
    per = {}
    for lam_max in (15.0, 4.0):
        per[lam_max] = _per_image_nats(
            POINT, x, CosineSchedule(lam_min, lam_max), key=jax.random.key(1)
        )
        assert np.all(per[lam_max]["diffusion"] == 0.0)  # ε̂ = ε exactly: the x error is 0
        np.testing.assert_allclose(per[lam_max]["prior"], prior, rtol=1e-5)  # 8.9e-4 bits/dim
    # λmax = 4: the bin is 2h = 0.058 decoder stds wide; E −ln mass = 3.8554 nats/dim by
    # quadrature, measured 3.8522 ± 0.0055
    mean, se = _mean_se(per[4.0]["reconstruction"])
    expected = _bin_nll_expected(4.0) / D
    assert abs(mean - expected) < 4 * se, (mean, expected, se)
    # λmax = 15: h = 7.09 decoder stds, E −ln mass = 5.0e-7 nats/dim (≈ 1.6 Φ(−h/√2)); the
    # estimate is carried by rare |ε| > 3 (skewed: no 4-se test), measured 2.5e-7 (max |ε| 3.8)
    mean15 = float(np.mean(per[15.0]["reconstruction"])) / D
    assert _bin_nll_expected(15.0) / D == pytest.approx(5.01e-7, rel=1e-2)
    assert 0.0 < mean15 < 2e-6
    # through the public function: the bound is the prior term, up to the ~1e-6 bits/dim above
    out = elbo_bpd(POINT, x, CosineSchedule(lam_min, 15.0), key=jax.random.key(1))
    assert out["diffusion_bpd"] == 0.0
    assert out["reconstruction_bpd"] == pytest.approx(mean15 / LN2, rel=1e-9)
    assert out["prior_bpd"] == pytest.approx(prior / (D * LN2), rel=1e-5)
    assert out["bpd"] == pytest.approx(prior / (D * LN2), rel=1e-2)


def test_log_bin_mass_is_stable():
    h = np.array([1e-4, 3e-3, 4.9e-3, 5.1e-3, 0.03, 1.0, 7.09, 40.0])[:, None]
    c = np.linspace(-30.0, 30.0, 241)[None, :]
    h, c = (np.broadcast_to(v, (h.size, c.size)).ravel() for v in (h, c))
    # closed bins, then half-open and open ones: (−∞, 0], [−3, ∞), (−∞, ∞), (−∞, −40], [40, ∞)
    center = np.concatenate([c, [-1.0, -2.0, 5.0, -41.0, 41.0]])
    half = np.concatenate([h, [1.0, 1.0, 1e-3, 1.0, 1.0]])
    lower = np.concatenate([np.zeros(c.size, bool), [True, False, True, True, False]])
    upper = np.concatenate([np.zeros(c.size, bool), [False, True, True, False, True]])
    got = jax.jit(_log_bin_mass)(
        jnp.asarray(center, jnp.float32), jnp.asarray(half, jnp.float32), lower, upper
    )
    got = np.asarray(got, np.float64)
    assert np.all(np.isfinite(got)) and np.all(got <= 0.0)
    a = np.where(lower, -np.inf, center - half)
    b = np.where(upper, np.inf, center + half)
    flip = np.where(lower | upper, upper & ~lower, center > 0)  # the bin's side of the median
    lo, hi = np.where(flip, -b, a), np.where(flip, -a, b)
    ref = log_ndtr64(hi) + np.log1p(-np.exp(log_ndtr64(lo) - log_ndtr64(hi)))  # float64
    # relative precision everywhere, also where the mass is ≈ 1 (ln mass ≈ −Φ(−x), down to
    # −1e-12 at h = 7.09) and far in the tails (ln mass ≈ −450 at |c| = 30)
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-30)
    assert got[-3] == 0.0


class _ScaledGaussian(nnx.Module):
    """The exact ε-predictor for x ~ N(0, (gain·cond['s'])² I), per image."""

    prediction = "eps"

    def __init__(self) -> None:
        self.gain = nnx.Param(jnp.ones((), jnp.float32))

    def __call__(self, z, logsnr, cond, dropout_key=None):
        a2, s2 = _coeffs(logsnr)
        scale = (self.gain[...] * cond["s"])[:, None, None, None] ** 2
        return jnp.sqrt(s2) * z / (a2 * scale + s2)


def test_nnx_model_cond_and_batch_size_independence():
    n = 1000
    scales = np.where(np.arange(n) % 2 == 0, 0.25, 1.0).astype(np.float32)
    x = scales[:, None, None, None] * np.random.default_rng(2).standard_normal((n, *SHAPE))
    x = x.astype(np.float32)
    cond = {"s": jnp.asarray(scales)}
    model = _ScaledGaussian()
    sched = CosineSchedule(-8.0, 8.0)
    kw = dict(key=jax.random.key(3), cond=cond, time_samples=8, bin_width=None)
    per = _per_image_nats(model, x, sched, batch_size=64, **kw)
    # each image is scored against its own condition (the slicing follows the images)
    for s in (0.25, 1.0):
        mean, se = _mean_se(per["diffusion"][scales == s])
        # expected 2.6164 (s = 0.25), 4.0000 (s = 1) nats/dim; measured 2.475 ± 0.097 and
        # 4.185 ± 0.120
        value = _diffusion_exact(s**2, -8.0, 8.0)
        assert abs(mean - value) < 4 * se, (s, mean, value, se)
    # batch size 7 (143 batches, the last padded) and 64 give the same numbers
    per7 = _per_image_nats(model, x, sched, batch_size=7, **kw)
    for name in per:  # measured: bitwise equal
        np.testing.assert_allclose(per7[name], per[name], rtol=1e-7, atol=0.0)
    out64 = elbo_bpd(model, x, sched, batch_size=64, **kw)
    # deterministic for a key; another key gives other draws
    assert elbo_bpd(model, x, sched, batch_size=64, **kw) == out64
    other = elbo_bpd(model, x, sched, batch_size=64, **{**kw, "key": jax.random.key(4)})
    assert other["diffusion_bpd"] != out64["diffusion_bpd"]
    # the weights are traced arguments, not constants: an in-place update is seen
    model.gain[...] = jnp.asarray(2.0, jnp.float32)
    worse = elbo_bpd(model, x, sched, batch_size=64, **kw)
    assert worse["diffusion_bpd"] > out64["diffusion_bpd"] + 0.1


class _BadPrediction:
    prediction = "y"

    def __call__(self, z, logsnr, cond=None):
        return z


def test_bad_inputs():
    x = np.zeros((3, *SHAPE), np.float32)
    key = jax.random.key(0)
    with pytest.raises(TypeError, match="elbo_bpd: model must be an nnx.Module or a"):
        elbo_bpd(lambda z, lam: z, x, GAUSS, key=key)
    with pytest.raises(TypeError, match="elbo_bpd: model must be .* got prediction 'y'"):
        elbo_bpd(_BadPrediction(), x, GAUSS, key=key)
    with pytest.raises(ValueError, match=r"elbo_bpd: images must be a non-empty 4-D .*\(3, 4, 4\)"):
        elbo_bpd(EPS, x[..., 0], GAUSS, key=key)
    with pytest.raises(TypeError, match="elbo_bpd: images must be a float array"):
        elbo_bpd(EPS, np.zeros((3, *SHAPE), np.uint8), GAUSS, key=key)
    with pytest.raises(ValueError, match=r"elbo_bpd: images must lie in \[-1, 1\] when bin_width"):
        elbo_bpd(EPS, x + 1.5, GAUSS, key=key)
    with pytest.raises(ValueError, match="elbo_bpd: images must be finite"):
        elbo_bpd(EPS, x * np.nan, GAUSS, key=key, bin_width=None)
    for bad in (0.0, -1.0, 3.0):
        with pytest.raises(ValueError, match=r"elbo_bpd: bin_width must be None or a number in"):
            elbo_bpd(EPS, x, GAUSS, key=key, bin_width=bad)
    with pytest.raises(ValueError, match="elbo_bpd: time_samples must be a positive int, got 0"):
        elbo_bpd(EPS, x, GAUSS, key=key, time_samples=0)
    with pytest.raises(TypeError, match="elbo_bpd: time_samples must be a positive int, got 2.0"):
        elbo_bpd(EPS, x, GAUSS, key=key, time_samples=2.0)
    with pytest.raises(ValueError, match="time_sampling must be one of .*got 'uniform'"):
        elbo_bpd(EPS, x, GAUSS, key=key, time_sampling="uniform")
    with pytest.raises(ValueError, match="elbo_bpd: batch_size must be a positive int, got 0"):
        elbo_bpd(EPS, x, GAUSS, key=key, batch_size=0)
    with pytest.raises(TypeError, match="elbo_bpd: key must be a JAX PRNG key"):
        elbo_bpd(EPS, x, GAUSS, key=0)
    with pytest.raises(ValueError, match="elbo_bpd: schedule must have a finite logsnr_range"):
        elbo_bpd(EPS, x, CosineSchedule(-math.inf, math.inf), key=key)
    with pytest.raises(TypeError, match="elbo_bpd: schedule must be a diff-core schedule"):
        elbo_bpd(EPS, x, object(), key=key)
    with pytest.raises(ValueError, match="elbo_bpd: cond must be a pytree of arrays with leading"):
        elbo_bpd(EPS, x, GAUSS, key=key, cond={"s": np.zeros(2)})
