"""Entropy models and quantisation: exact identities against float64 references."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.stats import norm

from diff_compress import (
    GDN,
    CodecConfig,
    GaussianConditional,
    MSECodec,
    export_coding_tables,
    quantize,
    scale_index,
    scale_table,
    ste_round,
)
from diff_compress.entropy_models import LIKELIHOOD_MIN, factorized_logits_np
from diff_protocol import jax_normal


def test_gdn_matches_its_formula_and_inverse_multiplies():
    g = GDN(4)
    x = jax_normal(jax.random.key(0), (2, 3, 3, 4))
    want = x / jnp.sqrt(1.0 + 0.1 * x**2)
    np.testing.assert_allclose(g(x), want, rtol=1e-5, atol=1e-6)
    gi = GDN(4, inverse=True)
    np.testing.assert_allclose(gi(x), x * jnp.sqrt(1.0 + 0.1 * x**2), rtol=1e-5, atol=1e-6)


@pytest.mark.smoke
def test_quantize_modes():
    x = jax.random.normal(jax.random.key(1), (1000,)) * 5
    mu = jax.random.normal(jax.random.key(2), (1000,))
    n = quantize(x, "noise", key=jax.random.key(3))
    assert float(jnp.max(jnp.abs(n - x))) <= 0.5
    r = quantize(x, "round", means=mu)
    np.testing.assert_array_equal(r, jnp.round(x - mu) + mu)
    s = quantize(x, "ste", means=mu)
    np.testing.assert_array_equal(s, r)
    g = jax.grad(lambda v: jnp.sum(ste_round(v) * 3.0))(x)
    np.testing.assert_array_equal(g, jnp.full_like(x, 3.0))
    with pytest.raises(ValueError, match="mode"):
        quantize(x, "floor")
    with pytest.raises(ValueError, match="key"):
        quantize(x, "noise")


def test_gaussian_conditional_matches_scipy_and_floors_outliers():
    gc = GaussianConditional()
    rng = np.random.default_rng(0)
    sig = np.exp(rng.uniform(np.log(0.11), np.log(50), 2000))
    mu = rng.normal(0, 3, 2000)
    y = np.round(mu + rng.normal(0, 1, 2000) * sig)
    lik = np.asarray(gc.likelihood(jnp.asarray(y), jnp.asarray(mu), jnp.asarray(sig)), np.float64)
    v = np.abs(y - mu)
    want = np.maximum(norm.cdf((0.5 - v) / sig) - norm.cdf((-0.5 - v) / sig), LIKELIHOOD_MIN)
    np.testing.assert_allclose(lik, want, rtol=2e-4, atol=1e-7)
    # a 10σ outlier costs exactly the 24-bit floor
    out = gc.likelihood(jnp.asarray([30.0]), jnp.asarray([0.0]), jnp.asarray([1.0]))
    assert -math.log2(float(out[0])) == pytest.approx(24.0, abs=1e-6)
    # the bins of one Gaussian within ±6σ sum to 1 − (its tail mass 2e-9)
    k = jnp.arange(-42.0, 43.0)
    total = jnp.sum(gc.likelihood(k, 0.0, 7.0))
    assert float(total) == pytest.approx(1.0, abs=3e-6)


def test_coding_tables_rows_sum_to_one_and_tails_are_bounded():
    codec = MSECodec(CodecConfig.named("tiny"), nnx.Rngs(4))
    t = export_coding_tables(codec, tail_mass=1e-9)
    params = codec.prior.numpy_params()
    for c in range(len(t.z_length)):
        row = t.z_pmf[c, : t.z_length[c]]
        assert abs(row.sum() - 1.0) < 1e-12
        assert (t.z_pmf[c, t.z_length[c] :] == 0).all()
        pc = [
            (m[c : c + 1], b[c : c + 1], None if f is None else f[c : c + 1]) for m, b, f in params
        ]
        lo = t.z_offset[c] + float(t.z_median[c]) - 0.5
        hi = t.z_offset[c] + t.z_length[c] - 1 + float(t.z_median[c]) + 0.5
        logit = factorized_logits_np(pc, np.array([lo, hi]).reshape(1, 1, 2)).ravel()
        tail = 1 / (1 + math.exp(-logit[0])) + 1 / (1 + math.exp(logit[1]))
        assert tail <= 2e-9
        grid = np.linspace(lo - 5, hi + 5, 10_000).reshape(1, 1, -1)
        assert (np.diff(factorized_logits_np(pc, grid).ravel()) > 0).all()
        med = factorized_logits_np(pc, np.array([t.z_median[c]], np.float64).reshape(1, 1, 1))
        assert abs(float(med.ravel()[0])) < 1e-5  # the median is the c = 1/2 point


def test_scale_index_nearest_in_log_space_and_compressai_rounding():
    table = scale_table()
    assert (
        table.shape == (64,)
        and table[0] == pytest.approx(0.11)
        and table[-1] == pytest.approx(256.0)
    )
    rng = np.random.default_rng(1)
    sig = np.exp(rng.uniform(np.log(0.05), np.log(400), 20_000)).astype(np.float32)
    idx = scale_index(sig, table)
    brute = np.argmin(np.abs(np.log(sig.astype(np.float64))[:, None] - np.log(table)[None]), axis=1)
    # equal except at float32 ties on bin edges
    assert (idx != brute).mean() < 1e-3
    up = scale_index(sig, table, rounding="up")
    inside = (sig > table[0]) & (sig <= np.float32(table[-1]))
    assert (table[up[inside]].astype(np.float32) >= sig[inside]).all()
    prev = up[inside].astype(int) - 1
    assert (table[prev[prev >= 0]].astype(np.float32) < sig[inside][prev >= 0]).all()
