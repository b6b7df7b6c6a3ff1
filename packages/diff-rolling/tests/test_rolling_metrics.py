"""Check 11 of rolling.md §10: the forecast metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diff_rolling import metrics


@pytest.mark.smoke
def test_rolling_correlation_and_nmse_identities():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 16, 16, 1))
    assert np.allclose(metrics.vorticity_correlation(x, x), 1.0, atol=1e-12)
    assert np.allclose(metrics.vorticity_correlation(-x, x), -1.0, atol=1e-12)
    assert np.allclose(metrics.vorticity_correlation(3.7 * x, x), 1.0, atol=1e-6)
    assert np.allclose(metrics.normalized_mse(x, x), 0.0)
    y = rng.normal(size=x.shape)
    assert np.allclose(
        metrics.normalized_mse(x, y, variance=2.0), ((x - y) ** 2).mean((0, 2, 3, 4)) / 2
    )
    assert np.array_equal(metrics.persistence(x[:, :2], 4)[:, 3], x[:, 1])
    with pytest.raises(ValueError, match="normalized_mse: pred and truth must have one shape"):
        metrics.normalized_mse(x, x[:, :2])


def test_rolling_energy_spectrum_parseval_and_shells():
    rng = np.random.default_rng(1)
    n = 32
    uv = rng.normal(size=(4, n, n, 2))
    k, e = metrics.energy_spectrum(uv)
    assert abs(e.sum() - 0.5 * (uv**2).sum(-1).mean()) < 1e-5 * e.sum()
    # vorticity of a single Fourier mode (3, 4): all energy in shell 5
    xx, yy = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    w = np.cos(2 * np.pi * (3 * xx + 4 * yy) / n)[None, :, :, None]
    k, e = metrics.energy_spectrum(w)
    assert e[5] / e.sum() >= 0.999
    # vorticity path and velocity path agree (ω from u through the stream function)
    from diff_rolling.data.kolmogorov import velocity_to_vorticity

    vort = np.asarray(velocity_to_vorticity(uv))
    _, e_v = metrics.energy_spectrum(vort)
    assert e_v[0] == pytest.approx(0.0, abs=1e-12)
    assert metrics.spectrum_error(uv, uv) == 0.0


def test_rolling_time_to_threshold():
    assert metrics.time_to_threshold([0.95, 0.85, 0.75], dt=0.4, threshold=0.8) == pytest.approx(
        0.4 * 2.5
    )
    assert metrics.time_to_threshold([0.9, 0.9], threshold=0.5) == math.inf
    assert metrics.time_to_threshold([0.6], dt=1.0, threshold=0.8) == pytest.approx(0.5)
