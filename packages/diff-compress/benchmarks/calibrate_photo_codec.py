"""The photo codec's learned figures per training seed (checks 3, 4, 8 of the spec; the slow
tests' configuration: ``cpu`` q3, 1,500 steps, 64-px crops, batch 8), for the 3-seed
calibration of distill.md §11.

    python benchmarks/calibrate_photo_codec.py --work runs/photo --seeds 0 1 2

Per seed, one JSON object: the learning-curve ratio (mean loss over steps 1250-1500 / 200-300),
the held-out photos' mean PSNR and mean file bpp, the largest |file − estimate| / estimate over
photos whose estimate is at least 50 kbit, and the largest |payload − estimate| / estimate
(payload = file − the 288 header bits). Runs live in ``--work/seed<N>`` and resume from their
checkpoints; a finished run is not retrained. The last line is every seed's figures together.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from diff_compress import (
    CodecConfig,
    Compressor,
    offline_photos,
    psnr,
    rate_accounting,
    train_codec,
)

STEPS = 1500
HEADER_BITS = 288


def figures(model_dir: Path) -> dict[str, float]:
    """The calibrated quantities of one trained codec (as the slow tests compute them)."""
    rows = [
        json.loads(line)
        for line in (model_dir / "codec" / "metrics.jsonl").read_text().splitlines()
    ]

    def avg(a: int, b: int) -> float:
        return float(np.mean([r["loss"] for r in rows if a < r["step"] <= b]))

    comp = Compressor.load(model_dir)
    ps, bpps, file_rel, payload_rel = [], [], [], []
    for img in offline_photos("test").values():
        data = comp.compress(img)
        ps.append(psnr(img, comp.decompress(data)))
        bpps.append(8 * len(data) / (img.shape[0] * img.shape[1]))
        acc = rate_accounting(comp, img)
        est, file = acc["bits_estimate"], acc["bits_file"]
        if est >= 50_000:
            file_rel.append(abs(file - est) / est)
        payload_rel.append(abs(file - HEADER_BITS - est) / est)
    return {
        "learning_curve_ratio": avg(1250, 1500) / avg(200, 300),
        "held_out_mean_psnr_db": float(np.mean(ps)),
        "held_out_mean_bpp": float(np.mean(bpps)),
        "file_vs_estimate_rel_max": max(file_rel) if file_rel else float("nan"),
        "payload_vs_estimate_rel_max": max(payload_rel),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--work", required=True, help="folder of the runs (resumable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    args = parser.parse_args(argv)
    out = {}
    for seed in args.seeds:
        d = Path(args.work) / f"seed{seed}"
        start = time.perf_counter()
        train_codec(
            CodecConfig.named("cpu", "q3"),
            "offline",
            d,
            STEPS,
            crop=64,
            batch=8,
            seed=seed,
            checkpoint_every=500,
            progress=False,
        )
        row = {"seed": seed, **figures(d), "wall_s": round(time.perf_counter() - start, 1)}
        out[seed] = row
        print(json.dumps(row), flush=True)
    print(json.dumps({"seeds": list(out), "figures": list(out.values())}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
