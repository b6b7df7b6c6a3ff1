"""The ``diff-core demo``: every (sampler, steps) pair on an exact Gaussian mixture.

Samples the exact denoiser of a named problem (:func:`diff_core.testing.problem`) with each
sampler and step count, scores the samples against fresh true samples and the exact moments, and
writes ``samples.png``, ``metrics.csv``, ``metrics.json`` and ``metrics.md`` (atomically).
``metrics.json`` carries the ``glossary`` (what each column means, which direction is better,
the range expected at the demo's budget) and ``meta`` (expected time, budget) entries described
in :mod:`diff_core.figures`; the demo prints the glossary under its table.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
from pathlib import Path
from typing import Any

from diff_protocol.io import atomic_write

PROBLEMS = ("ring6", "mix1d", "hadamard16")
SAMPLERS = ("ddpm", "ddim", "euler", "heun", "dpmpp_2m")
GRIDS = ("uniform_t", "uniform_logsnr", "karras")
BACKENDS = ("numpy", "jax", "torch")
QUICK = {"n": 1000, "steps": (4, 16)}
#: Files the demo writes into its output folder (refused if present, unless overwrite).
OUTPUTS = ("samples.png", "metrics.csv", "metrics.json", "metrics.md")
#: Expected wall time on 2 CPU cores (seconds): the full demo (30 runs at n = 4000) measured
#: 60-70 s under load, the quick one (10 runs at n = 1000) about 5 s.
EXPECTED_S = {"full": 70, "quick": 5}
COLUMNS = ("sampler", "steps", "nfe", "mmd2", "sw2", "mean_log_p", "mode_tv", "spread", "fd_exact")


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Every default of ``diff-core demo`` (the CLI reads them from here)."""

    problem: str = "ring6"
    samplers: tuple[str, ...] = SAMPLERS
    steps: tuple[int, ...] = (1, 2, 4, 8, 16, 64)
    grid: str = "uniform_t"
    schedule: str = "cosine"
    n: int = 4000
    backend: str = "numpy"
    seed: int = 0
    out: str = "diff-core-demo"

    def quick(self) -> DemoConfig:
        return dataclasses.replace(self, n=QUICK["n"], steps=QUICK["steps"])


def glossary(cfg: DemoConfig) -> dict[str, dict[str, str]]:
    """What each column of the demo's table means, which direction is better and the range
    expected for ``ring6`` at the demo's sample size (measured: ``metrics.md`` of the quick and
    full demos; other problems keep the meanings, not the ranges)."""
    from .figures import entry

    small = cfg.n <= 1000
    floor = "0.005" if small else "0.002"
    return {
        "steps": entry(
            "sampler steps on the time grid (0: the data row, fresh samples of the true "
            "distribution, the floor every metric reaches with perfect samples)",
            "neither",
            "the step counts run: " + ", ".join(map(str, cfg.steps)),
        ),
        "nfe": entry(
            "denoiser evaluations per sample (Heun: 2 x steps - 1)", "lower", "= steps; Heun more"
        ),
        "mmd2": entry(
            "squared maximum mean discrepancy to fresh true samples (Gaussian kernels, 5 "
            "bandwidths); 0 for the same distribution, can dip below 0 (unbiased estimate)",
            "lower",
            f"data row |mmd2| < {floor} (the Monte-Carlo floor); 1-2 steps 0.6 to 4.3; "
            "4 steps 0.09 to 0.7; 16 steps 0.005 to 0.03; 64 steps < 0.003",
        ),
        "sw2": entry(
            "sliced 2-Wasserstein distance to fresh true samples (128 directions)",
            "lower",
            (
                "data row about 0.05; 16 steps 0.05 to 0.1"
                if small
                else "data row about 0.02; 16 steps 0.04 to 0.1; 64 steps 0.03 to 0.04"
            )
            + "; 1-4 steps 0.13 to 1.1 (Heun-2 up to 7)",
        ),
        "mean_log_p": entry(
            "mean log-density of the samples under the exact mixture (nats)",
            "closer to the data row",
            "data row about -0.1; above it (0.1 to 0.35 at 16 steps) means samples crowd the "
            "mode centres, far below (-3 to -17 at 1-4 steps, Heun-2 -2275) means blur and "
            "outliers",
        ),
        "mode_tv": entry(
            "total variation between the share of samples nearest each mode and the true "
            "mixture weights",
            "lower",
            (
                "data row about 0.04; 16 steps 0.02 to 0.045"
                if small
                else "data row about 0.006; 16 steps 0.02 to 0.045; 64 steps 0.012 to 0.02"
            )
            + "; 1-4 steps 0.06 to 0.78",
        ),
        "spread": entry(
            "mean squared distance of a sample to its nearest mode's centre over that mode's "
            "variance",
            "closer to 1",
            "1 is the truth (data row 0.99); below 1 over-concentrated (0.56 to 0.97 at 16 "
            "steps), above 1 blurred (4 to 18 at 1-4 steps)",
        ),
        "fd_exact": entry(
            "Frechet distance between the Gaussian fitted to the samples and the exact mean and "
            "covariance of the mixture",
            "lower",
            (
                "data row about 0.001; 16 steps 0.002 to 0.008"
                if small
                else "data row about 5e-5; 16 steps 3e-4 to 0.008; 64 steps < 4e-4"
            )
            + "; 4 steps 0.02 to 2.2",
        ),
    }


