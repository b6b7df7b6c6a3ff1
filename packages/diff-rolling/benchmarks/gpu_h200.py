"""One prepared GPU script (≤ 8 min on one H200): JSON lines into ``$OUT`` (or ``--out``).

Phases, each time-capped so a rerun fits the budget:

1. ``paper``-solver throughput: jax-cfd spectral solver at 256² (ν 1e-3), pooled to 64²;
   trajectory-frames per second.
2. ``small`` preset train step in bfloat16 on batch 32 of K + W = 10 frames at 64²: step time and
   TFLOP/s from XLA's cost analysis against the 990 TFLOP/s dense-bf16 datasheet.
3. Equal-NFE comparison, ``bench`` preset on the ``cpu`` data: rolling vs standard, rollouts at
   4 calls per frame; nMSE per lead, ratio rolling/standard.

``--dry-run`` runs every phase at toy sizes on CPU (what the test suite checks); no GPU was lent
to this package's first session, so the GPU figures are not measured yet.

    python benchmarks/gpu_h200.py --out "$OUT"
    python benchmarks/gpu_h200.py --dry-run --out /tmp/gpu-dry
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def _emit(out: Path, record: dict) -> None:
    record["time"] = time.time()
    line = json.dumps(record)
    print(line, flush=True)
    with open(out / "gpu_h200.jsonl", "a") as f:
        f.write(line + "\n")


def phase_solver(out: Path, dry: bool) -> None:
    import jax

    from diff_rolling.data.kolmogorov import generate, preset

    if dry:
        cfg = preset(
            "paper", grid=32, pool=4, n_trajectories=2, n_frames=2, burn_in=0.2, split=(2, 0, 0)
        )
    else:
        cfg = preset("paper", n_trajectories=16, n_frames=20, burn_in=0.2, split=(16, 0, 0))
    generate(cfg, batch=cfg.n_trajectories, progress=False)
    t = time.perf_counter()
    data = generate(cfg, batch=cfg.n_trajectories, progress=False)
    dt = time.perf_counter() - t
    n = cfg.n_trajectories * cfg.n_frames
    _emit(
        out,
        {
            "phase": "solver",
            "device": str(jax.devices()[0]),
            "grid": cfg.grid,
            "stored": cfg.stored_grid,
            "trajectory_frames": n,
            "frames_per_s": n / dt,
            "ms_per_trajectory_frame": 1e3 * dt / n,
            "finite": bool(np.isfinite(data.frames).all()),
        },
    )


def phase_train_step(out: Path, dry: bool) -> None:
    import jax
    import jax.numpy as jnp

    from diff_rolling import GaussianVideo
    from diff_rolling.train import RollingTrainConfig, make_trainer

    if dry:
        cfg = RollingTrainConfig(
            preset="micro", batch=2, steps=2, warmup=1, window=4, context=2, checkpoint_every=0
        )
        frames = np.asarray(GaussianVideo(resolution=16).sample(jax.random.key(0), 4, 8))
    else:
        cfg = RollingTrainConfig(
            preset="small",
            batch=32,
            steps=20,
            warmup=1,
            window=8,
            context=2,
            compute_dtype="bfloat16",
            checkpoint_every=0,
        )
        frames = np.asarray(
            GaussianVideo(resolution=64, channels=2).sample(jax.random.key(0), 64, 12)
        )
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        trainer = make_trainer(cfg, frames, d, progress=False)
        batch = next(trainer.data)
        trainer.step(batch)  # compile
        flops = trainer.step_cost(batch).get("flops") or None  # XLA's count, nothing runs
        n = cfg.steps
        t = time.perf_counter()
        for _ in range(n):
            m = trainer.step(next(trainer.data))
        jax.block_until_ready(jnp.asarray(m["loss"]))
        step_s = (time.perf_counter() - t) / n
    rec = {
        "phase": "train_step",
        "preset": cfg.preset,
        "batch": cfg.batch,
        "frames": cfg.context + cfg.window,
        "step_s": step_s,
        "flops_per_step": flops,
    }
    if flops:
        rec["tflops"] = flops / step_s / 1e12
        rec["fraction_of_990_datasheet"] = rec["tflops"] / 990.0
    _emit(out, rec)


def phase_equal_nfe(out: Path, dry: bool) -> None:
    from diff_rolling.data.kolmogorov import generate, preset
    from diff_rolling.evaluate import forecast, forecast_metrics
    from diff_rolling.train import RollingTrainConfig, train

    if dry:
        data = generate(
            preset("cpu", n_trajectories=4, n_frames=12, burn_in=0.4, split=(3, 0, 1)),
            progress=False,
        )
        kw = dict(preset="micro", steps=3, batch=2, warmup=1, window=4)
        n_frames, test = 4, data.test
    else:
        data = generate(preset("cpu"), batch=288, progress=False)
        kw = dict(preset="bench", steps=3000, batch=32, warmup=300, window=8)
        n_frames, test = 32, data.test[:32]
    res = {}
    for mode in ("rolling", "standard"):
        cfg = RollingTrainConfig(mode=mode, checkpoint_every=0, **kw)
        trainer = train(cfg, data.train, out / f"equal_nfe_{mode}", progress=False)
        fc = forecast(trainer.ema_model(), cfg, test, n_frames=n_frames, steps_per_shift=4)
        m = forecast_metrics(fc["frames"], fc["truth"], fc["context"], 0.4)
        res[mode] = {
            "nmse": m["model"]["nmse"],
            "corr": m["model"]["correlation"],
            "nfe": fc["nfe"],
        }
    _emit(
        out,
        {
            "phase": "equal_nfe",
            **res,
            "ratio_mean_nmse": float(
                np.mean(res["rolling"]["nmse"]) / np.mean(res["standard"]["nmse"])
            ),
        },
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out",
        default=os.environ.get("OUT", "gpu-out"),
        help="output folder (default: $OUT or gpu-out)",
    )
    p.add_argument("--dry-run", action="store_true", help="toy sizes on CPU (validates the script)")
    p.add_argument(
        "--phases", nargs="+", default=["solver", "train_step", "equal_nfe"], help="phases to run"
    )
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    phases = {"solver": phase_solver, "train_step": phase_train_step, "equal_nfe": phase_equal_nfe}
    code = 0
    for name in args.phases:
        t = time.perf_counter()
        try:
            phases[name](out, args.dry_run)
        except Exception as err:  # one phase failing must not lose the others' records
            _emit(out, {"phase": name, "error": f"{type(err).__name__}: {err}"})
            code = 1
        print(f"{name}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
