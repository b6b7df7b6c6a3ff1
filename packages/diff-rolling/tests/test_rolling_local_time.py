"""Checks 1-2 of rolling.md §10: exact identities of the local-time maps and the training draw."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from diff_rolling import (
    LocalTimeRange,
    init_times,
    local_times,
    rolling_times,
    sample_local_times,
)
from diff_rolling.testing import check_local_time_maps


@pytest.mark.smoke
@pytest.mark.parametrize("window", [1, 2, 4, 8, 24])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rolling_maps_exact_identities(window, dtype):
    t = np.linspace(0.0, 1.0, 1001, dtype=dtype)
    roll, init = rolling_times(t, window), init_times(t, window)
    assert roll.dtype == dtype and roll.shape == (1001, window)
    # hand-off and shift identities, bitwise
    assert np.array_equal(init_times(dtype(0.0), window), rolling_times(dtype(0.0), window))
    r1, r0 = rolling_times(dtype(1.0), window), rolling_times(dtype(0.0), window)
    assert np.array_equal(r1[:-1], r0[1:])
    assert np.all(init_times(dtype(1.0), window) == 1.0)
    # monotone in k and in t; frame k inside [k/W, (k+1)/W]
    assert np.all(np.diff(roll, axis=1) >= 0) and np.all(np.diff(init, axis=1) >= 0)
    assert np.all(np.diff(roll, axis=0) >= 0) and np.all(np.diff(init, axis=0) >= 0)
    k = np.arange(window)
    assert np.all(roll >= (k / window).astype(dtype)) and np.all(
        roll <= ((k + 1) / window).astype(dtype)
    )
    check_local_time_maps(rolling_times, init_times, window)


def test_rolling_maps_values_and_jax():
    assert rolling_times(1.0, 4).tolist() == [0.25, 0.5, 0.75, 1.0]
    assert rolling_times(0.0, 4).tolist() == [0.0, 0.25, 0.5, 0.75]
    assert init_times(0.5, 4).tolist() == [0.5, 0.75, 1.0, 1.0]
    assert local_times(0.3, 3, "standard").tolist() == [0.3, 0.3, 0.3]
    tj = jnp.linspace(0.0, 1.0, 11, dtype=jnp.float32)
    assert np.array_equal(np.asarray(rolling_times(tj, 8)), rolling_times(np.asarray(tj), 8))
    jitted = jax.jit(lambda t: rolling_times(t, 8))(tj)
    assert np.array_equal(np.asarray(jitted), rolling_times(np.asarray(tj), 8))
    rng = LocalTimeRange(0.2, 0.8)
    assert np.allclose(rng(rolling_times(1.0, 4)), 0.2 + 0.6 * np.array([0.25, 0.5, 0.75, 1.0]))


def test_rolling_maps_validation_messages():
    with pytest.raises(ValueError, match=r"^rolling_times: window must be a positive int, got 0$"):
        rolling_times(0.5, window=0)
    with pytest.raises(ValueError, match="init_times: window"):
        init_times(0.5, 2.0)
    with pytest.raises(ValueError, match=r"rolling_times: t must be in \[0, 1\], got 1.5"):
        rolling_times(1.5, 4)
    with pytest.raises(
        ValueError, match=r"^sample_local_times: beta must be in \[0, 1\], got 1.5$"
    ):
        sample_local_times(jax.random.key(0), 8, 4, beta=1.5)
    with pytest.raises(ValueError, match="regime"):
        local_times(0.5, 4, "causal")
    with pytest.raises(ValueError, match="LocalTimeRange"):
        LocalTimeRange(0.5, 0.5)


def test_rolling_training_draw_statistics():
    b, w = 2**16, 4
    d = sample_local_times(jax.random.key(0), b, w, beta=0.1)
    is_init = np.asarray(d.is_init)
    assert abs(is_init.mean() - 0.1) < 0.006  # 4σ at B = 2^16
    local, t = np.asarray(d.local), np.asarray(d.t)
    # stratified global time: one draw per stratum of width 1/B
    assert np.array_equal(np.sort(np.floor(t * b)), np.arange(b))
    roll = local[~is_init]
    for k in range(w):
        u = roll[:, k] * w - k  # uniform on [0, 1] under the rolling map
        assert stats.kstest(u, "uniform").statistic < 0.01
    assert np.array_equal(local[is_init], np.asarray(init_times(t[is_init], w)))
