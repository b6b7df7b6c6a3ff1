"""Compile time of a jitted standard-normal draw: ``jax.random.normal`` with the array's shape
against :func:`diff_protocol.jax_normal` (the same count drawn flat and reshaped; bitwise the same
values). Prints one JSON object per shape and a summary line.

    python shared-core/benchmarks/normal_compile.py [--shapes 4096x4x16x16x1 8x32x32x3 ...]

Each compile is timed in a fresh ``jax.jit`` of its own (the executable cache is cleared between
timings, so a later timing never reuses an earlier one); the ratio is direct / flat in the same
run.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from diff_protocol import jax_normal

DEFAULT_SHAPES = ("4096x4x16x16x1", "64x4x16x16x1", "8x32x32x3", "3x5x7", "4096x1024", "1048576")


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must look like 8x32x32x3, got {text!r}") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"shape must have positive sizes, got {text!r}")
    return shape


def _compile_seconds(fn, key) -> float:
    jax.clear_caches()
    t0 = time.perf_counter()
    jax.jit(fn).lower(key).compile()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shapes", nargs="+", type=_shape, default=[_shape(s) for s in DEFAULT_SHAPES]
    )
    parser.add_argument("--repeats", type=int, default=2, help="best of N compiles (default 2)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"argument --repeats: must be >= 1, got {args.repeats}")
    key = jax.random.key(0)
    ratios = []
    for shape in args.shapes:
        direct = min(
            _compile_seconds(lambda k, s=shape: jax.random.normal(k, s), key)
            for _ in range(args.repeats)
        )
        flat = min(
            _compile_seconds(lambda k, s=shape: jax_normal(k, s), key) for _ in range(args.repeats)
        )
        same = bool(
            np.array_equal(
                np.asarray(jax.random.normal(key, shape)), np.asarray(jax_normal(key, shape))
            )
        )
        ratios.append(direct / flat)
        print(
            json.dumps(
                {
                    "shape": list(shape),
                    "compile_s_random_normal": round(direct, 3),
                    "compile_s_jax_normal": round(flat, 3),
                    "ratio": round(direct / flat, 2),
                    "bitwise_equal": same,
                }
            )
        )
    print(
        json.dumps(
            {
                "summary": "compile time jax.random.normal / jax_normal",
                "jax": jax.__version__,
                "backend": jax.default_backend(),
                "geomean_ratio": round(float(np.exp(np.mean(np.log(ratios)))), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
