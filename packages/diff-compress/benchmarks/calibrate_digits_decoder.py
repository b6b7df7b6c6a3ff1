"""The learned digits decoder's figures per training seed (spec check 11, the slow test's recipe
``diff_compress.digits.DIGITS_RECIPE``), for the 3-seed calibration of distill.md §11.

    python benchmarks/calibrate_digits_decoder.py --work runs/digits11 --seeds 0 1 2

Per seed, one JSON object: :func:`diff_compress.digits.digits_decoder_figures` at DDPM-16 on the
360 held-out digits × 4 samples (PSNR drop, FD-pixel and FD-digits of the samples and of the MSE
reconstructions, their ratios, the codec's rate and PSNR) and the training wall time. Runs live in
``--work/seed<N>`` and resume from their checkpoints; a finished run is not retrained (the
schedule ablation reuses ``seed0`` as ``image-res8``: ``--work`` of both may be the same folder
only if it is given as ``DIR/seed0`` there). The last line is every seed's figures together.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

KEYS = (
    "psnr_drop",
    "fd_pixel_ratio",
    "fd_digits_ratio",
    "psnr_mse",
    "psnr_samples",
    "bpp_estimate",
    "bpp_payload",
    "bpp_file",
    "fd_pixel_mse",
    "fd_pixel_samples",
    "fd_digits_mse",
    "fd_digits_samples",
)


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=fmt)
    p.add_argument("--work", required=True, help="folder of the runs (reused and resumed)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    args = p.parse_args(argv)
    if any(s < 0 for s in args.seeds):
        p.error(f"--seeds must all be >= 0, got {args.seeds}")

    from diff_compress.digits import DIGITS_RECIPE, digits_decoder_figures, train_digits_models
    from diff_pixel import train_digits_classifier

    classifier = train_digits_classifier(8)
    out = {}
    for seed in args.seeds:
        t = time.time()
        d = train_digits_models(Path(args.work) / f"seed{seed}", **DIGITS_RECIPE, seed=seed)
        train_s = time.time() - t
        f = digits_decoder_figures(d, classifier, steps=16, samples=4, seed=seed)
        eval_s = time.time() - t - train_s
        row = {"seed": seed, **{k: f[k] for k in KEYS}, "train_s": train_s, "eval_s": eval_s}
        out[seed] = row
        print(json.dumps(row), flush=True)
    summary = {k: [out[s][k] for s in args.seeds] for k in KEYS}
    print(json.dumps({"seeds": args.seeds, "recipe": DIGITS_RECIPE, "measured": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
