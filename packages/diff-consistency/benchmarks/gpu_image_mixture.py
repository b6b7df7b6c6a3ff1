"""One-GPU benchmark (spec §12): multistep consistency distillation of the exact image3x32 teacher
into a ≈ 40–50M-parameter U-ViT, with per-phase time limits; one JSON object per phase, so a run
that is cut off still reports.

Phases: (0) a plain diffusion train step of ``build_model("tiny-rgb-32", channels=(128, 256,
512, 1024))`` (bf16 compute, float32 master weights) — the in-run baseline; (1) ``fit_to_denoiser``
onto the exact denoiser; (2) MCM-CD S = 8 with aDDIM teacher steps (per-example variance of the
exact teacher, xvar_frac 0.75), teacher steps 64 → 512, batch 256; (3) the same for S = 4;
(4) evaluation: 10,000 samples from each student and from the exact teacher's DDIM-S and aDDIM-S
(S = 4, 8, 16, 64): pixel-space FD (Gaussian fits, eigen-decompositions on the device), mode TV
and spread. Per training phase: steps/s, TFLOP/s from XLA's cost analysis of the jitted step ÷
the measured step time, its fraction of 990 TFLOP/s (dense bf16 datasheet) and of ~490 TFLOP/s
(an external measurement of a plain JAX transformer train step on an H200), and its ratio to
phase 0.

    python benchmarks/gpu_image_mixture.py             # one H200, < 8 minutes
    python benchmarks/gpu_image_mixture.py --dry-run   # CPU: tiny sizes, every phase, ~2 min
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

DATASHEET_TFLOPS = 990.0
TRANSFORMER_TFLOPS = 490.0


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


class _WallLimit:
    """Trainer hook: stop (with a checkpoint) once ``seconds`` have passed since the first step."""

    def __init__(self, seconds: float) -> None:
        from diff_pixel.train import Hook

        class _Hook(Hook):
            def __init__(self, outer):
                self.outer = outer

            def on_step(self, trainer, step, metrics):
                if self.outer.start is None:
                    self.outer.start = time.perf_counter()
                    self.outer.first_step = step
                    return False
                return time.perf_counter() - self.outer.start > self.outer.seconds

        self.seconds, self.start, self.first_step = seconds, None, 0
        self.hook = _Hook(self)


def _step_flops(trainer: Any) -> float:
    """FLOPs of the trainer's next step (XLA's cost analysis: diff-pixel's ``step_cost``)."""
    return trainer.step_cost(next(trainer.data)).get("flops", float("nan"))


def _timed_run(trainer: Any, seconds: float, phase: str, baseline: float | None) -> dict:
    import jax

    flops = _step_flops(trainer)
    limit = _WallLimit(seconds)
    trainer.hooks = (*trainer.hooks, limit.hook)
    trainer.run()
    jax.block_until_ready(trainer.state)
    elapsed = time.perf_counter() - (limit.start or time.perf_counter())
    steps = trainer.step_count - limit.first_step
    step_s = elapsed / max(steps, 1)
    tflops = flops / step_s / 1e12
    return {
        "phase": phase,
        "steps": steps,
        "steps_per_s": 1.0 / step_s,
        "step_flops": flops,
        "tflops": tflops,
        "fraction_of_990": tflops / DATASHEET_TFLOPS,
        "fraction_of_490": tflops / TRANSFORMER_TFLOPS,
        "ratio_to_phase0": (tflops / baseline) if baseline else 1.0,
    }


def _fd_device(x: Any, mean: Any, cov: Any) -> float:
    """Fréchet distance of the Gaussian fit of x to N(mean, cov), eigen-decompositions on the
    device: ‖μ_x − μ‖² + tr C_x + tr C − 2 tr (C^½ C_x C^½)^½."""
    import jax.numpy as jnp

    x = jnp.asarray(x, jnp.float32).reshape(x.shape[0], -1)
    mu = jnp.mean(x, axis=0)
    xc = x - mu
    cx = xc.T @ xc / (x.shape[0] - 1)
    w, v = jnp.linalg.eigh(jnp.asarray(cov, jnp.float32))
    root = (v * jnp.sqrt(jnp.clip(w, 0.0))) @ v.T
    m = root @ cx @ root
    ev = jnp.linalg.eigvalsh((m + m.T) / 2)
    tr_sqrt = jnp.sum(jnp.sqrt(jnp.clip(ev, 0.0)))
    d = jnp.sum((mu - jnp.asarray(mean, jnp.float32).reshape(-1)) ** 2)
    return float(d + jnp.trace(cx) + jnp.trace(jnp.asarray(cov, jnp.float32)) - 2 * tr_sqrt)


