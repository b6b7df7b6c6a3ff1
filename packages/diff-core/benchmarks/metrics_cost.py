"""Seconds for MMD², SW2 and the Fréchet distance at n = 1000 and 4000, relative to drawing the
samples (ring6 and hadamard16).

    python packages/diff-core/benchmarks/metrics_cost.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _timing import best_of  # noqa: E402

from diff_core import metrics  # noqa: E402
from diff_core.testing import problem  # noqa: E402


def main() -> None:
    for name in ("ring6", "hadamard16"):
        mix = problem(name).mixture
        for n in (1000, 4000):
            x, _ = mix.sample(n, seed=0)
            y, _ = mix.sample(n, seed=1)
            x, y = x.reshape(n, -1), y.reshape(n, -1)
            t_draw = best_of(lambda mix=mix, n=n: mix.sample(n, seed=2), 3)
            for metric, fn in (
                ("mmd2", lambda x=x, y=y: metrics.mmd2(x, y)),
                ("sw2", lambda x=x, y=y: metrics.sliced_wasserstein(x, y)),
                ("fd", lambda x=x, y=y: metrics.frechet_distance(x, y)),
            ):
                t = best_of(fn, 3)
                print(
                    json.dumps(
                        {
                            "figure": f"{metric}_cost",
                            "problem": name,
                            "n": n,
                            "seconds": t,
                            "draw_seconds": t_draw,
                            "ratio_to_drawing": t / t_draw,
                        }
                    )
                )


if __name__ == "__main__":
    main()
