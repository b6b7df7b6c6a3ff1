"""Entropy-coder throughput and overhead (constriction range coder vs ANS), one JSON object.

2·10⁵ symbols with per-symbol Gaussians (σ log-uniform in [0.05, 20], means N(0, 3²) folded out);
encode/decode symbols per second and MB/s of int32 symbols, payload overhead over the ideal bits
(table σ), and ANS time / range time measured in the same run.

    python benchmarks/coder_throughput.py [--n 200000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from diff_compress import (
    CodingTables,
    decode_symbols,
    encode_symbols,
    ideal_bits,
    scale_index,
    scale_table,
)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--n", type=int, default=200_000, help="number of y symbols")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats (best is reported)")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    sig = np.exp(rng.uniform(np.log(0.05), np.log(20.0), a.n)).astype(np.float32)
    mu = rng.normal(0, 3, a.n)
    y_sym = np.clip(np.round(mu + rng.normal(0, 1, a.n) * sig - mu), -255, 255).astype(np.int32)
    tables = CodingTables(
        z_median=np.zeros(1, np.float32),
        z_offset=np.zeros(1, np.int32),
        z_length=np.full(1, 2, np.int32),
        z_pmf=np.full((1, 2), 0.5),
        scale_table=scale_table(),
        y_bound=255,
        fingerprint=b"\0" * 32,
    )
    idx = scale_index(sig, tables.scale_table)
    z = np.zeros((1, 1, 1), np.int32)
    _, ideal = ideal_bits(z, y_sym, idx, tables)
    out = {"figure": "coder_throughput", "n_symbols": a.n, "ideal_bits": ideal}
    for coder in ("range", "ans"):
        te, td = [], []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            zw, yw = encode_symbols(z, y_sym, idx, tables, coder)
            te.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _, dec, _ = decode_symbols(zw, yw, z.shape, tables, lambda _z: idx, coder)
            td.append(time.perf_counter() - t0)
        assert np.array_equal(dec, y_sym)
        e, d = min(te), min(td)
        out[coder] = {
            "encode_symbols_per_s": a.n / e,
            "decode_symbols_per_s": a.n / d,
            "encode_MB_per_s": 4 * a.n / e / 1e6,
            "decode_MB_per_s": 4 * a.n / d / 1e6,
            "overhead_vs_ideal_pct": 100 * (32 * len(yw) / ideal - 1),
            "encode_s": e,
            "decode_s": d,
        }
    out["ans_over_range_time"] = (out["ans"]["encode_s"] + out["ans"]["decode_s"]) / (
        out["range"]["encode_s"] + out["range"]["decode_s"]
    )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
