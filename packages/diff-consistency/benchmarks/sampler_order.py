"""FD / spread / var_ratio of the exact mix64 teacher against the number of steps N for DDIM,
aDDIM (oracle variance η = 0.75 with and without max_snr = 100, analytic 0.1/(2 + SNR)) and DDPM
(spec §10 table; check 9 asserts its N = 16 and N = 64 entries). 10,000 samples from the fixed
evaluation noise, FD against 10,000 fresh true samples. Prints one JSON object per (sampler, N)
with the ratio of FD to DDIM's at the same N (measured in the same run), then a Markdown table.

    python benchmarks/sampler_order.py [--steps 8 16 32 64]
"""

from __future__ import annotations

import argparse
import json
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, nargs="+", default=[8, 16, 32, 64], help="N (default: 8 16 32 64)"
    )
    args = parser.parse_args(argv)
    from diff_consistency.addim import AnalyticVariance, OracleVariance, addim
    from diff_consistency.toy import evaluate, exact_mixture, teacher_samples
    from diff_core import samplers

    oracle = OracleVariance(exact_mixture("mix64"), 0.75)
    steps = {
        "ddim": samplers.ddim(0.0),
        "addim_oracle": addim(oracle),
        "addim_oracle_maxsnr100": addim(oracle, max_snr=100.0),
        "addim_analytic": addim(AnalyticVariance()),
        "ddpm": samplers.ddpm(0.0),
    }
    rows = {}
    for n in args.steps:
        base = None
        for name, step in steps.items():
            t0 = time.perf_counter()
            m = evaluate(teacher_samples("mix64", n, step), "mix64")
            base = m["fd"] if name == "ddim" else base
            row = {
                "sampler": name,
                "N": n,
                "fd": m["fd"],
                "spread": m["spread"],
                "var_ratio": m["var_ratio"],
                "mode_tv": m["mode_tv"],
                "fd_over_ddim": m["fd"] / base,
                "wall_s": time.perf_counter() - t0,
            }
            rows[(name, n)] = row
            print(json.dumps(row), flush=True)
    print("\n| sampler | " + " | ".join(f"N = {n}" for n in args.steps) + " |")
    print("|---|" + "---|" * len(args.steps))
    for name in steps:
        cells = [
            f"{rows[(name, n)]['fd']:.3f} / {rows[(name, n)]['spread']:.2f} / "
            f"{rows[(name, n)]['var_ratio']:.2f}"
            for n in args.steps
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
