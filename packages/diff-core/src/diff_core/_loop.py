"""Python-loop sampling driver for numpy, array-api-strict and torch (see :func:`sample`)."""

from __future__ import annotations

import contextlib
import math
from typing import Any

from diff_protocol.arrays import namespace, work_dtype

from .sampling import SampleResult, StepInfo, data_estimate, non_finite_error


def _call(denoiser: Any, z: Any, logsnr: Any, cond: Any) -> Any:
    return denoiser(z, logsnr) if cond is None else denoiser(z, logsnr, cond)


def _all_finite(xp: Any, a: Any) -> bool:
    return bool(xp.all(xp.isfinite(a)))


def _progress(n: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError(
            "sample: progress=True needs tqdm; pip install 'diff-core[demo]'"
        ) from None
    return tqdm(total=n, desc="sampling", unit="step", leave=False)


def run_loop(
    denoiser,
    sampler,
    grid,
    noise,
    *,
    cond,
    z_init,
    final,
    x_clip,
    return_trajectory,
    check_finite,
    callback,
    progress,
    grad,
):
    z = z_init if z_init is not None else noise(0)
    xp = namespace(z)
    is_torch = type(z).__module__.startswith("torch")
    ctx = contextlib.nullcontext()
    if is_torch and not grad:
        import torch

        ctx = torch.no_grad()
    n = grid.n_steps
    t_host = [float(v) for v in grid.t.tolist()] if hasattr(grid.t, "tolist") else None
    lam_host = [float(v) for v in grid.logsnr.tolist()]
    t_host = t_host or [float(grid.t[k]) for k in range(n + 1)]
    dt = work_dtype(xp, z)
    dev = getattr(z, "device", None)
    batch_shape = (z.shape[0],) if len(z.shape) >= 1 else ()

    # The denoiser sees logsnr in the state's working dtype; sampler steps get float64 logsnr
    # where the backend has it, so step coefficients are not limited by logsnr's float32 rounding
    # (a float32 chain is then ~3x closer to the float64 one).
    coef_dt = xp.float64 if getattr(getattr(z, "device", None), "type", "cpu") != "mps" else dt

    def lam_array(k: int, dtype: Any = dt) -> Any:
        if dev is not None:
            return xp.asarray(lam_host[k], dtype=dtype, device=dev)
        return xp.asarray(lam_host[k], dtype=dtype)

    def evaluate(z_k: Any, k: int, lam_vec: Any) -> Any:
        out = _call(denoiser, z_k, lam_vec, cond)
        x_hat = data_estimate(out, z_k, lam_vec, denoiser.prediction)
        if x_clip is not None:
            x_hat = xp.clip(x_hat, -x_clip, x_clip)
        if check_finite and not _all_finite(xp, x_hat):
            raise non_finite_error("denoiser output", k, t_host[k], lam_host[k])
        return x_hat

    bar = _progress(n, progress)
    trajectory = [z] if return_trajectory else None
    evals = 0
    with ctx:
        state = sampler.init(z)
        try:
            for k in range(n):
                lam_k = lam_array(k, coef_dt)
                lam_vec = xp.broadcast_to(lam_array(k), batch_shape)
                x_hat = evaluate(z, k, lam_vec)
                evals += 1
                if k == n - 1 and final == "denoise":
                    z = x_hat
                else:
                    lam_s = lam_array(k + 1, coef_dt)
                    draw = noise(k + 1) if sampler.stochastic else None
                    z_pred, state = sampler.step(z, x_hat, lam_k, lam_s, draw, state)
                    if sampler.corrector is not None and math.isfinite(lam_host[k + 1]):
                        lam_vec_s = xp.broadcast_to(lam_array(k + 1), batch_shape)
                        x_pred = evaluate(z_pred, k + 1, lam_vec_s)
                        evals += 1
                        z, state = sampler.corrector(z, x_hat, z_pred, x_pred, lam_k, lam_s, state)
                    else:
                        z = z_pred
                    if check_finite and not _all_finite(xp, z):
                        raise non_finite_error("state", k, t_host[k], lam_host[k])
                if trajectory is not None:
                    trajectory.append(z)
                if callback is not None:
                    callback(StepInfo(k, t_host[k], t_host[k + 1], lam_host[k], z, x_hat, evals))
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    if return_trajectory:
        return SampleResult(z, evals, trajectory)
    return z
