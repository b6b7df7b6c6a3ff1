"""Held-out groups (reported, not gated): train on digit classes 0-6 with PCA-24 fitted on them,
condition on held-out digits of 7-9 and of 0-6; agreement, copy distance and FD-digits per
guidance scale.

Usage: python benchmarks/heldout_groups.py --out /tmp/semantica-heldout [--steps 800]
"""

from __future__ import annotations

import argparse
import json

from diff_pixel import train_digits_classifier
from diff_semantica import (
    PairConfig,
    PCAEncoder,
    RunConfig,
    SemanticaConfig,
    digits_groups,
    evaluate_adaptation,
    train_semantica,
)
from diff_semantica.recipes import DIGITS_RUN


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="run folder")
    ap.add_argument("--steps", type=int, default=DIGITS_RUN.steps, help="training steps")
    ap.add_argument("--seed", type=int, default=0, help="seed")
    args = ap.parse_args()
    train = digits_groups("train")
    seen = train.of_groups(range(7))
    enc = PCAEncoder.fit(seen.images, 24)  # fitted on the training groups only
    run = RunConfig(**{**DIGITS_RUN.to_dict(), "steps": args.steps, "seed": args.seed})
    trainer = train_semantica(
        SemanticaConfig.for_digits(enc),
        seen,
        enc,
        (PairConfig(seed=args.seed), None),
        args.out,
        run,
    )
    clf = train_digits_classifier(8)
    test = digits_groups("test")
    for name, classes in (("heldout_groups_7_9", (7, 8, 9)), ("seen_groups_0_6", range(7))):
        m = evaluate_adaptation(
            trainer.ema_model(),
            test.of_groups(classes),
            clf,
            train=seen,
            group_reference=train,  # copy_rate's per-group scale needs real 7-9s (never trained on)
            subset=list(classes),
            steps=25,
        )
        print(
            json.dumps(
                {
                    "figure": name,
                    **{
                        s: {
                            k: v[k]
                            for k in ("agreement", "copy_distance", "fd_digits", "subset_tv")
                        }
                        for s, v in m["scales"].items()
                    },
                }
            )
        )


if __name__ == "__main__":
    main()