def output_conflicts(out: str | Path) -> list[str]:
    """The demo outputs already present in ``out`` (what ``--overwrite`` would replace)."""
    folder = Path(out)
    return [name for name in OUTPUTS if (folder / name).exists()]


def _require_demo_extra() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import tqdm  # noqa: F401
    except ImportError as e:
        print(
            f"diff-core demo needs matplotlib and tqdm ({e.name} is missing): "
            "pip install 'diff-core[demo]'",
            file=sys.stderr,
        )
        return None
    return plt


def _make_grid(cfg: DemoConfig, schedule: Any, n: int):
    from . import grids

    if cfg.grid == "uniform_t":
        return grids.uniform_t(schedule, n)
    if cfg.grid == "uniform_logsnr":
        return grids.uniform_logsnr(schedule, n)
    return grids.karras(schedule, n)


def _run_one(cfg: DemoConfig, prob: Any, sampler_name: str, n_steps: int) -> Any:
    import numpy as np

    from diff_protocol import jax_noise, load_sampler, numpy_noise, torch_noise
    from diff_protocol.testing import to_numpy

    from .sampling import sample

    sampler = load_sampler(sampler_name)
    grid = _make_grid(cfg, prob.schedule, n_steps)
    shape = (cfg.n, *prob.mixture.event_shape)
    if cfg.backend == "numpy":
        noise = numpy_noise(cfg.seed, shape)
    elif cfg.backend == "torch":
        import torch

        noise = torch_noise(cfg.seed, shape, dtype=torch.float64)
    else:
        import jax

        noise = jax_noise(jax.random.key(cfg.seed), shape)
    x = sample(prob.mixture.denoiser("x"), sampler, grid, noise)
    return np.asarray(to_numpy(x), dtype=np.float64)


