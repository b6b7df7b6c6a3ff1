"""GPU throughput of the SiD2 presets: train-step TFLOP/s and MFU, and sampling images/s (§14).

One call (under 8 minutes on one H100/H200) prints JSON lines:

* ``matmul``: bf16 ``jnp.dot`` TFLOP/s on 8192² operands, the card's practical peak in this run;
* ``train`` per preset (``sid2-256-p2``, 137.4 GMAC, batch 128; ``sid2-256-p1``, 652.8 GMAC, batch
48 on a >100 GB card, else 32): the full jitted train step of :mod:`diff_pixel.train` (forward,
  backward, global-norm clipping, AdamW, EMA) on the SiD2 loss, bf16 compute, cuDNN attention,
  3 warm-up steps then the median of 10 timed steps (``block_until_ready`` each). FLOPs per image
  = 6 × ``xla_macs`` (forward MACs from the *lowered* HLO cost analysis with XLA attention; the
  compiled GPU module hides GEMMs/convolutions/cuDNN attention in custom calls). Reports step ms,
  img/s, TFLOP/s, the fraction of the 990 TFLOP/s datasheet dense bf16 figure (H100 SXM / H200)
  and of the measured matmul rate, and peak device memory;
* ``sampling``: images/s of 512-step ancestral sampling of ``sid2-256-p2`` (batch 128) with CFG at
  every step and with the recipe's guidance interval (only the steps inside run 2B batches),
  from timed 64-step runs: guided and plain per-step times are measured, and the 512-step figure
  counts the grid points inside the interval exactly (the interval run is also timed directly).

``--dry-run`` runs the same code on CPU with the tiny presets, batch 4, 1+2 steps and 8 sampling
steps, to check the script without a GPU.

Usage: ``python benchmarks/gpu_train_mfu.py [--dry-run] [--head-dim 128] [--only train|sampling]``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

DATASHEET_TFLOPS = 990.0  # dense bf16, H100 SXM and H200


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def matmul_tflops(n: int, dtype: Any, repeats: int) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    dot = jax.jit(lambda a, b: a @ b)
    dot(a, b).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = dot(a, b)
    out.block_until_ready()
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e12


def peak_memory_gb() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 1e9


def device_memory_gb() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    return None if limit is None else limit / 1e9


def build(config: Any) -> Any:
    """Build a model in one jitted program (fast on GPU) and return it."""
    from flax import nnx

    from diff_pixel.models import build_model

    graphdef = nnx.graphdef(nnx.eval_shape(lambda: build_model(config)))
    state = jax.jit(lambda: nnx.state(build_model(config)))()
    return nnx.merge(graphdef, state)


def forward_gmacs(config: Any) -> float:
    from diff_pixel.models import Cond, abstract_model, xla_macs

    model = abstract_model(config)
    cond = Cond(label=jnp.zeros((1,), jnp.int32)) if config.num_classes else None
    z_shape = (1, config.height, config.width, config.in_channels)
    return xla_macs(model, z_shape, cond) / 1e9


def bench_train(name: str, batch: int, args: argparse.Namespace, matmul: float) -> dict[str, Any]:
    from diff_pixel.models import count_macs, preset_config
    from diff_pixel.sid import SiD2Recipe, recipe_loss
    from diff_pixel.train import (
        DEFAULT_OPTIMIZER,
        OptimizerSpec,
        Phase,
        StepSpec,
        TrainConfig,
        init_train_state,
        make_train_step,
    )

    overrides: dict[str, Any] = {"compute_dtype": "bfloat16", "attention_impl": args.attention}
    if args.head_dim:
        overrides["head_dim"] = args.head_dim
    config = preset_config(name, **overrides)
    recipe = SiD2Recipe.for_resolution(config.height)
    gmac = forward_gmacs(config)
    model = build(config)
    tcfg = TrainConfig.from_recipe(recipe, steps=args.warmup + args.steps, batch_size=batch)
    optimizers = {DEFAULT_OPTIMIZER: OptimizerSpec().resolved(tcfg)}
    graphdef, state = init_train_state(model, optimizers, 0)
    del model
    phase = Phase(recipe_loss(recipe), (DEFAULT_OPTIMIZER,))
    step = make_train_step(StepSpec(graphdef, (phase,), tuple(optimizers.items())))
    rng = np.random.default_rng(0)
    data = {
        "x": jnp.asarray(
            rng.uniform(-1, 1, (batch, config.height, config.width, config.in_channels)),
            jnp.float32,
        ),
        "label": jnp.asarray(rng.integers(0, max(config.num_classes, 1), batch), jnp.int32),
        "index": jnp.arange(batch, dtype=jnp.int32),
        "slot": jnp.arange(batch, dtype=jnp.int32),
    }
    t0 = time.perf_counter()
    state, metrics = step(state, data, None, step=0)
    jax.block_until_ready((state, metrics))
    compile_s = time.perf_counter() - t0
    for _ in range(args.warmup - 1):
        state, metrics = step(state, data, None, step=1)
    jax.block_until_ready(state)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        state, metrics = step(state, data, None, step=1)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    img_s = batch / step_s
    tflops = 6 * gmac * 1e9 * img_s / 1e12
    return {
        "figure": "train",
        "preset": name,
        "batch": batch,
        "head_dim": config.head_dim,
        "dtype": "bfloat16",
        "attention": args.attention,
        "forward_gmac_xla": round(gmac, 4),
        "forward_gmac_analytic": round(count_macs(config)["total"] / 1e9, 4),
        "compile_s": round(compile_s, 2),
        "step_ms": round(1e3 * step_s, 2),
        "img_s": round(img_s, 2),
        "tflops": round(tflops, 2),
        "of_datasheet": round(tflops / DATASHEET_TFLOPS, 4),
        "of_matmul": round(tflops / matmul, 4) if matmul > 0 else None,
        "loss_finite": bool(np.isfinite(float(metrics["loss"]))),
        "peak_gb": peak_memory_gb(),
        "device": jax.devices()[0].device_kind,
    }


def bench_sampling(name: str, batch: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Time ``args.sampling_steps``-step runs of the jitted sampler (after a compiling call) with
    CFG at every step, with the recipe's interval, and without guidance; extrapolate images/s of a
    ``args.report_steps``-step run from the measured per-step times of guided (2B batch) and plain
    steps and the number of grid points inside the interval."""
    from diff_core.grids import uniform_t
    from diff_pixel.models import Cond, preset_config
    from diff_pixel.sampling import sample
    from diff_pixel.sid import SiD2Recipe

    overrides: dict[str, Any] = {"compute_dtype": "bfloat16", "attention_impl": args.attention}
    if args.head_dim:
        overrides["head_dim"] = args.head_dim
    config = preset_config(name, **overrides)
    recipe = SiD2Recipe.for_resolution(config.height)
    schedule = recipe.schedule()
    model = build(config)
    cond = Cond(label=jnp.asarray(np.arange(batch) % max(config.num_classes, 1), jnp.int32))
    shape = (batch, config.height, config.width, config.in_channels)
    n = args.sampling_steps
    modes = (
        ("cfg_every_step", recipe.guidance, (-math.inf, math.inf)),
        ("cfg_interval", recipe.guidance, recipe.guidance_interval),
        ("no_guidance", 1.0, (-math.inf, math.inf)),
    )
    timed: dict[str, dict[str, Any]] = {}
    for label, w, interval in modes:
        kw = dict(
            shape=shape,
            schedule=schedule,
            steps=n,
            cond=cond,
            guidance=w,
            interval=interval,
            return_stats=True,
        )
        t0 = time.perf_counter()
        x, stats = sample(model, key=jax.random.key(0), **kw)
        x.block_until_ready()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        x, stats = sample(model, key=jax.random.key(1), **kw)
        x.block_until_ready()
        wall = time.perf_counter() - t0
        timed[label] = {
            "wall": wall,
            "first": first,
            "evaluations": stats["evaluations"],
            "finite": bool(np.isfinite(np.asarray(x)).all()),
        }
    t_guided = timed["cfg_every_step"]["wall"] / n
    t_plain = timed["no_guidance"]["wall"] / n
    lam = uniform_t(schedule, args.report_steps).logsnr[: args.report_steps]
    lo, hi = recipe.guidance_interval
    inside = int(np.sum((lam >= lo) & (lam < hi)))
    projected = {
        "cfg_every_step": args.report_steps * t_guided,
        "cfg_interval": inside * t_guided + (args.report_steps - inside) * t_plain,
        "no_guidance": args.report_steps * t_plain,
    }
    out = []
    for label, w, interval in modes:
        r = timed[label]
        out.append(
            {
                "figure": "sampling",
                "preset": name,
                "mode": label,
                "guidance": w,
                "interval": [str(v) for v in interval],
                "batch": batch,
                "timed_steps": n,
                "evaluations": r["evaluations"],
                "first_call_s": round(r["first"], 2),
                "wall_s": round(r["wall"], 3),
                "ms_per_step": round(1e3 * r["wall"] / n, 2),
                f"img_s_{args.report_steps}_steps": round(batch / projected[label], 4),
                f"interval_points_of_{args.report_steps}": inside
                if label == "cfg_interval"
                else None,
                "finite": r["finite"],
                "device": jax.devices()[0].device_kind,
            }
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="CPU check with tiny presets")
    p.add_argument("--head-dim", type=int, default=128, help="attention head size (0 = preset's)")
    p.add_argument("--attention", default="auto", choices=("auto", "xla", "cudnn"))
    p.add_argument("--only", choices=("train", "sampling"), default=None)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--sampling-steps", type=int, default=64, help="steps of each timed run")
    p.add_argument("--report-steps", type=int, default=512, help="steps of the reported images/s")
    p.add_argument("--sampling-batch", type=int, default=128)
    args = p.parse_args()
    if args.warmup < 1 or args.steps < 1:
        p.error("--warmup and --steps must be >= 1")

    if args.dry_run:
        args.head_dim = args.head_dim if args.head_dim in (0, 16) else 16
        args.warmup, args.steps, args.sampling_steps, args.report_steps = 1, 2, 8, 16
        presets = [("tiny-16", 4), ("small-16", 4)]
        sampling = ("tiny-16", 4)
        matmul = matmul_tflops(512, jnp.float32, 3)
    else:
        if jax.default_backend() != "gpu":
            p.error("no GPU backend: run on a GPU machine or pass --dry-run")
        big = device_memory_gb() or 0.0
        presets = [("sid2-256-p2", 128), ("sid2-256-p1", 48 if big > 100 else 32)]
        sampling = ("sid2-256-p2", args.sampling_batch)
        matmul = matmul_tflops(8192, jnp.bfloat16, 20)
    emit(
        {
            "figure": "matmul",
            "tflops": round(matmul, 2),
            "dtype": "float32" if args.dry_run else "bfloat16",
            "of_datasheet": round(matmul / DATASHEET_TFLOPS, 4),
            "device": jax.devices()[0].device_kind,
            "jax": jax.__version__,
        }
    )
    with tempfile.TemporaryDirectory():
        if args.only in (None, "train"):
            for name, batch in presets:
                emit(bench_train(name, batch, args, matmul))
        if args.only in (None, "sampling"):
            for rec in bench_sampling(*sampling, args):
                emit(rec)


if __name__ == "__main__":
    main()
