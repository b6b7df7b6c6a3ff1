"""Python-loop sampling driver for numpy, array-api-strict and torch (see :func:`sample`)."""

from __future__ import annotations

import contextlib
import math
from typing import Any

from diff_protocol.arrays import namespace, work_dtype

from ._driver_common import SampleResult, StepInfo, data_estimate, non_finite_error


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

    # Float policy (diff_core.sampling): the denoiser sees logsnr as a (B,) vector in the state's
    # working dtype, built once for the whole grid. Sampler steps and the output conversion get the
    # host floats: their coefficients are then computed in double precision on the host (a float32
    # chain is ~3x closer to the float64 one than with float32 coefficients) and cost one scalar
    # multiply each.
    if dev is not None:
        lam_all = xp.asarray(lam_host, dtype=dt, device=dev)
    else:
        lam_all = xp.asarray(lam_host, dtype=dt)
    lam_vecs = xp.broadcast_to(xp.reshape(lam_all, (n + 1, 1)), (n + 1, *batch_shape))

    def evaluate(z_k: Any, k: int) -> Any:
        lam_vec = lam_vecs[k, ...] if batch_shape else lam_all[k]
        out = _call(denoiser, z_k, lam_vec, cond)
        x_hat = data_estimate(out, z_k, lam_host[k], denoiser.prediction)
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
                lam_k, lam_s = lam_host[k], lam_host[k + 1]
                x_hat = evaluate(z, k)
                evals += 1
                if k == n - 1 and final == "denoise":
                    z = x_hat
                else:
                    draw = noise(k + 1) if sampler.stochastic else None
                    z_pred, state = sampler.step(z, x_hat, lam_k, lam_s, draw, state)
                    if sampler.corrector is not None and math.isfinite(lam_s):
                        x_pred = evaluate(z_pred, k + 1)
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
