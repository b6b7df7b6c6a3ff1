"""Variations per second, DDIM-50 with guidance (2B batch per step) vs without guidance
(scale 1), same model and batch, in the same run. Expected ratio about 0.5.

Usage: python benchmarks/sampling.py [--n 256] [--steps 50]
"""

from __future__ import annotations

import argparse
import json
import time

from diff_semantica import digits_groups, sample_variations
from diff_semantica.model import SemanticaConfig, SemanticaDenoiser
from diff_semantica.recipes import digits_encoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=256, help="conditioning images (default 256)")
    ap.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    args = ap.parse_args()
    train = digits_groups("train")
    enc = digits_encoder(train)
    model = SemanticaDenoiser(SemanticaConfig.for_digits(enc), enc)
    x = train.images[: args.n]
    rates = {}
    for g in (1.0, 2.0):
        sample_variations(model, x, n_per_image=1, guidance=g, steps=args.steps)  # compile
        t0 = time.perf_counter()
        sample_variations(model, x, n_per_image=1, guidance=g, steps=args.steps, seed=1)
        rates[g] = args.n / (time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "figure": "variations/s guided / unguided",
                "steps": args.steps,
                "guided_per_s": rates[2.0],
                "unguided_per_s": rates[1.0],
                "ratio": rates[2.0] / rates[1.0],
            }
        )
    )


if __name__ == "__main__":
    main()
