"""The toy benchmark (spec §10, distill.md §10): ring8 (2-D) and mix64 (64-D) with exact teachers.

* data and exact teacher: ``diff_core.testing.problem(name)`` (cosine schedule, λ ∈ [−15, 15]);
  the exact denoiser runs in the mixture's ``"matmul"`` form under JAX (:func:`exact_mixture`;
  its posterior means agree with the ``"direct"`` form to 3e-5 at every λ);
* initial network ("the pretrained diffusion model"): diff-pixel's ``MLPDenoiser`` (4 × 256; 512
  for mix64) regressed onto the exact denoiser with ``fit_to_denoiser`` (Adam 1e-3, batch 512,
  2,000 steps for ring8, 4,000 for mix64), cached in its run directory;
* student: CD (exact teacher; DDIM teacher steps in 2-D, aDDIM with per-example variance in 64-D)
  or CT, presets ``toy-2d`` / ``toy-64d`` (batch 512, Adam 1e-4, teacher steps 64 → 1280 over the
  first half, pseudo-Huber 1e-4 in v-space, no EMA);
* evaluation from fixed noise (never a training seed): 20,000 samples (ring8) / 10,000 (mix64);
  MMD² (first 3,000 vs 3,000 fresh true samples), mode TV, spread (``mode_distance_ratio``),
  var_ratio (``mode_spread``), mean log p, FD (Gaussian fits vs 10,000 fresh true samples).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from diff_core import grids, metrics
from diff_core import sample as core_sample
from diff_core import samplers as core_samplers
from diff_core.analytic import GaussianMixture
from diff_core.testing import problem
from diff_protocol import jax_noise

__all__ = [
    "EVAL_SAMPLES",
    "TOY_PROBLEMS",
    "evaluate",
    "exact_mixture",
    "fit_initial",
    "run_toy",
    "run_toy_command",
    "teacher_samples",
    "toy_config",
    "toy_samples",
]

TOY_PROBLEMS = ("ring8", "mix64")
EVAL_SAMPLES = {"ring8": 20_000, "mix64": 10_000}
_WIDTH = {"ring8": 256, "mix64": 512}
_FIT_STEPS = {"ring8": 2000, "mix64": 4000}
_EVAL_KEY = 2**30 + 17  # evaluation noise: jax.random.key(_EVAL_KEY), never a training seed
_TRUTH_SEED = 2**20 + 3


def _check_name(name: str) -> str:
    if name not in TOY_PROBLEMS:
        raise ValueError(f"toy: mixture must be one of {', '.join(TOY_PROBLEMS)}, got {name!r}")
    return name


@functools.cache
def exact_mixture(name: str) -> GaussianMixture:
    """The problem's mixture in the form used under JAX: ``method="matmul"`` (the ``"direct"``
    form is ~600× slower under ``jax.jit`` on CPU, and on jax 0.10.2 its fused broadcast-reduce
    returns wrong posterior means for batches above 16,384 rows)."""
    mix = problem(_check_name(name)).mixture
    return GaussianMixture(mix.weights, mix.means, mix.stds, method="matmul")


def toy_config(name: str, mode: str = "cd", student_steps: int = 8, **overrides: Any):
    """The toy preset of ``name`` (``toy-2d`` / ``toy-64d``) for ``mode`` and S."""
    from diff_consistency.config import ConsistencyConfig

    preset = "toy-2d" if _check_name(name) == "ring8" else "toy-64d"
    return ConsistencyConfig.preset(preset, mode=mode, student_steps=student_steps, **overrides)


def fit_initial(
    name: str,
    seed: int = 0,
    *,
    out_dir: str | None = None,
    steps: int | None = None,
    progress: bool = False,
) -> Any:
    """The MLP fitted to the exact denoiser (cached in ``out_dir`` when given: a finished run
    there is reloaded, not retrained)."""
    from flax import nnx

    from diff_pixel import MLPDenoiser
    from diff_pixel.train import fit_to_denoiser

    prob = problem(_check_name(name))
    mix = exact_mixture(name)
    model = MLPDenoiser(mix.dim, width=_WIDTH[name], depth=4, rngs=nnx.Rngs(seed))
    return fit_to_denoiser(
        model,
        mix.denoiser("x"),
        lambda n, rng: prob.mixture.sample(n, rng)[0],
        prob.schedule,
        steps=_FIT_STEPS[name] if steps is None else steps,
        batch_size=512,
        lr=1e-3,
        seed=seed,
        out_dir=out_dir,
        progress=progress,
    )


def _noise(name: str, n: int) -> Any:
    return jax_noise(jax.random.key(_EVAL_KEY), (n, exact_mixture(name).dim))


def toy_samples(student: Any, student_steps: int, name: str, n: int | None = None) -> np.ndarray:
    """``n`` samples (default :data:`EVAL_SAMPLES`) of the multistep sampler from the fixed
    evaluation noise."""
    from diff_consistency.samplers.multistep import sample

    n = EVAL_SAMPLES[_check_name(name)] if n is None else n
    return np.asarray(
        sample(student, student_steps, _noise(name, n), schedule=problem(name).schedule)
    )


def teacher_samples(name: str, steps: int, sampler: Any = None, n: int | None = None) -> np.ndarray:
    """The exact teacher's samples (DDIM by default) with ``steps`` steps from the same noise."""
    n = EVAL_SAMPLES[_check_name(name)] if n is None else n
    step = core_samplers.ddim(0.0) if sampler is None else sampler
    grid = grids.uniform_t(problem(name).schedule, steps)
    x = core_sample(exact_mixture(name).denoiser("x"), step, grid, _noise(name, n))
    return np.asarray(x)


