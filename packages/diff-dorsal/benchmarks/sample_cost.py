"""Cost of a DORSal sample against one OSRT-lite decode (same run, same scenes).

DORSal (Jabri et al., arXiv 2306.08068) renders novel views by sampling: the frozen OSRT-lite
encoder gives the slots once, then the multi-view decoder runs once per sampler step (DDIM-32 of
5 target views here). OSRT-lite (Sajjadi et al., arXiv 2206.06922) renders the same views in one
deterministic pass: encode the 5 input views, decode the 5 target views. Both networks have the
``lite`` presets (random weights: the cost does not depend on them).

Prints one JSON object: wall time (compile excluded, reported separately; median of
``--repeats``) and network FLOPs from XLA's cost analysis
(``jax.jit(f).lower(...).compile().cost_analysis()["flops"]``) of

* one OSRT-lite decode (encode + render of the target views) and its render part alone;
* one DORSal decoder evaluation; the DORSal sample = encode + ``steps`` × evaluation (DDIM makes
  one evaluation per grid step, ``final="denoise"`` included; guidance > 1 doubles it). XLA
  counts the body of a ``lax.scan`` once, so the whole sampler program's own figure
  (``dorsal_sampler_program_flops_xla``) is reported only to show that, and the sample's FLOPs are
  computed from the evaluation;

and the ratios ``dorsal_over_osrt_wall`` and ``dorsal_over_osrt_flops`` (the baseline is the
OSRT-lite decode of the same batch in the same run).

    python packages/diff-dorsal/benchmarks/sample_cost.py --batch 2 --steps 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_dorsal.cameras import CameraConfig
from diff_dorsal.denoiser import DecoderConfig, build_denoiser
from diff_dorsal.encoder import EncoderConfig
from diff_dorsal.osrt import OSRTLite
from diff_dorsal.sampling import make_cond, sample_views
from diff_dorsal.scenes import SceneConfig, SceneDataset


def xla_flops(fn: Any, *args: Any) -> float:
    """FLOPs of ``jax.jit(fn)`` on ``args`` from XLA's cost analysis (0 if not reported)."""
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


