"""Compress / decompress (MSE) wall time of a codec on the held-out photos, split into the
transforms, the CPU hyper-synthesis and the entropy coding, and the ratio to Pillow's JPEG
encode + decode of the same image in the same run; one JSON object.

    python benchmarks/pipeline_speed.py --model MODEL_DIR      # or --random tiny|cpu
"""

from __future__ import annotations

import argparse
import io
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from diff_compress import Compressor, decode_symbols, encode_symbols, offline_photos
from diff_compress.testing import random_compressor


def _best(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def _time_image(comp: Compressor, img: np.ndarray, repeats: int) -> dict[str, float]:
    data = comp.compress(img)  # warm-up: compiles
    comp.decompress(data)
    x = comp._pad(img.astype(np.float32) / 255.0)
    enc = comp.encode_symbols_of(img)

    def analyse() -> None:
        jax.block_until_ready(comp._analyse(comp._state, jnp.asarray(x[None])))

    def hyper() -> None:
        comp._hyper_cpu(enc["z_sym"])

    def code() -> None:
        zw, yw = encode_symbols(enc["z_sym"], enc["y_sym"], enc["y_index"], comp.tables)
        decode_symbols(zw, yw, enc["z_sym"].shape, comp.tables, lambda _z: enc["y_index"])

    def synth() -> None:
        y_hat = jnp.zeros((1, *enc["y_sym"].shape), jnp.float32)
        jax.block_until_ready(comp._synth(comp._state, y_hat))

    def jpeg() -> None:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=75)
        np.asarray(Image.open(io.BytesIO(buf.getvalue())))

    t_c = _best(lambda: comp.compress(img), repeats)
    t_d = _best(lambda: comp.decompress(data), repeats)
    t_j = _best(jpeg, repeats)
    return {
        "compress_s": t_c,
        "decompress_s": t_d,
        "analysis_s": _best(analyse, repeats),
        "synthesis_s": _best(synth, repeats),
        "hyper_synthesis_s": _best(hyper, repeats),
        "entropy_coding_s": _best(code, repeats),
        "jpeg_encode_decode_s": t_j,
        "ratio_to_jpeg": (t_c + t_d) / t_j,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--model", default=None, help="model folder (default: a random codec)")
    p.add_argument(
        "--random", default="cpu", help="size of the random codec when --model is not given"
    )
    p.add_argument("--repeats", type=int, default=3, help="timing repeats (best is reported)")
    a = p.parse_args()
    comp = Compressor.load(a.model) if a.model else random_compressor(a.random, 0)
    rows = {name: _time_image(comp, img, a.repeats) for name, img in offline_photos("test").items()}
    print(
        json.dumps(
            {"figure": "pipeline_speed", "model": a.model or f"random {a.random}", "images": rows},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
