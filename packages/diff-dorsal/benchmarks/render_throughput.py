"""Render throughput of the procedural scenes: numpy ray-caster vs ``render_jax`` (same run).

Prints one JSON object: scenes/s of ``render_rays`` (numpy, one scene at a time, as
``SceneDataset`` uses it) and of ``jax.jit(jax.vmap(render_jax))`` on chunks of scenes (compile
excluded, reported separately), their ratio, the largest |rgb| difference between the two, and the
end-to-end ``SceneDataset.arrays`` rate (sampling + rays + numpy render). Default: 10 views at 32².

    python packages/diff-dorsal/benchmarks/render_throughput.py --scenes 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import numpy as np

from diff_dorsal.cameras import CameraConfig
from diff_dorsal.scenes import (
    SCENE_KEYS,
    Scene,
    SceneConfig,
    SceneDataset,
    render_jax,
    render_rays,
)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=200, help="scenes to render (default 200)")
    parser.add_argument("--views", type=int, default=10, help="views per scene (default 10)")
    parser.add_argument("--resolution", type=int, default=32, help="image side (default 32)")
    parser.add_argument("--chunk", type=int, default=50, help="scenes per jax call (default 50)")
    parser.add_argument("--shadows", action="store_true", help="hard shadows (default off)")
    args = parser.parse_args(argv)
    if args.scenes < 1 or args.chunk < 1:
        parser.error("--scenes and --chunk must be >= 1")
    n = args.scenes
    ds = SceneDataset(
        SceneConfig(shadows=args.shadows),
        CameraConfig(n_views=args.views, resolution=args.resolution),
        size=n,
        seed=0,
    )

    t0 = time.perf_counter()
    data = ds.arrays(n, progress=False)
    dataset_s = time.perf_counter() - t0

    scenes = [{k: data[k][i] for k in SCENE_KEYS} for i in range(n)]
    numpy_scenes = [Scene.from_padded(s) for s in scenes]
    t0 = time.perf_counter()
    for i in range(n):
        render_rays(
            numpy_scenes[i], data["origins"][i], data["directions"][i], shadows=args.shadows
        )
    numpy_s = time.perf_counter() - t0

    fn = jax.jit(jax.vmap(lambda s, o, d: render_jax(s, o, d, shadows=args.shadows)))
    chunk = min(args.chunk, n)
    starts = list(range(0, n - chunk + 1, chunk))  # whole chunks only: one compiled shape
    padded = {k: data[k] for k in SCENE_KEYS}

    def call(a):
        sl = slice(a, a + chunk)
        return fn(
            {k: v[sl] for k, v in padded.items()}, data["origins"][sl], data["directions"][sl]
        )

    t0 = time.perf_counter()
    jax.block_until_ready(call(0))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    outs = [call(a) for a in starts]
    jax.block_until_ready(outs)
    jax_s = time.perf_counter() - t0
    jax_n = len(starts) * chunk
    rgb = np.concatenate([np.asarray(o[0]) for o in outs])
    max_diff = float(np.abs(rgb - data["images"][:jax_n]).max())

    result = {
        "benchmark": "render_throughput",
        "scenes": n,
        "views": args.views,
        "resolution": args.resolution,
        "shadows": args.shadows,
        "numpy_scenes_per_s": n / numpy_s,
        "jax_scenes_per_s": jax_n / jax_s,
        "jax_over_numpy": (jax_n / jax_s) / (n / numpy_s),
        "jax_chunk": chunk,
        "jax_compile_s": compile_s,
        "dataset_scenes_per_s": n / dataset_s,
        "dataset_s_per_1000_scenes": 1000 * dataset_s / n,
        "max_abs_rgb_diff_jax_vs_numpy": max_diff,
        "jax_backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