def _mode_scores(x: Any, mix: Any) -> dict[str, float]:
    """Mode TV and spread with the assignment argmax_k log w_k + log N(x; μ_k, s_k² I) computed on
    the device (diff-core's ``mode_tv`` / ``mode_distance_ratio`` definitions; their host numpy
    form takes minutes at 10,000 × 3072 × 100)."""
    import jax.numpy as jnp
    import numpy as np

    from diff_core.metrics import expected_distance_factor

    x = jnp.asarray(x, jnp.float32).reshape(x.shape[0], -1)
    mu = jnp.asarray(mix.means, jnp.float32).reshape(mix.n_components, -1)
    s2 = jnp.asarray(np.asarray(mix.stds, np.float64) ** 2, jnp.float32)
    d = x.shape[1]
    dist2 = jnp.sum(x * x, 1)[:, None] - 2 * x @ mu.T + jnp.sum(mu * mu, 1)[None, :]
    logits = jnp.log(jnp.asarray(mix.weights, jnp.float32)) - 0.5 * (dist2 / s2 + d * jnp.log(s2))
    k = np.asarray(jnp.argmax(logits, axis=1))
    freq = np.bincount(k, minlength=mix.n_components) / k.size
    dist = np.sqrt(
        np.maximum(np.asarray(jnp.take_along_axis(dist2, jnp.asarray(k)[:, None], 1))[:, 0], 0)
    )
    spread = dist / (
        np.sqrt(np.asarray(mix.stds, np.float64) ** 2)[k] * expected_distance_factor(d)
    )
    return {
        "mode_tv": float(0.5 * np.abs(freq - mix.weights).sum()),
        "spread": float(spread.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (default: off)")
    args = parser.parse_args(argv)
    import jax
    import numpy as np
    from flax import nnx

    from diff_consistency import AnalyticVariance, ConsistencyConfig, OracleVariance, addim
    from diff_consistency import sample as student_sample
    from diff_consistency.driver import train_consistency
    from diff_core import grids, metrics, samplers
    from diff_core import sample as core_sample
    from diff_core.analytic import GaussianMixture
    from diff_core.testing import problem
    from diff_pixel import SampledData, TrainConfig, Trainer, build_model, fit_to_denoiser
    from diff_pixel.losses import example_keys, noise_batch, uniform_times
    from diff_protocol import jax_noise

    dry = args.dry_run
    limits = (
        {"p0": 20, "p1": 60, "p2": 120, "p3": 90}
        if not dry
        else {k: 3 for k in "p0 p1 p2 p3".split()}
    )
    channels = (128, 256, 512, 1024) if not dry else (16, 32, 32, 64)
    batch = 256 if not dry else 8
    n_eval = 10_000 if not dry else 256
    eval_steps = (4, 8, 16, 64) if not dry else (4, 8)
    _emit({"phase": "setup", "devices": [str(d) for d in jax.devices()], "dry_run": dry})

    prob = problem("image3x32")
    mix0 = prob.mixture
    mix = GaussianMixture(mix0.weights, mix0.means, mix0.stds, method="matmul")
    exact = mix.denoiser("x")
    schedule = prob.schedule

    def sample_x(n, rng):
        return mix0.sample(n, rng)[0].astype(np.float32)

    model = build_model(
        "tiny-rgb-32", channels=channels, compute_dtype="bfloat16", dropout=(0.0,) * 4
    )
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    _emit({"phase": "model", "parameters": n_params, "channels": list(channels)})

    def diffusion_loss(m, b, key, aux):
        import jax.numpy as jnp

        from diff_core import losses as core_losses

        x = b["x"]
        keys = example_keys(key, b["index"])
        t = uniform_times(keys)
        eps = noise_batch(keys, x.shape, x.dtype)
        z, lam, _ = core_losses.training_inputs(schedule, x, t, eps)
        a, s = jnp.sqrt(jax.nn.sigmoid(lam)), jnp.sqrt(jax.nn.sigmoid(-lam))
        v_t = a[:, None, None, None] * eps - s[:, None, None, None] * x
        return jnp.mean((m(z, lam) - v_t) ** 2), {}

    with tempfile.TemporaryDirectory() as tmp:
        cfg0 = TrainConfig(
            steps=10**6,
            batch_size=batch,
            warmup_steps=0,
            out_dir=f"{tmp}/p0",
            progress=False,
            checkpoint_every=0,
            ema_decay=0.999,
        )
        p0 = _timed_run(
            Trainer(nnx.clone(model), diffusion_loss, cfg0, SampledData(sample_x, batch, seed=0)),
            limits["p0"],
            "0_plain_diffusion_step",
            None,
        )
        _emit(p0)
        base = p0["tflops"]

        t0 = time.perf_counter()
        fit_steps = max(1, int(limits["p1"] * p0["steps_per_s"] / 1.2))
        init = fit_to_denoiser(
            nnx.clone(model),
            exact,
            sample_x,
            schedule,
            steps=fit_steps,
            batch_size=batch,
            lr=1e-4,
            out_dir=f"{tmp}/p1",
            progress=False,
        )
        _emit(
            {"phase": "1_fit_to_denoiser", "steps": fit_steps, "wall_s": time.perf_counter() - t0}
        )

        students = {}
        for phase, s in (("p2", 8), ("p3", 4)):
            cfg = ConsistencyConfig.preset(
                "toy-64d",
                student_steps=s,
                n_start=64,
                n_end=512,
                anneal_steps=10**6,
                batch_size=batch,
                num_steps=10**6,
            )
            trainer = train_consistency(
                cfg,
                data=SampledData(sample_x, batch, seed=1),
                out_dir=f"{tmp}/{phase}",
                init=init,
                schedule=schedule,
                teacher=exact,
                progress=False,
                checkpoint_every=0,
                run=False,
            )
            res = _timed_run(trainer, limits[phase], f"{phase[1]}_cd_S{s}", base)
            _emit(res)
            students[s] = trainer.model()

        t0 = time.perf_counter()
        truth_mean, truth_cov = mix0.mean(), mix0.covariance()
        noise = jax_noise(jax.random.key(2**30 + 17), (n_eval, 32, 32, 3))
        oracle = addim(OracleVariance(mix, 0.75))

        def score(x):
            return {"fd": _fd_device(x, truth_mean, truth_cov), **_mode_scores(x, mix0)}

        if dry:  # the device scores agree with diff-core's host metrics
            x = np.asarray(
                core_sample(exact, samplers.ddim(0.0), grids.uniform_t(schedule, 8), noise)
            )
            dev = _mode_scores(x, mix0)
            host = {
                "mode_tv": metrics.mode_tv(x, mix0),
                "spread": metrics.mode_distance_ratio(x, mix0),
            }
            _emit({"phase": "dry_run_metric_check", "device": dev, "host": host})

        rows = {}
        for s, st in students.items():
            rows[f"student_S{s}"] = score(student_sample(st, s, noise, schedule=schedule))
        for n in eval_steps:
            grid = grids.uniform_t(schedule, n)
            rows[f"teacher_ddim{n}"] = score(core_sample(exact, samplers.ddim(0.0), grid, noise))
            rows[f"teacher_addim{n}"] = score(core_sample(exact, oracle, grid, noise))
        rows["teacher_addim_analytic8"] = score(
            core_sample(exact, addim(AnalyticVariance()), grids.uniform_t(schedule, 8), noise)
        )
        _emit(
            {"phase": "4_evaluation", "samples": n_eval, "wall_s": time.perf_counter() - t0, **rows}
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
