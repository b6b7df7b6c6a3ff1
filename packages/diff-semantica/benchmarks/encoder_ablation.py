"""Encoder expressiveness on the digits (reported, not gated): PCA-24 vs a SimCLR ConvEncoder
vs a random projection, clean pairs, the calibrated budget; agreement at guidance 2.

Usage: python benchmarks/encoder_ablation.py --out /tmp/semantica-encoders [--steps 800]
"""

from __future__ import annotations

import argparse
import json

from diff_pixel import train_digits_classifier
from diff_semantica import (
    ConvEncoder,
    PairConfig,
    RandomProjectionEncoder,
    RunConfig,
    SemanticaConfig,
    digits_groups,
    seen_groups_heldout_images,
    train_encoder,
    train_semantica,
)
from diff_semantica.recipes import DIGITS_RUN, digits_encoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="folder of the runs")
    ap.add_argument("--steps", type=int, default=DIGITS_RUN.steps, help="training steps")
    ap.add_argument("--encoder-steps", type=int, default=500, help="SimCLR steps")
    args = ap.parse_args()
    train = digits_groups("train")
    encoders = {
        "pca24": digits_encoder(train),
        "simclr": train_encoder(
            ConvEncoder((8, 8, 1), dim=24), train.images, kind="simclr", steps=args.encoder_steps
        ),
        "random24": RandomProjectionEncoder((8, 8, 1), 24, seed=0),
    }
    clf = train_digits_classifier(8)
    run = RunConfig(**{**DIGITS_RUN.to_dict(), "steps": args.steps})
    out = {}
    for name, enc in encoders.items():
        tr = train_semantica(
            SemanticaConfig.for_digits(enc),
            train,
            enc,
            (PairConfig(), None),
            f"{args.out}/{name}",
            run,
            progress=False,
        )
        m = seen_groups_heldout_images(tr.ema_model(), clf, guidance_scales=(2.0,), steps=25)
        out[name] = m["scales"]["2.0"]["agreement"]
    print(
        json.dumps(
            {
                "figure": "agreement at scale 2 by encoder",
                **out,
                "ratio_simclr_over_pca": out["simclr"] / out["pca24"],
                "ratio_random_over_pca": out["random24"] / out["pca24"],
            }
        )
    )


if __name__ == "__main__":
    main()
