"""The learned digits decoder's schedule and target ablation (spec check 11's paragraph, §8):
does a learned few-step decoder follow the exact oracle's ordering of check 9?

    python benchmarks/schedule_ablation.py --work runs/digits11

One digits codec at λ = 0.002 (the slow test's recipe, ``diff_compress.digits.DIGITS_RECIPE``)
and three decoders trained on it with the same recipe: the default (image target, shifted cosine
``ShiftedCosineSchedule(8, 64)``, +4.159 in log-SNR), the residual target (``x − x_mse``) with the
same schedule, and the image target on the unshifted cosine (resolution 64, shift 0). Each decoder
is sampled at ``--steps`` (default 4 and 16) with ``--samplers`` (default DDPM) on the 360
held-out digits × 4 samples and scored by :func:`diff_compress.digits.digits_decoder_figures`
(PSNR drop, FD-pixel, FD-digits, each beside the MSE reconstructions' value). Next to each row:
the exact Gaussian posterior oracle's PSNR drop at the same schedule, sampler and step count
(check 9's setting: per-pixel ``x ~ N(0, 0.25)``, posterior variance 0.004, float64, here 10⁵
pixels).

Other variants: ``--variants residual-res16 image-res4 ...`` (``{image|residual}-res{N}``).
Runs live in ``--work/<variant>`` (the codec in ``--work/image-res8``, copied into the others) and
resume from their checkpoints; a finished run is not retrained, so the slow test's models can be
reused by pointing ``--work`` at a folder holding ``image-res8``. Prints one JSON object per
(variant, sampler, steps), then one with every row and the wall time. Nothing here is gated.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

#: The spec's paragraph of check 11; any ``{image|residual}-res{N}`` (N a power of 2 ≤ 64: the
#: schedule ``ShiftedCosineSchedule(N, 64)``, shift ``2 ln(64/N)``) is accepted too.
VARIANTS = ("image-res8", "residual-res8", "image-res64")


def parse_variant(name: str) -> tuple[str, int]:
    """``"residual-res16"`` -> ``("residual", 16)``; argparse's ``type`` (bad names exit 2)."""
    target, _, res = name.partition("-res")
    if target not in ("image", "residual") or not res.isdigit():
        raise argparse.ArgumentTypeError(
            f"--variants: each must be image-res<N> or residual-res<N>, got {name!r}"
        )
    n = int(res)
    if n < 1 or n > 64 or n & (n - 1):
        raise argparse.ArgumentTypeError(
            f"--variants: the resolution must be a power of 2 in 1..64, got {name!r}"
        )
    return target, n


def oracle_drop(resolution: int, steps: int, sampler: str = "ddpm", seed: int = 0) -> float:
    """PSNR(x_mse) − PSNR(sample) of the exact per-pixel Gaussian posterior sampler (check 9)."""
    import jax
    import jax.numpy as jnp

    from diff_compress import gaussian_posterior_oracle, posterior_sample, schedule_of

    s2, v = 0.25, 0.004
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        m = rng.normal(size=(1, 100, 1000, 1)) * math.sqrt(s2 - v)
        x = m + rng.normal(size=m.shape) * math.sqrt(v)
        sched = schedule_of(
            {"name": "shifted_cosine", "resolution": resolution, "reference_resolution": 64}
        )
        out = posterior_sample(
            gaussian_posterior_oracle(v),
            jnp.asarray(m),
            schedule=sched,
            steps=steps,
            sampler=sampler,
            seed=seed,
        )
        err = float(np.mean((np.asarray(out) - x) ** 2))
        return 10 * math.log10(err / float(np.mean((m - x) ** 2)))


def main(argv: list[str] | None = None) -> int:
    from diff_compress.digits import DIGITS_RECIPE

    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=fmt)
    p.add_argument("--work", required=True, help="folder of the runs (reused and resumed)")
    p.add_argument("--seed", type=int, default=0, help="training seed of every run")
    p.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        help="decoders to train and score: image-res<N> / residual-res<N> (schedule resolution N "
        "against 64; image-res8 is the default decoder and always trained, for its codec)",
    )
    p.add_argument("--steps", type=int, nargs="+", default=[4, 16], help="DDPM step counts")
    p.add_argument(
        "--samplers", nargs="+", default=["ddpm"], choices=["ddpm", "ddim"], help="samplers"
    )
    p.add_argument("--samples", type=int, default=4, help="samples per held-out digit")
    p.add_argument(
        "--decoder-steps",
        type=int,
        default=DIGITS_RECIPE["decoder_steps"],
        help="decoder training steps (the slow test's recipe)",
    )
    p.add_argument(
        "--decoder-batch",
        type=int,
        default=DIGITS_RECIPE["decoder_batch"],
        help="decoder batch size (the slow test's recipe)",
    )
    args = p.parse_args(argv)
    try:
        variants = {v: parse_variant(v) for v in args.variants}
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    for name in ("decoder_steps", "decoder_batch", "samples"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    if any(s < 1 for s in args.steps):
        p.error(f"--steps must all be >= 1, got {args.steps}")

    from diff_compress.digits import digits_decoder_figures, train_digits_models
    from diff_pixel import train_digits_classifier

    t0 = time.time()
    work = Path(args.work)
    base = work / "image-res8"
    recipe = {
        **DIGITS_RECIPE,
        "decoder_steps": args.decoder_steps,
        "decoder_batch": args.decoder_batch,
    }
    classifier = train_digits_classifier(8)
    rows = []
    variants.setdefault("image-res8", ("image", 8))
    for name in ["image-res8", *[v for v in args.variants if v != "image-res8"]]:
        target, res = variants[name]
        schedule = {"name": "shifted_cosine", "resolution": res, "reference_resolution": 64}
        t = time.time()
        train_digits_models(
            work / name,
            **recipe,
            target=target,
            schedule=schedule,
            seed=args.seed,
            codec_from=None if name == "image-res8" else base,
        )
        train_s = time.time() - t
        if name not in args.variants:
            continue
        for sampler, steps in [(a, b) for a in args.samplers for b in args.steps]:
            f = digits_decoder_figures(
                work / name,
                classifier,
                steps=steps,
                sampler=sampler,
                samples=args.samples,
                seed=args.seed,
            )
            row = {
                "figure": "schedule_ablation",
                "variant": name,
                "target": target,
                "schedule_resolution": res,
                "shift": 2 * math.log(64 / res),
                "sampler": sampler,
                "steps": steps,
                "psnr_drop_db": f["psnr_drop"],
                "oracle_psnr_drop_db": oracle_drop(res, steps, sampler),
                "psnr_mse_db": f["psnr_mse"],
                "fd_pixel_samples": f["fd_pixel_samples"],
                "fd_pixel_mse": f["fd_pixel_mse"],
                "fd_digits_samples": f["fd_digits_samples"],
                "fd_digits_mse": f["fd_digits_mse"],
                "bpp_payload": f["bpp_payload"],
                "train_s": train_s,
                "seed": args.seed,
                "recipe": recipe,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"figure": "schedule_ablation_all", "rows": rows, "wall_s": time.time() - t0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
