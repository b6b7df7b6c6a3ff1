"""CPU train-step throughput of the CPU presets on digits (spec §14). Prints JSON lines.

For each preset (default ``tiny-16`` and ``small-16``, batch 128, SiD2 recipe for d = 16):

* ``bare``: the jitted train step alone (``make_train_step`` on a ``TrainState``, batches already
  on device) — images/s, wall and CPU seconds per step, achieved GFLOP/s = 6 × analytic MACs ×
  images/s, and its ratio to the float32 ``jnp.dot`` GFLOP/s measured in the same run;
* ``trainer``: ``Trainer.step`` on host batches from the ``Loader`` (data, transfer, non-finite
  check included) and its throughput ratio to the bare step (target ≥ 0.9: the trainer adds no
  overhead);
* ``compile_s``: wall time of the first (compiling) step.

Usage: ``python benchmarks/cpu_train_step.py [--presets tiny-16,small-16] [--batch-size 128]
[--steps 10]``. Wall-clock numbers depend on the machine's load; the ratios are measured in the same
process, back to back.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np


def matmul_gflops(n: int = 1024, repeats: int = 10) -> float:
    """float32 ``jnp.dot`` throughput (GFLOP/s, 2n³ per product) on the default device."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(repeats):
        dot(a, b).block_until_ready()
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def measure(preset: str, batch_size: int, steps: int, matmul: float) -> list[dict]:
    from diff_pixel.data import Loader, digits
    from diff_pixel.models import build_model, count_macs
    from diff_pixel.sid import SiD2Recipe, recipe_loss
    from diff_pixel.train import (
        DEFAULT_OPTIMIZER,
        OptimizerSpec,
        Phase,
        StepSpec,
        TrainConfig,
        Trainer,
        data_mesh,
        init_train_state,
        make_train_step,
        replicate,
        shard_batch,
    )

    recipe = SiD2Recipe.for_resolution(16)
    loss = recipe_loss(recipe)
    model = build_model(preset)
    macs = count_macs(model.config)["total"]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            steps=10**6,
            batch_size=batch_size,
            lr=2e-3,
            warmup_steps=100,
            ema_decay=0.999,
            out_dir=tmp,
            progress=False,
        )
        loader = Loader(digits(16), batch_size, seed=0)
        trainer = Trainer(model, loss, cfg, loader)

        # bare jitted step on its own state (same graphdef → the same compiled executable)
        mesh = data_mesh(1)
        optimizers = {DEFAULT_OPTIMIZER: OptimizerSpec().resolved(cfg)}
        graphdef, state = init_train_state(build_model(preset), optimizers, cfg.seed)
        state = replicate(state, mesh)
        spec = StepSpec(graphdef, (Phase(loss, (DEFAULT_OPTIMIZER,)),), tuple(optimizers.items()))
        step = make_train_step(spec)
        batches = [shard_batch(next(loader), mesh) for _ in range(steps)]
        t0 = time.perf_counter()
        state, m = step(state, batches[0], None, step=0)
        jax.block_until_ready((state, m))
        compile_s = time.perf_counter() - t0

        def timed(fn) -> tuple[float, float]:
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            return time.perf_counter() - w0, time.process_time() - c0

        def run_bare() -> None:
            nonlocal state
            for b in batches:
                state, metrics = step(state, b, None, step=1)
                bool(metrics["finite"])  # the same per-step host sync as the trainer

        host = [next(loader) for _ in range(steps)]
        trainer.step(host[0])  # warm (shares the executable; no compile)

        def run_trainer() -> None:
            for b in host:
                trainer.step(b)

        # interleave the two measurements to cancel load drift on a shared machine
        bare_w, bare_c, tr_w, tr_c = [], [], [], []
        for _ in range(2):
            w, c = timed(run_bare)
            bare_w.append(w)
            bare_c.append(c)
            w, c = timed(run_trainer)
            tr_w.append(w)
            tr_c.append(c)
    bare_ips = steps * batch_size / min(bare_w)
    tr_ips = steps * batch_size / min(tr_w)
    gflops = 6 * macs * bare_ips / 1e9
    return [
        {
            "benchmark": "cpu_train_step",
            "figure": "bare_step",
            "preset": preset,
            "batch_size": batch_size,
            "img_per_s": bare_ips,
            "wall_s_per_step": min(bare_w) / steps,
            "cpu_s_per_step": min(bare_c) / steps,
            "compile_s": compile_s,
            "forward_gmac_per_image": macs / 1e9,
            "achieved_gflops": gflops,
            "matmul_gflops": matmul,
            "ratio_to_matmul": gflops / matmul,
            "devices": jax.device_count(),
            "backend": jax.default_backend(),
        },
        {
            "benchmark": "cpu_train_step",
            "figure": "trainer_overhead",
            "preset": preset,
            "batch_size": batch_size,
            "trainer_img_per_s": tr_ips,
            "bare_img_per_s": bare_ips,
            "trainer_cpu_s_per_step": min(tr_c) / steps,
            "ratio_trainer_to_bare": tr_ips / bare_ips,
            "target": 0.9,
        },
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny-16,small-16")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    matmul = matmul_gflops()
    print(json.dumps({"benchmark": "cpu_train_step", "figure": "matmul_f32", "gflops": matmul}))
    for preset in args.presets.split(","):
        for record in measure(preset.strip(), args.batch_size, args.steps, matmul):
            print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
