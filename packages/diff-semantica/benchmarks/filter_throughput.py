"""Pairs filtered per second with the embedding cache warm, vs the same filter when the
embeddings are computed (cold cache), PCA-24 on the digits, 20,000 candidates.

Usage: python benchmarks/filter_throughput.py
"""

from __future__ import annotations

import json
import time

from diff_semantica import (
    EmbeddingCache,
    FilterConfig,
    PairConfig,
    digits_groups,
    filter_pairs,
    sample_pairs,
)
from diff_semantica.recipes import digits_encoder


def main() -> None:
    train = digits_groups("train")
    enc = digits_encoder(train)
    pairs = sample_pairs(train, PairConfig(corrupt_fraction=0.6), 0)
    filter_pairs(pairs, train, FilterConfig(), enc, cache=EmbeddingCache())  # compile
    cache = EmbeddingCache()
    t0 = time.perf_counter()
    filter_pairs(pairs, train, FilterConfig(), enc, cache=cache)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    filter_pairs(pairs, train, FilterConfig(), enc, cache=cache)
    warm = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "figure": "pairs filtered per second, warm / cold cache",
                "warm_pairs_per_s": len(pairs) / warm,
                "cold_pairs_per_s": len(pairs) / cold,
                "ratio": cold / warm,
            }
        )
    )


if __name__ == "__main__":
    main()
