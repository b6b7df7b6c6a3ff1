"""Held-out photo figures of a trained codec (checks 3, 4 and 8 of the spec), one JSON object.

Per photo: file bpp, the entropy model's estimate, PSNR, the file-vs-estimate gap, the coder
overhead over the ideal (table σ) bits, the hyperprior's gain over a per-channel zero-mean
Gaussian on the same symbols, and Pillow JPEG at the closest bpp (computed in the same run).

    python benchmarks/photo_codec.py --model MODEL_DIR
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from diff_compress import Compressor, offline_photos, psnr, rate_accounting
from diff_compress.entropy_models import gaussian_likelihood_np
from diff_compress.evaluate import jpeg_matched


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--model", required=True, help="model folder with a trained codec")
    a = p.parse_args()
    comp = Compressor.load(a.model)
    rows = {}
    for name, img in offline_photos("test").items():
        h, w = img.shape[:2]
        acc = rate_accounting(comp, img)
        data = comp.compress(img)
        rec = comp.decompress(data)
        enc = comp.encode_symbols_of(img)
        ys = enc["y_sym"].astype(np.float64)
        std = np.maximum(ys.reshape(-1, ys.shape[-1]).std(axis=0), 0.11)
        naive = float(-np.log2(gaussian_likelihood_np(ys, np.broadcast_to(std, ys.shape))).sum())
        stats = comp.encode_stats(img)
        bpp = 8 * len(data) / (h * w)
        jm = jpeg_matched(img, bpp)
        rows[name] = {
            "pixels": h * w,
            "bpp_file": bpp,
            "bpp_estimate": acc["bits_estimate"] / (h * w),
            "psnr": psnr(img, rec),
            "file_over_estimate": acc["file_over_estimate"],
            "payload_minus_estimate_rel": (acc["bits_file"] - 288 - acc["bits_estimate"])
            / acc["bits_estimate"],
            "coder_overhead_over_ideal": acc["coder_overhead"],
            "table_overhead": acc["table_overhead"],
            "hyperprior_bits_over_naive_gaussian_bits": acc["bits_estimate"] / (naive + 1e-9),
            "z_clamped": stats.z_clamped,
            "y_clamped": stats.y_clamped,
            "jpeg_matched": {k: v for k, v in jm.items() if k != "image"},
        }
    mean = {
        "bpp_file": float(np.mean([r["bpp_file"] for r in rows.values()])),
        "psnr": float(np.mean([r["psnr"] for r in rows.values()])),
        "jpeg_psnr": float(np.mean([r["jpeg_matched"]["psnr"] for r in rows.values()])),
    }
    mean["psnr_minus_jpeg_db"] = mean["psnr"] - mean["jpeg_psnr"]
    print(
        json.dumps(
            {"figure": "photo_codec", "model": a.model, "images": rows, "mean": mean}, indent=1
        )
    )


if __name__ == "__main__":
    main()
