"""One-GPU benchmark (distill.md §13): moment matching on the exact image3x32 teacher with a
≈ 40–50M-parameter U-ViT student, hard per-phase time limits, one JSON object per phase (a run
that is cut off still reports).

Phases: (0) a plain diffusion train step of ``build_model("tiny-rgb-32", channels=(128, 256, 512,
1024))`` (bf16 compute, float32 master weights): the in-run baseline, 20 s; (1)
``fit_to_denoiser`` onto the exact denoiser, 60 s; (2) alternating variant, exact teacher, k = 8,
batch 256, 120 s; (3) parameter-space variant with the fitted U-ViT as ``ParametricTeacher``,
90 s; (4) evaluation: 10,000 samples of both students and of the exact teacher's DDIM-8 and
DDPM-8: pixel-space FD (Gaussian fits, eigen-decompositions on the device), mode TV and spread.
Per training phase: iterations/s, TFLOP/s (XLA cost analysis of the jitted step ÷ measured step
time), its fractions of 990 TFLOP/s (dense bf16 datasheet) and of ~490 TFLOP/s (an external
measurement of a plain JAX transformer train step on an H200), and its ratio to phase 0.

    python benchmarks/gpu_image_mixture.py             # one H100/H200, < 8 minutes
    python benchmarks/gpu_image_mixture.py --dry-run   # CPU: tiny sizes, every phase
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

DATASHEET_TFLOPS = 990.0
TRANSFORMER_TFLOPS = 490.0


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def stop_after(seconds: float) -> Any:
    """A trainer hook that stops the run ``seconds`` after its first step (which compiles)."""
    from diff_pixel.train import Hook

    class StopAfter(Hook):
        def __init__(self) -> None:
            self.t0: float | None = None
            self.first = 0

        def on_step(self, trainer: Any, step: int, metrics: Any) -> bool:
            if self.t0 is None:
                self.t0, self.first = time.perf_counter(), step
                return False
            return time.perf_counter() - self.t0 > seconds

    return StopAfter()


def step_flops(trainer: Any) -> float:
    """FLOPs of one step (XLA's cost analysis: diff-pixel's ``Trainer.step_cost``)."""
    return trainer.step_cost(next(trainer.data)).get("flops", float("nan"))


def timed_phase(trainer: Any, seconds: float, name: str, baseline: float | None) -> dict:
    import jax

    flops = step_flops(trainer)
    hook = stop_after(seconds)
    trainer.hooks = (*trainer.hooks, hook)
    trainer.run()
    jax.block_until_ready(trainer.state)
    n = max(trainer.step_count - hook.first, 1)
    step_s = (time.perf_counter() - (hook.t0 or time.perf_counter())) / n
    tflops = flops / step_s / 1e12
    return {
        "phase": name,
        "iterations": n,
        "iterations_per_s": 1.0 / step_s,
        "step_flops": flops,
        "tflops": tflops,
        "fraction_of_990": tflops / DATASHEET_TFLOPS,
        "fraction_of_490": tflops / TRANSFORMER_TFLOPS,
        "tflops_ratio_to_phase0": tflops / baseline if baseline else 1.0,
    }


def frechet_to(x: Any, mean: Any, cov: Any) -> float:
    """‖μ_x − μ‖² + tr C_x + tr C − 2 tr (C^½ C_x C^½)^½ with the eigen-decompositions on the
    device."""
    import jax.numpy as jnp

    x = jnp.asarray(x, jnp.float32).reshape(x.shape[0], -1)
    mu_x = x.mean(0)
    c_x = jnp.cov(x, rowvar=False)
    c = jnp.asarray(cov, jnp.float32)
    w, v = jnp.linalg.eigh(c)
    half = (v * jnp.sqrt(jnp.maximum(w, 0.0))) @ v.T
    inner = half @ c_x @ half
    root_trace = jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(0.5 * (inner + inner.T)), 0.0)).sum()
    diff = mu_x - jnp.asarray(mean, jnp.float32).reshape(-1)
    return float(diff @ diff + jnp.trace(c_x) + jnp.trace(c) - 2.0 * root_trace)


def mode_scores(x: Any, mix: Any) -> dict[str, float]:
    """diff-core's mode TV and spread (``mode_distance_ratio``) with the component assignment
    computed on the device."""
    import jax.numpy as jnp
    import numpy as np

    from diff_core.metrics import expected_distance_factor

    x = jnp.asarray(x, jnp.float32).reshape(x.shape[0], -1)
    means = jnp.asarray(mix.means, jnp.float32).reshape(len(mix.weights), -1)
    var = jnp.asarray(np.asarray(mix.stds, np.float64) ** 2, jnp.float32)
    d2 = (x * x).sum(1)[:, None] - 2.0 * x @ means.T + (means * means).sum(1)[None]
    score = jnp.log(jnp.asarray(mix.weights, jnp.float32)) - 0.5 * (
        d2 / var + x.shape[1] * jnp.log(var)
    )
    k = np.asarray(score.argmax(1))
    freq = np.bincount(k, minlength=len(mix.weights)) / k.size
    dist = np.sqrt(np.maximum(np.asarray(d2)[np.arange(k.size), k], 0.0))
    ratio = dist / (np.sqrt(np.asarray(var))[k] * expected_distance_factor(x.shape[1]))
    return {
        "mode_tv": float(0.5 * np.abs(freq - np.asarray(mix.weights)).sum()),
        "spread": float(ratio.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (default: off)")
    args = parser.parse_args(argv)
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from diff_core import grids, metrics, samplers
    from diff_core import losses as core_losses
    from diff_core import sample as core_sample
    from diff_core.analytic import GaussianMixture
    from diff_core.testing import problem
    from diff_distill import MomentMatchingConfig, make_trainer
    from diff_distill import sample as student_sample
    from diff_pixel import (
        SampledData,
        TrainConfig,
        Trainer,
        as_denoiser,
        build_model,
        count_macs,
        fit_to_denoiser,
    )
    from diff_pixel.losses import example_keys, noise_batch, uniform_times
    from diff_protocol import jax_noise

    dry = args.dry_run
    limits = (
        {"p0": 20, "p1": 60, "p2": 120, "p3": 90}
        if not dry
        else dict.fromkeys(("p0", "p1", "p2", "p3"), 3)
    )
    channels = (128, 256, 512, 1024) if not dry else (16, 32, 32, 64)
    batch = 256 if not dry else 8
    n_eval = 10_000 if not dry else 256
    emit({"phase": "setup", "devices": [str(d) for d in jax.devices()], "dry_run": dry})

    prob = problem("image3x32")
    truth = prob.mixture
    mix = GaussianMixture(truth.weights, truth.means, truth.stds, method="matmul")
    exact = mix.denoiser("x")
    schedule = prob.schedule

    def sample_x(n, rng):
        return truth.sample(n, rng)[0].astype(np.float32)

    model = build_model(
        "tiny-rgb-32", channels=channels, compute_dtype="bfloat16", dropout=(0.0,) * 4
    )
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    try:
        macs = count_macs(model.config)
    except Exception as err:  # a count that fails must not stop the benchmark
        macs = f"unavailable ({type(err).__name__})"
    emit({"phase": "model", "parameters": n_params, "channels": list(channels), "macs": macs})

    def diffusion_loss(m, b, key, aux):
        x = b["x"]
        keys = example_keys(key, b["index"])
        eps = noise_batch(keys, x.shape, x.dtype)
        z, lam, _ = core_losses.training_inputs(schedule, x, uniform_times(keys), eps)
        a = jnp.sqrt(jax.nn.sigmoid(lam))[:, None, None, None]
        s = jnp.sqrt(jax.nn.sigmoid(-lam))[:, None, None, None]
        return jnp.mean((m(z, lam) - (a * eps - s * x)) ** 2), {}

    with tempfile.TemporaryDirectory() as tmp:
        cfg0 = TrainConfig(
            steps=10**6,
            batch_size=batch,
            warmup_steps=0,
            out_dir=f"{tmp}/p0",
            progress=False,
            checkpoint_every=0,
        )
        p0 = timed_phase(
            Trainer(nnx.clone(model), diffusion_loss, cfg0, SampledData(sample_x, batch, seed=0)),
            limits["p0"],
            "0_plain_diffusion_step",
            None,
        )
        emit(p0)

        t0 = time.perf_counter()
        fit_steps = max(1, int(limits["p1"] * p0["iterations_per_s"] / 1.2))
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
        emit({"phase": "1_fit_to_denoiser", "steps": fit_steps, "wall_s": time.perf_counter() - t0})

        students = {}
        for phase, variant, teacher in (("p2", "alternating", exact), ("p3", "param_space", init)):
            cfg = MomentMatchingConfig.preset(
                "toy-64d", variant=variant, batch_size=batch, num_steps=10**6, lr_student=2e-5
            )
            trainer = make_trainer(
                cfg,
                teacher=teacher,
                data=SampledData(sample_x, batch, seed=1),
                out_dir=f"{tmp}/{phase}",
                student=init,
                schedule=schedule,
                progress=False,
                checkpoint_every=0,
            )
            emit(timed_phase(trainer, limits[phase], f"{phase[1]}_{variant}_k8", p0["tflops"]))
            students[variant] = trainer.model().student

        t0 = time.perf_counter()
        mean, cov = truth.mean(), truth.covariance()
        noise = jax_noise(jax.random.key(2**30 + 17), (n_eval, 32, 32, 3))

        def score(x):
            return {"fd": frechet_to(x, mean, cov), **mode_scores(x, truth)}

        rows = {}
        grid = grids.uniform_t(schedule, 8)
        for name, step in (("ddim8", samplers.ddim(0.0)), ("ddpm8", samplers.ddpm(0.0))):
            rows[f"teacher_{name}"] = score(core_sample(exact, step, grid, noise))
        for variant, st in students.items():
            rows[f"student_{variant}_k8"] = score(
                student_sample(as_denoiser(st), 8, noise, schedule=schedule)
            )
        if dry:  # the device scores agree with diff-core's host metrics
            x = np.asarray(core_sample(exact, samplers.ddim(0.0), grid, noise))
            rows["metric_check"] = {
                "device": mode_scores(x, truth),
                "host": {
                    "mode_tv": metrics.mode_tv(x, truth),
                    "spread": metrics.mode_distance_ratio(x, truth),
                },
            }
        emit(
            {"phase": "4_evaluation", "samples": n_eval, "wall_s": time.perf_counter() - t0, **rows}
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
