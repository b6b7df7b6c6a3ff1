"""Check 2: coder accounting against the ideal bits, both coders, lossless."""

from __future__ import annotations

import numpy as np
import pytest

from diff_compress import (
    CodingTables,
    decode_symbols,
    encode_symbols,
    ideal_bits,
    scale_index,
    scale_table,
)
from diff_compress.entropy_models import gaussian_likelihood_np


def _tables(rng: np.random.Generator, channels: int = 4) -> CodingTables:
    lengths = rng.integers(3, 20, channels)
    pmf = np.zeros((channels, lengths.max()))
    for c in range(channels):
        p = rng.dirichlet(np.ones(lengths[c]))
        pmf[c, : lengths[c]] = p
    return CodingTables(
        z_median=np.zeros(channels, np.float32),
        z_offset=-(lengths // 2).astype(np.int32),
        z_length=lengths.astype(np.int32),
        z_pmf=pmf,
        scale_table=scale_table(),
        y_bound=255,
        fingerprint=b"\x00" * 32,
    )


def _synthetic(n: int, rng: np.random.Generator):
    sig = np.exp(rng.uniform(np.log(0.05), np.log(20.0), n)).astype(np.float32)
    mu = rng.normal(0, 3, n)
    y = mu + rng.normal(0, 1, n) * sig
    sym = np.clip(np.round(y - mu), -255, 255).astype(np.int32)
    return sym, sig


@pytest.mark.smoke
@pytest.mark.parametrize("coder", ["range", "ans"])
def test_lossless_and_payload_within_budget_of_ideal(coder):
    rng = np.random.default_rng(0)
    tables = _tables(rng)
    n = 50_000
    y_sym, sig = _synthetic(n, rng)
    idx = scale_index(sig, tables.scale_table)
    z_sym = np.stack(
        [
            rng.choice(np.arange(o, o + L), size=500, p=tables.z_pmf[c, :L])
            for c, (o, L) in enumerate(zip(tables.z_offset, tables.z_length))
        ],
        axis=-1,
    ).reshape(20, 25, 4)
    zw, yw = encode_symbols(z_sym, y_sym, idx, tables, coder)
    z2, y2, i2 = decode_symbols(zw, yw, z_sym.shape, tables, lambda z: idx, coder)
    np.testing.assert_array_equal(z2, z_sym)
    np.testing.assert_array_equal(y2, y_sym)
    bz, by = ideal_bits(z_sym, y_sym, idx, tables)
    payload = 32 * (len(zw) + len(yw))
    ideal = bz + by
    assert payload >= ideal * 0.999
    assert payload <= ideal * 1.002 + 64, (payload, ideal)


def test_scale_table_cost_nearest_beats_rounding_up():
    rng = np.random.default_rng(1)
    y_sym, sig = _synthetic(200_000, rng)
    table = scale_table()
    cont = -np.log2(gaussian_likelihood_np(y_sym, sig)).sum()
    near = -np.log2(gaussian_likelihood_np(y_sym, table[scale_index(sig, table)])).sum()
    up = -np.log2(gaussian_likelihood_np(y_sym, table[scale_index(sig, table, "up")])).sum()
    assert 0 < near / cont - 1 < 0.001  # measured +0.05%
    assert near < up
    assert up / cont - 1 < 0.004  # measured +0.20%
