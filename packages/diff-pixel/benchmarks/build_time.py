"""Model construction time in a fresh interpreter: 0.1's eager path against 0.2's.

Each measurement runs in its own Python process (cold in-memory compilation cache, the persistent
JAX compilation cache disabled), imports ``diff_pixel.models``, then times
``build_model(preset, seed=0)`` until every parameter is ready. Modes:

- ``eager_device``: the 0.1 path, initialisers drawing with ``jax.random`` eagerly (one small
  XLA program compiled per parameter shape), reached through ``diff_pixel.nn.device_init``;
- ``host`` (the 0.2 default): initialisers drawing on the host from each layer's key, placed with
  ``jax.device_put`` (no XLA program per parameter);
- ``jit_device``: the constructor under ``nnx.jit`` with ``jax.random`` initialisers (one init
  program), for reference.

Prints one JSON object per preset with the median wall and CPU seconds over ``--repeats`` fresh
interpreters, the number of XLA compilations during the build, and the speed-up of ``host`` over
``eager_device``.

    python packages/diff-pixel/benchmarks/build_time.py [--presets tiny-16 tiny-8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

MODES = ("eager_device", "host", "jit_device")

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import jax
from flax import nnx
from diff_pixel.models import build_model
from diff_pixel.nn import device_init
import_s = time.perf_counter() - t0
compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: compiles.append(duration)
    if event == "/jax/core/compile/backend_compile_duration" else None
)
preset, mode = sys.argv[1], sys.argv[2]
w0, c0 = time.perf_counter(), time.process_time()
if mode == "eager_device":
    with device_init():
        model = build_model(preset, seed=0)
elif mode == "host":
    model = build_model(preset, seed=0)
elif mode == "jit_device":
    with device_init():
        model = nnx.jit(lambda: build_model(preset, seed=0))()
else:
    raise SystemExit(f"unknown mode {mode!r}")
jax.block_until_ready(jax.tree.leaves(nnx.state(model)))
wall, cpu = time.perf_counter() - w0, time.process_time() - c0
params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
print(json.dumps({"import_s": import_s, "build_s": wall, "build_cpu_s": cpu,
                  "compiles": len(compiles), "params": int(params)}))
"""


def _measure(preset: str, mode: str) -> dict:
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, preset, mode],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"build_time: {preset}/{mode} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--presets", nargs="+", default=["tiny-16"], help="presets to build (default: tiny-16)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="fresh interpreters per mode (default: 3)"
    )
    parser.add_argument(
        "--modes", nargs="+", default=list(MODES), choices=MODES, help="modes (default: all)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    for preset in args.presets:
        result: dict = {"benchmark": "build_time", "preset": preset, "repeats": args.repeats}
        for mode in args.modes:
            runs = [_measure(preset, mode) for _ in range(args.repeats)]
            result[mode] = {
                key: round(statistics.median(r[key] for r in runs), 4)
                for key in ("import_s", "build_s", "build_cpu_s", "compiles")
            }
            result["params"] = runs[0]["params"]
        if "eager_device" in result and "host" in result:
            result["speedup_host_vs_eager"] = round(
                result["eager_device"]["build_s"] / result["host"]["build_s"], 1
            )
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
