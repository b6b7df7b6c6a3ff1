"""The Denoiser protocol (diff_protocol.denoiser) with an exact Gaussian denoiser.

For data x ~ N(μ, s²) the posterior mean is E[x | z] = μ + α s² (z − α μ)/(α² s² + σ²). Three
denoisers give this one estimate as eps, v or x; ``denoise`` must turn each into the same
(x̂, ε̂), and ε̂ must equal the exact E[ε | z] = σ (z − α μ)/(α² s² + σ²).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import diff_protocol as dp
from diff_protocol.testing import BACKENDS, backend, to_numpy

FLOAT = {"numpy": "float64", "array_api_strict": "float64", "torch": "float64", "jax": "float32"}
MU, S = 0.3, 0.5


def _ref(z: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact E[x | z] and E[ε | z] for N(MU, S²) data in float64 (α² = 1/(1 + e^{−λ}))."""
    a = np.sqrt(1.0 / (1.0 + np.exp(-lam)))[:, None]
    s = np.sqrt(1.0 / (1.0 + np.exp(lam)))[:, None]
    denom = a**2 * S**2 + s**2
    return MU + a * S**2 * (z - a * MU) / denom, s * (z - a * MU) / denom


def _gaussian_denoisers(xp):
    """The exact posterior mean written three ways, each with only array-API operations."""

    def coeffs(z, lam):
        lam = xp.reshape(lam, (lam.shape[0],) + (1,) * (z.ndim - 1))
        a2 = 1.0 / (1.0 + xp.exp(-lam))
        a, s = xp.sqrt(a2), xp.sqrt(1.0 - a2)
        denom = a2 * S**2 + s**2
        return a, s, denom

    def x_fn(z, lam):
        a, s, d = coeffs(z, lam)
        return MU + a * S**2 * (z - a * MU) / d

    def eps_fn(z, lam):
        a, s, d = coeffs(z, lam)
        return s * (z - a * MU) / d

    def v_fn(z, lam):
        a, s, d = coeffs(z, lam)
        return a * eps_fn(z, lam) - s * x_fn(z, lam)

    return {
        "x": dp.as_denoiser(x_fn, "x"),
        "eps": dp.as_denoiser(eps_fn, "eps"),
        "v": dp.as_denoiser(v_fn, "v"),
    }


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.smoke
def test_denoise_gives_the_exact_posterior_whatever_the_prediction(name):
    xp, asarray = backend(name)
    dt = FLOAT[name]
    lam_np = np.linspace(-8.0, 8.0, 17) if dt == "float64" else np.linspace(-4.0, 4.0, 9)
    z_np = np.random.default_rng(0).standard_normal((lam_np.shape[0], 6))
    z, lam = asarray(z_np, dt), asarray(lam_np, dt)
    x_ref, eps_ref = _ref(z_np.astype(dt).astype(np.float64), lam_np.astype(dt).astype(np.float64))
    tol = 1e-12 if dt == "float64" else 2e-5
    denoisers = _gaussian_denoisers(xp)

    def all_estimates(z, lam):
        return {p: dp.denoise(d, z, lam) for p, d in denoisers.items()}

    if name == "jax":  # one compilation instead of one per eager primitive
        import jax

        all_estimates = jax.jit(all_estimates)
    estimates = all_estimates(z, lam)
    for prediction, d in denoisers.items():
        assert isinstance(d, dp.Denoiser) and d.prediction == prediction
        x_hat, eps_hat = estimates[prediction]
        assert str(to_numpy(x_hat).dtype) == dt
        np.testing.assert_allclose(to_numpy(x_hat), x_ref, rtol=0, atol=tol * 10)
        np.testing.assert_allclose(to_numpy(eps_hat), eps_ref, rtol=0, atol=tol * 10)


def test_as_denoiser_passes_cond_only_when_given():
    calls = []

    def uncond(z, logsnr):
        calls.append("uncond")
        return z * 0.0

    def cond_fn(z, logsnr, cond):
        calls.append(cond)
        return z * 0.0 + cond

    z = np.ones((2, 3))
    assert np.array_equal(dp.as_denoiser(uncond, "eps")(z, 0.0), np.zeros((2, 3)))
    d = dp.as_denoiser(cond_fn, "x")
    x_hat, eps_hat = dp.denoise(d, z, np.array([0.0, 1.0]), cond=2.0)
    assert calls == ["uncond", 2.0]
    np.testing.assert_array_equal(x_hat, np.full((2, 3), 2.0))
    # ε̂ = (z − α x̂)/σ at λ = 0 and λ = 1
    a = np.sqrt(1.0 / (1.0 + np.exp(-np.array([0.0, 1.0]))))[:, None]
    s = np.sqrt(1.0 - a**2)
    np.testing.assert_allclose(eps_hat, (z - a * 2.0) / s, rtol=1e-14)
    # the wrapper keeps the function reachable and prints what it wraps
    assert d.__wrapped__ is cond_fn and "cond_fn" in repr(d) and "'x'" in repr(d)


def test_a_class_with_prediction_is_a_denoiser():
    class Model:
        prediction = "v"

        def __call__(self, z, logsnr, cond=None):
            return np.zeros_like(z)

    model = Model()
    assert isinstance(model, dp.Denoiser)
    x_hat, eps_hat = dp.denoise(model, np.full(4, 2.0), np.float64(np.inf))
    # v̂ = 0 at λ = +inf: x̂ = α z − σ v̂ = z and ε̂ = σ z + α v̂ = 0, exactly
    assert x_hat.tolist() == [2.0] * 4 and eps_hat.tolist() == [0.0] * 4
    assert dp.check_denoiser("sample", model) == "v"


def test_denoiser_errors():
    with pytest.raises(TypeError, match=re.escape("as_denoiser: fn must be callable, got 3")):
        dp.as_denoiser(3, "eps")
    with pytest.raises(
        ValueError,
        match=re.escape("as_denoiser: prediction must be one of 'eps', 'v', 'x', got 'epsilon'"),
    ):
        dp.as_denoiser(lambda z, lam: z, "epsilon")
    with pytest.raises(
        TypeError, match=re.escape("denoise: denoiser must have a 'prediction' attribute")
    ) as info:
        dp.denoise(lambda z, lam: z, np.ones(2), 0.0)
    assert "as_denoiser" in str(info.value)  # the message says how to fix it

    class Bad:
        prediction = "score"

        def __call__(self, z, logsnr, cond=None):
            return z

    with pytest.raises(
        ValueError,
        match=re.escape("sample: prediction must be one of 'eps', 'v', 'x', got 'score'"),
    ):
        dp.check_denoiser("sample", Bad())
    with pytest.raises(TypeError, match=re.escape("sample: denoiser must be callable")):
        dp.check_denoiser("sample", object())