def _timed(fn: Any, repeats: int) -> tuple[float, float]:
    """``(first call s, median of the next ``repeats`` calls s)``, outputs blocked on."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def measure(
    batch: int = 1,
    steps: int = 32,
    *,
    views: int = 5,
    resolution: int = 32,
    repeats: int = 3,
    encoder_config: EncoderConfig | None = None,
    decoder_config: DecoderConfig | None = None,
    sampler: str = "ddim",
) -> dict[str, Any]:
    """The figures printed by :func:`main` (see the module docstring)."""
    enc_cfg = encoder_config or EncoderConfig("lite", resolution=resolution)
    dec_cfg = decoder_config or DecoderConfig("lite", image_size=resolution, views=views)
    data = SceneDataset(
        SceneConfig(),
        CameraConfig(n_views=2 * views, resolution=resolution),
        split="test",
        size=batch,
        seed=0,
    ).arrays(progress=False)
    inp, tgt = slice(0, views), slice(views, 2 * views)
    im, o, d = (jnp.asarray(data[k][:, inp]) for k in ("images", "origins", "directions"))
    to, td = (jnp.asarray(data[k][:, tgt]) for k in ("origins", "directions"))

    osrt = OSRTLite(enc_cfg, rngs=nnx.Rngs(0))
    og, ost = nnx.split(osrt)

    def osrt_decode(state, im, o, d, to, td):
        m = nnx.merge(og, state)
        return m.render(m.encode(im, o, d), to, td)[0]

    def osrt_encode(state, im, o, d):
        return nnx.merge(og, state).encode(im, o, d)

    def osrt_render(state, slots, to, td):
        return nnx.merge(og, state).render(slots, to, td)[0]

    decode_j, encode_j = jax.jit(osrt_decode), jax.jit(osrt_encode)
    slots = encode_j(ost, im, o, d)
    mask = jnp.ones(slots.shape[:2], bool)

    den = build_denoiser(dec_cfg, int(slots.shape[-1]), nnx.Rngs(0))
    dg, dst = nnx.split(den)

    def dorsal_eval(state, z, lam, cond):
        return nnx.merge(dg, state)(z, lam, cond)

    cond = make_cond(slots, mask, to, td)
    z = jnp.zeros(to.shape, jnp.float32)
    lam = jnp.zeros((batch,), jnp.float32)
    key = jax.random.key(0)

    def dorsal_sample():  # the whole DORSal path: encode the inputs, then sample
        s = encode_j(ost, im, o, d)
        return sample_views(den, s, mask, to, td, key, steps=steps, sampler=sampler)

    osrt_first, osrt_s = _timed(lambda: decode_j(ost, im, o, d, to, td), repeats)
    _, encode_s = _timed(lambda: encode_j(ost, im, o, d), repeats)
    dorsal_first, dorsal_s = _timed(dorsal_sample, repeats)
    eval_j = jax.jit(dorsal_eval)
    _, eval_s = _timed(lambda: eval_j(dst, z, lam, cond), repeats)

    f_decode = xla_flops(osrt_decode, ost, im, o, d, to, td)
    f_encode = xla_flops(osrt_encode, ost, im, o, d)
    f_render = xla_flops(osrt_render, ost, slots, to, td)
    f_eval = xla_flops(dorsal_eval, dst, z, lam, cond)
    # the sampler program as XLA sees it (a lax.scan body counted once)
    from diff_core import grids
    from diff_dorsal.sampling import DEFAULT_SCHEDULE

    grid = grids.uniform_t(DEFAULT_SCHEDULE, steps)
    evals = int(grid.n_steps)
    f_sample = f_encode + evals * f_eval
    f_program = None
    try:
        import diff_core
        from diff_pixel.sampling import sampler_step
        from diff_protocol.noise import jax_noise

        step = sampler_step(sampler)

        def program(state, cond, key):
            noise = jax_noise(key, tuple(to.shape), per_example=True)
            return diff_core.sample(
                nnx.merge(dg, state),
                step,
                grid,
                noise,
                cond=cond,
                final="denoise",
                x_clip=1.0,
                check_finite=False,
            )

        f_program = xla_flops(program, dst, cond, key)
    except Exception as err:  # noqa: BLE001 - a figure for reference only
        f_program = f"not measured ({type(err).__name__}: {err})"[:160]
    n_params = lambda m: int(  # noqa: E731
        sum(np.size(x) for x in jax.tree.leaves(nnx.state(m, nnx.Param)))
    )
    return {
        "benchmark": "sample_cost",
        "batch": batch,
        "views": views,
        "resolution": resolution,
        "sampler": sampler,
        "steps": steps,
        "network_evaluations": evals,
        "osrt_params": n_params(osrt),
        "dorsal_decoder_params": n_params(den),
        "osrt_decode_s": osrt_s,
        "osrt_encode_s": encode_s,
        "dorsal_eval_s": eval_s,
        "dorsal_sample_s": dorsal_s,
        "osrt_compile_and_first_s": osrt_first,
        "dorsal_compile_and_first_s": dorsal_first,
        "osrt_decode_flops": f_decode,
        "osrt_encode_flops": f_encode,
        "osrt_render_flops": f_render,
        "dorsal_eval_flops": f_eval,
        "dorsal_sample_flops": f_sample,
        "dorsal_sampler_program_flops_xla": f_program,
        "dorsal_over_osrt_wall": dorsal_s / osrt_s,
        "dorsal_over_osrt_flops": f_sample / f_decode if f_decode else None,
        "dorsal_eval_over_osrt_render_flops": f_eval / f_render if f_render else None,
        "dorsal_guided_over_osrt_flops": (f_encode + 2 * evals * f_eval) / f_decode
        if f_decode
        else None,
        "jax_backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }


def main(argv=None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1, help="scenes per call (default 1)")
    parser.add_argument("--steps", type=int, default=32, help="DDIM steps (default 32)")
    parser.add_argument("--views", type=int, default=5, help="input = target views (default 5)")
    parser.add_argument("--resolution", type=int, default=32, help="image side (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls (default 3)")
    parser.add_argument("--sampler", default="ddim", help="registered sampler (default ddim)")
    args = parser.parse_args(argv)
    for name in ("batch", "steps", "views", "resolution", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"argument --{name}: must be >= 1, got {getattr(args, name)}")
    result = measure(
        args.batch,
        args.steps,
        views=args.views,
        resolution=args.resolution,
        repeats=args.repeats,
        sampler=args.sampler,
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
