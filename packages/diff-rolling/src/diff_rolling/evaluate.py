"""Forecasts from a trained run and their metrics against the truth and the baselines.

:func:`forecast` rolls a trained network out from the first K frames of each test trajectory
(rolling runs with :func:`~diff_rolling.sampling.rollout`, standard runs with
:func:`~diff_rolling.sampling.standard_rollout` at the same network calls per frame);
:func:`forecast_metrics` gives nMSE and vorticity correlation per lead, the spectrum error,
the per-lead sample std and the persistence and climatology baselines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from diff_protocol import jax_noise

from . import metrics
from .models import VideoDenoiser
from .sampling import RolloutConfig, rollout, standard_rollout

__all__ = ["evaluate_files", "forecast", "forecast_metrics"]


def forecast(
    network: Any,
    config: Any,
    test: Any,
    *,
    n_frames: int = 16,
    steps_per_shift: int = 4,
    sampler: str = "ddim",
    seed: int = 0,
    mode: str | None = None,
    progress: bool = False,
    schedule: Any = None,
) -> dict[str, Any]:
    """Roll ``network`` out on ``test (N, T, h, w, C)``: context = frames ``0..K−1``, truth =
    frames ``K..K+n−1``. Returns ``{"frames", "truth", "context", "nfe", "mode"}`` (numpy)."""
    test = np.asarray(test, np.float32)
    k, w = config.context, config.window
    if test.ndim != 5 or test.shape[1] < k + n_frames:
        raise ValueError(
            f"forecast: test must have shape (N, T >= {k + n_frames}, h, w, C), got {test.shape}"
        )
    mode = config.mode if mode is None else mode
    if schedule is None:
        schedule = config.recipe().schedule
    den = VideoDenoiser(network, k, "v", 15.0)
    ctx = test[:, :k]
    truth = test[:, k : k + n_frames]
    rc = RolloutConfig(window=w, context=k, steps_per_shift=steps_per_shift, sampler=sampler)
    noise = jax_noise(jax.random.key(seed), (test.shape[0], w) + test.shape[2:], per_example=True)
    run = rollout if mode == "rolling" else standard_rollout
    res = run(den, ctx, n_frames, rc, schedule, noise, progress=progress)
    return {
        "frames": np.asarray(res.frames),
        "truth": truth,
        "context": ctx,
        "nfe": int(res.nfe),
        "mode": mode,
    }


def forecast_metrics(frames: Any, truth: Any, context: Any, dt: float = 1.0) -> dict[str, Any]:
    """Metrics of a forecast and of the persistence / climatology baselines (lists per lead)."""
    frames, truth = np.asarray(frames), np.asarray(truth)
    pers = metrics.persistence(context, truth.shape[1])
    clim = metrics.climatology(truth)
    half = truth.shape[1] // 2
    out: dict[str, Any] = {}
    for name, pred in (("model", frames), ("persistence", pers), ("climatology", clim)):
        corr = metrics.vorticity_correlation(pred, truth)
        out[name] = {
            "nmse": metrics.normalized_mse(pred, truth).tolist(),
            "correlation": corr.tolist(),
            "time_to_0.8": metrics.time_to_threshold(corr, dt, 0.8),
            "time_to_0.5": metrics.time_to_threshold(corr, dt, 0.5),
            "spectrum_error": metrics.spectrum_error(pred[:, half:], truth[:, half:]),
            "sample_std": metrics.sample_std(pred).tolist(),
        }
    out["finite"] = bool(np.isfinite(frames).all())
    return out


def evaluate_files(paths: list[str], out: Path, dt: float | None) -> dict[str, Any]:
    """Evaluate rollouts written by ``diff-rolling sample`` side by side: ``metrics.json``,
    ``metrics.md`` (calls per frame, nMSE, correlation; persistence row), ``curves.png``,
    ``correlation.png``, ``spectrum.png`` and ``spectrum.json`` (energy spectra of the truth and
    every rollout over the last half of the leads, where ``spectrum_error`` is measured),
    ``strip.png`` (first trajectory: truth, every rollout and the first one's error, at up to 8
    leads) and ``rollout.gif`` (truth and every rollout) in ``out``."""
    from .viz import error_field, save_curves, save_gif, save_spectra, save_strip

    results, curves, corr, rollouts = {}, {}, {}, {}
    truth = None
    for p in paths:
        with np.load(p, allow_pickle=False) as f:
            if "frames" not in f.files or "truth" not in f.files:
                raise ValueError(
                    f"evaluate: {p} must hold 'frames' and 'truth' (written by `sample`), "
                    f"got keys {sorted(f.files)}"
                )
            frames, tr, ctx = f["frames"], f["truth"], f["context"]
            mode = str(f["mode"]) if "mode" in f.files else Path(p).stem
            nfe = int(f["nfe"]) if "nfe" in f.files else None
            s = int(f["steps_per_shift"]) if "steps_per_shift" in f.files else None
            step = float(f["dt"]) if dt is None and "dt" in f.files else (dt or 1.0)
        name = mode if mode not in results else f"{mode} ({Path(p).stem})"
        m = forecast_metrics(frames, tr, ctx, step)
        m["nfe"], m["calls_per_frame"] = nfe, s
        results[name] = m
        curves[name] = np.asarray(m["model"]["nmse"])
        corr[name] = np.asarray(m["model"]["correlation"])
        rollouts[name] = frames
        truth = tr
        dt = step
    panels = {name: frames[0] for name, frames in rollouts.items()}  # trajectory 0
    first = next(iter(results.values()))
    curves["persistence"] = np.asarray(first["persistence"]["nmse"])
    corr["persistence"] = np.asarray(first["persistence"]["correlation"])
    out.mkdir(parents=True, exist_ok=True)
    save_curves(
        out / "curves.png",
        curves,
        dt=dt or 1.0,
        ylabel="nMSE",
        title="rollout error vs lead time (lower is better)",
        references={"mean regressor": 1.0},
    )
    save_curves(
        out / "correlation.png",
        corr,
        dt=dt or 1.0,
        ylabel="vorticity correlation",
        title="higher is better",
    )
    save_gif(out / "rollout.gif", {"truth": truth[0], **panels})
    from diff_protocol.io import atomic_write

    # spectra over the last half of the leads (decorrelated frames), up to n/3 (dealiased)
    half = truth.shape[1] // 2
    spectra = {"truth": metrics.energy_spectrum(truth[:, half:])[1]}
    for name, frames in rollouts.items():
        spectra[name] = metrics.energy_spectrum(frames[:, half:])[1]
    k_max = truth.shape[-2] // 3
    save_spectra(
        out / "spectrum.png",
        spectra,
        k_max=k_max,
        title=f"energy spectrum, leads {half + 1}-{truth.shape[1]} (every trajectory)",
    )
    listing = {"k": list(range(k_max + 1))}
    listing.update({name: e[: k_max + 1].tolist() for name, e in spectra.items()})
    atomic_write(out / "spectrum.json", json.dumps(listing) + "\n")
    lead_every = max(1, truth.shape[1] // 8)
    first_name = next(iter(panels))
    error = error_field(panels[first_name], truth[0])
    rows = {"truth": truth[0], **panels, f"|error| {first_name}": error}
    save_strip(out / "strip.png", rows, every=lead_every, title="trajectory 0")

    atomic_write(out / "metrics.json", json.dumps(results, indent=1) + "\n")
    rows = [
        "| forecast | calls/frame | total calls | lead-1 nMSE | mean nMSE | lead-1 corr "
        "| time to corr 0.8 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in results.items():
        mm = m["model"]
        rows.append(
            f"| {name} | {m['calls_per_frame']} | {m['nfe']} | {mm['nmse'][0]:.3f} | "
            f"{np.mean(mm['nmse']):.3f} | "
            f"{mm['correlation'][0]:.3f} | {mm['time_to_0.8']:.2f} |"
        )
    pm = first["persistence"]
    rows.append(
        f"| persistence | 0 | 0 | {pm['nmse'][0]:.3f} | {np.mean(pm['nmse']):.3f} | "
        f"{pm['correlation'][0]:.3f} | {pm['time_to_0.8']:.2f} |"
    )
    atomic_write(out / "metrics.md", "\n".join(rows) + "\n")
    return results