@functools.cache
def _truth(name: str, n: int) -> np.ndarray:
    return problem(name).mixture.sample(n, seed=_TRUTH_SEED)[0]


def evaluate(x: Any, name: str) -> dict[str, float]:
    """The toy metrics of samples ``x`` (module docstring)."""
    mix = problem(_check_name(name)).mixture
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        return {"nonfinite": float(np.mean(~np.isfinite(x).all(axis=1)))}
    out = {
        "mmd2": float(metrics.mmd2(x[:3000], _truth(name, 3000), max_samples=3000)),
        "mode_tv": metrics.mode_tv(x, mix),
        "spread": metrics.mode_distance_ratio(x, mix),
        "var_ratio": metrics.mode_spread(x, mix),
        "log_p": metrics.mixture_log_likelihood(x, mix),
    }
    if name == "mix64":
        out["fd"] = metrics.frechet_distance(x, _truth(name, 10_000))
    else:
        out["log_p_q01"] = float(np.quantile(mix.log_prob(x), 0.01))
    return out


def run_toy(
    name: str,
    mode: str,
    student_steps: int,
    seed: int,
    *,
    out_dir: str,
    steps: int | None = None,
    init: Any = None,
    progress: bool = False,
    config_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one toy student (CD with the exact teacher, or CT) and evaluate it.

    ``init`` is the fitted MLP (default: :func:`fit_initial` cached in ``out_dir/init_seed{seed}``).
    The run lives in ``out_dir/{mode}_S{S}_seed{seed}`` (resumable). Returns the metrics of the
    student and of the exact teacher's DDIM with the same step count.
    """
    from diff_consistency.driver import train_consistency
    from diff_pixel.data import SampledData

    if init is None:
        init = fit_initial(name, seed, out_dir=os.path.join(out_dir, f"init_seed{seed}"))
    overrides = dict(config_overrides or {})
    if steps is not None:
        overrides.setdefault("num_steps", steps)
        overrides.setdefault("anneal_steps", max(1, steps // 2))
    cfg = toy_config(name, mode, student_steps, seed=seed, **overrides)
    prob = problem(name)
    data = SampledData(lambda n, rng: prob.mixture.sample(n, rng)[0], cfg.batch_size, seed=seed)
    teacher = exact_mixture(name).denoiser("x") if mode == "cd" else None
    trainer = train_consistency(
        cfg,
        data=data,
        out_dir=os.path.join(out_dir, f"{mode}_S{student_steps}_seed{seed}"),
        init=init,
        schedule=prob.schedule,
        teacher=teacher,
        progress=progress,
        log_every=100,
        checkpoint_every=max(cfg.num_steps // 2, 1),
    )
    student = trainer.model()
    result = {
        "mixture": name,
        "mode": mode,
        "S": student_steps,
        "seed": seed,
        "steps": cfg.num_steps,
        "student": evaluate(toy_samples(student, student_steps, name), name),
    }
    return result


def baseline_table(name: str, steps: Sequence[int] = (1, 2, 4, 8)) -> dict[int, dict[str, float]]:
    """The exact teacher's DDIM metrics at each step count (same evaluation noise)."""
    return {n: evaluate(teacher_samples(name, n), name) for n in steps}


def run_toy_command(
    name: str,
    mode: str,
    student_steps: Sequence[int],
    seeds: Sequence[int],
    out: Any,
    steps: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """``diff-consistency toy``: train and evaluate each (S, seed), write ``results.json`` (every
    metric per S and seed, and the exact teacher's DDIM with the same steps), ``scatter_S{S}.png``
    (ring8: student and teacher DDIM-S samples over the true density; mix64: the first two
    coordinates) and ``curves.png`` (MMD² against S)."""
    import sys
    from pathlib import Path

    from diff_protocol.io import atomic_write, dumps_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    teacher = {}
    for s in student_steps:
        t_x = teacher_samples(name, s)
        teacher[s] = evaluate(t_x, name)
        for seed in seeds:
            init = fit_initial(name, seed, out_dir=str(out / f"init_seed{seed}"), progress=progress)
            res = run_toy(
                name, mode, s, seed, out_dir=str(out), steps=steps, init=init, progress=progress
            )
            runs.append(res)
            print(
                f"{name} {mode} S = {s} seed {seed}: MMD² {res['student']['mmd2']:.4f} "
                f"(teacher DDIM-{s}: "
                f"{teacher[s]['mmd2']:.4f}; lower is better)",
                file=sys.stderr,
                flush=True,
            )
            if seed == seeds[0]:
                from diff_pixel.train import Trainer

                student = Trainer.restore(out / f"{mode}_S{s}_seed{seed}")[0]
                _scatter(
                    out / f"scatter_S{s}.png",
                    name,
                    toy_samples(student, s, name, 4000),
                    t_x[:4000],
                    s,
                )
    result = {"mixture": name, "mode": mode, "teacher_ddim": teacher, "runs": runs}
    atomic_write(out / "results.json", dumps_json(result, indent=2) + "\n")
    _curves(out / "curves.png", name, runs, teacher)
    return result


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "the toy pictures need matplotlib, which is not installed: "
            "pip install 'diff-consistency[all]'"
        ) from None
    return plt


def _scatter(path: Any, name: str, student: np.ndarray, teacher: np.ndarray, s: int) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
    mix = problem(name).mixture
    if mix.dim == 2:
        g = np.linspace(-1.6, 1.6, 200)
        xx, yy = np.meshgrid(g, g)
        logp = mix.log_prob(np.stack([xx.ravel(), yy.ravel()], 1)).reshape(xx.shape)
    for ax, x, title in (
        (axes[0], teacher, f"exact teacher, DDIM-{s}"),
        (axes[1], student, f"student, {s} steps"),
    ):
        if mix.dim == 2:
            ax.contour(xx, yy, logp, levels=[-4, -2, 0, 1], colors="0.6", linewidths=0.6)
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3)
        ax.set_title(title)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves(path: Any, name: str, runs: list, teacher: dict) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    steps = sorted(teacher)
    ax.plot(steps, [teacher[s]["mmd2"] for s in steps], "o-", label="exact teacher DDIM")
    for r in runs:
        ax.plot([r["S"]], [max(r["student"].get("mmd2", math.nan), 1e-5)], "s", color="C1")
    ax.plot([], [], "s", color="C1", label="consistency student (per seed)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sampling steps S")
    ax.set_ylabel("MMD² (lower is better)")
    ax.set_title(name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