def _score(prob: Any, x: Any, reference: Any) -> dict[str, float]:
    from . import metrics

    mix = prob.mixture
    flat = x.reshape(x.shape[0], -1)
    ref = reference.reshape(reference.shape[0], -1)
    return {
        "mmd2": float(metrics.mmd2(flat, ref)),
        "sw2": float(metrics.sliced_wasserstein(flat, ref)),
        "mean_log_p": float(metrics.mixture_log_likelihood(x, mix)),
        "mode_tv": float(metrics.mode_tv(x, mix)),
        "spread": float(metrics.mode_spread(x, mix)),
        "fd_exact": float(
            metrics.frechet_distance_to(flat, mix.mean().reshape(-1), mix.covariance())
        ),
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _plot(plt: Any, cfg: DemoConfig, prob: Any, data: Any, samples: dict) -> bytes:
    import numpy as np

    mix = prob.mixture
    cols = len(cfg.steps) + 1
    rows = len(cfg.samplers)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    flat_data = data.reshape(data.shape[0], -1)
    if cfg.problem == "hadamard16":
        mean = flat_data.mean(0)
        _, _, vt = np.linalg.svd(flat_data - mean, full_matrices=False)
        proj = vt[:2].T
    lims = None

    def coords(x: Any) -> Any:
        f = x.reshape(x.shape[0], -1)
        return (f - mean) @ proj if cfg.problem == "hadamard16" else f

    if cfg.problem != "mix1d":
        c = coords(data)
        pad = 0.15 * (c.max(0) - c.min(0))
        lims = (c.min(0) - pad, c.max(0) + pad)
    for i, name in enumerate(cfg.samplers):
        panels = [(f"{name} N={n}", samples[(name, n)]) for n in cfg.steps] + [("data", data)]
        for j, (title, x) in enumerate(panels):
            ax = axes[i, j]
            if cfg.problem == "mix1d":
                grid = np.linspace(-4, 3, 400)[:, None]
                dens = np.exp(np.asarray(mix.log_prob(grid)))
                ax.hist(x[:, 0], bins=80, range=(-4, 3), density=True, color="tab:blue", alpha=0.6)
                ax.plot(grid[:, 0], dens, color="k", lw=0.8)
            else:
                c = coords(x)
                labels = np.asarray(mix.assign(x))
                ax.scatter(c[:, 0], c[:, 1], s=1.5, c=labels, cmap="tab10", vmin=0, vmax=9)
                ax.set_xlim(lims[0][0], lims[1][0])
                ax.set_ylim(lims[0][1], lims[1][1])
                ax.set_aspect("equal")
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"diff-core demo: {cfg.problem}, {cfg.grid} grid, n={cfg.n}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def run_demo(cfg: DemoConfig) -> int:
    """Run the demo described by ``cfg``; returns the process exit code."""
    plt = _require_demo_extra()
    if plt is None:
        return 1
    from tqdm.auto import tqdm

    from .sampling import nfe
    from .testing import problem

    quick = (cfg.n, cfg.steps) == (QUICK["n"], QUICK["steps"])
    expected_s = EXPECTED_S["quick" if quick else "full"]
    n_s, n_n = len(cfg.samplers), len(cfg.steps)
    budget = f"{n_s * n_n} runs ({n_s} samplers x {n_n} step counts), n={cfg.n}"
    print(f"diff-core demo: {budget}; expected about {expected_s} s on 2 CPU cores", flush=True)
    prob = problem(cfg.problem)
    data, _ = prob.mixture.sample(cfg.n, seed=cfg.seed + 1)
    reference, _ = prob.mixture.sample(cfg.n, seed=cfg.seed + 2)
    from diff_protocol import load_sampler

    rows: list[dict[str, Any]] = [
        {"sampler": "data", "steps": 0, "nfe": 0, **_score(prob, data, reference)}
    ]
    samples = {}
    runs = [(s, n) for s in cfg.samplers for n in cfg.steps]
    for name, n in tqdm(runs, desc="diff-core demo", unit="run"):
        x = _run_one(cfg, prob, name, n)
        samples[(name, n)] = x
        n_eval = nfe(load_sampler(name), n, "denoise")
        rows.append({"sampler": name, "steps": n, "nfe": n_eval, **_score(prob, x, reference)})
    out = Path(cfg.out)
    atomic_write(out / "samples.png", _plot(plt, cfg, prob, data, samples))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows[1:]:
        writer.writerow({k: r[k] for k in COLUMNS})
    atomic_write(out / "metrics.csv", buf.getvalue().encode())
    from .figures import describe

    terms = glossary(cfg)
    meta = {
        "config": dataclasses.asdict(cfg),
        "data_row": rows[0],
        "runs": rows[1:],
        "meta": {"expected_s": expected_s, "budget": budget, "quick": quick},
        "glossary": terms,
    }
    atomic_write(out / "metrics.json", json.dumps(meta, indent=2, allow_nan=True).encode())
    table = markdown_table(rows)
    atomic_write(out / "metrics.md", table.encode())
    print(table, end="")
    print(describe(terms))
    print(f"wrote {out / 'samples.png'}, metrics.csv, metrics.json, metrics.md")
    return 0


def plot_schedules(resolution: int, out: str) -> int:
    """``diff-core schedules``: λ(t) of every schedule and each weighting's implied weight."""
    plt = _require_demo_extra()
    if plt is None:
        return 1
    if resolution < 1:
        raise ValueError(f"plot_schedules: resolution must be >= 1, got {resolution}")
    import numpy as np

    from . import schedules as S
    from . import weighting as W

    t = np.linspace(0.0, 1.0, 1001)[1:-1]
    scheds = {
        "cosine ±15": S.CosineSchedule(),
        f"shifted_cosine (d={resolution})": S.ShiftedCosineSchedule(resolution),
        f"interpolated_cosine (d={resolution})": S.InterpolatedCosineSchedule(resolution),
        "linear_beta (DDPM)": S.LinearBetaSchedule(),
        "polynomial_2 (EDM3D)": S.PolynomialSchedule(),
        "karras (EDM)": S.KarrasSchedule(),
    }
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, s in scheds.items():
        a1.plot(t, s.logsnr(t), label=name)
    a1.set_xlabel("t")
    a1.set_ylabel("logsnr")
    a1.legend(fontsize=7)
    base = S.CosineSchedule()
    lam, dlam = base.logsnr(t), base.dlogsnr_dt(t)
    weights = {
        "eps_mse": W.eps_mse(),
        "v_mse": W.v_mse(),
        "elbo": W.elbo(),
        "sigmoid(b=-3)": W.sigmoid(-3.0),
        "edm": W.edm(),
        "min_snr(5)": W.min_snr(),
    }
    for name, w in weights.items():
        implied = np.asarray(w.fn(lam, dlam)) / (-dlam)  # Kingma-Gao w(λ)
        a2.plot(lam, implied / implied.max(), label=name)
    a2.set_xlabel("logsnr")
    a2.set_ylabel("implied w(logsnr), normalised (cosine schedule)")
    a2.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write(Path(out), buf.getvalue())
    print(f"wrote {out}")
    return 0
