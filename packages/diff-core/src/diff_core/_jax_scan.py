"""JAX sampling driver: steps 0..N−2 in one ``lax.scan`` under ``jax.jit``.

The denoiser, the noise source and the condition are each split by
:func:`diff_core._jax_partition.partition`: their array leaves (weights, keys, tables, condition
arrays) are traced arguments, and their tree structure plus non-array leaves are static. So new
weights (updated in place or in a new object of the same structure), a new key or a new condition
do not recompile, and a pytree denoiser's weights are never baked into the program. A plain
function or unregistered object is static as a whole (hashed as it hashes itself). The sampler and
options are static; the grid and the initial state are traced (a new grid of the same length does
not recompile either).

The last step runs in the same jitted function but is traced separately, because whether
``logsnr[N]`` is infinite (corrector skipped) is decided on the host. Finiteness is carried as a
per-step flag vector and raised on the host after the call.

Float policy (the one of :mod:`diff_core.sampling`): the state keeps z's dtype; the denoiser sees
logsnr as a (B,) vector in the working dtype (float32 for bf16/f16 states); the output conversion
and the step coefficients use logsnr in float64 when ``jax_enable_x64`` is on, else float32.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from ._driver_common import SampleResult, data_estimate, nfe, non_finite_error
from ._jax_partition import partition
from .guidance import register_jax_pytrees


def _call(denoiser: Any, z: Any, logsnr: Any, cond: Any) -> Any:
    return denoiser(z, logsnr) if cond is None else denoiser(z, logsnr, cond)


def _work_dtype(z: Any) -> Any:
    return jnp.float32 if z.dtype in (jnp.bfloat16, jnp.float16) else z.dtype


def _coefficient_dtype(work_dtype: Any) -> Any:
    """Dtype of the step and conversion coefficients: float64 under ``jax_enable_x64``, else
    float32 (or the working dtype when that is wider, which needs x64 anyway)."""
    return jnp.float64 if jax.config.jax_enable_x64 else work_dtype


@functools.partial(
    jax.jit,
    static_argnames=(
        "denoiser_static",
        "noise_static",
        "cond_static",
        "sampler",
        "final",
        "x_clip",
        "end_finite",
        "trajectory",
        "has_z_init",
    ),
)
def _sample_jit(
    logsnr,
    logsnr_coef,
    denoiser_arrays,
    noise_arrays,
    cond_arrays,
    z_init,
    *,
    denoiser_static,
    noise_static,
    cond_static,
    sampler,
    final,
    x_clip,
    end_finite,
    trajectory,
    has_z_init,
):
    denoiser = denoiser_static.rebuild(denoiser_arrays)
    noise = noise_static.rebuild(noise_arrays)
    cond = cond_static.rebuild(cond_arrays)
    prediction = denoiser.prediction
    z0 = z_init if has_z_init else noise(0)
    n = logsnr.shape[0] - 1
    batch_shape = (z0.shape[0],) if z0.ndim >= 1 else ()

    def evaluate(z, k):
        lam_vec = jnp.broadcast_to(logsnr[k], batch_shape)
        out = _call(denoiser, z, lam_vec, cond)
        x_hat = data_estimate(out, z, logsnr_coef[k], prediction)
        if x_clip is not None:
            x_hat = jnp.clip(x_hat, -x_clip, x_clip)
        return x_hat

    def one_step(z, state, k, with_corrector):
        lam_t, lam_s = logsnr_coef[k], logsnr_coef[k + 1]
        x_hat = evaluate(z, k)
        ok_out = jnp.all(jnp.isfinite(x_hat))
        draw = noise(k + 1) if sampler.stochastic else None
        z_pred, state = sampler.step(z, x_hat, lam_t, lam_s, draw, state)
        if sampler.corrector is not None and with_corrector:
            x_pred = evaluate(z_pred, k + 1)
            ok_out = ok_out & jnp.all(jnp.isfinite(x_pred))
            z_new, state = sampler.corrector(z, x_hat, z_pred, x_pred, lam_t, lam_s, state)
        else:
            z_new = z_pred
        return z_new, state, ok_out, jnp.all(jnp.isfinite(z_new))

    def body(carry, k):
        z, state = carry
        z_new, state, ok_out, ok_state = one_step(z, state, k, True)
        ys = (ok_out, ok_state, z_new if trajectory else None)
        return (z_new, state), ys

    state0 = sampler.init(z0)
    (z, state), (ok_out, ok_state, traj) = jax.lax.scan(
        body, (z0, state0), jnp.arange(n - 1, dtype=jnp.int32)
    )
    last = jnp.asarray(n - 1, dtype=jnp.int32)
    if final == "denoise":
        z_last = evaluate(z, last)
        ok_o, ok_s = jnp.all(jnp.isfinite(z_last)), jnp.asarray(True)
    else:
        z_last, state, ok_o, ok_s = one_step(z, state, last, end_finite)
    ok_out = jnp.concatenate([ok_out, ok_o[None]])
    ok_state = jnp.concatenate([ok_state, ok_s[None]])
    if trajectory:
        traj = jnp.concatenate([z0[None], traj, z_last[None]], axis=0)
    return z_last, jnp.stack([ok_out, ok_state]), traj


def run_scan(
    denoiser, sampler, grid, noise, *, cond, z_init, final, x_clip, return_trajectory, check_finite
):
    register_jax_pytrees()  # diff-core's and diff-protocol's classes (Guided, noise sources)
    if z_init is not None:
        probe = z_init
    elif hasattr(noise, "dtype") and hasattr(noise, "shape"):
        probe = jax.ShapeDtypeStruct(tuple(noise.shape), noise.dtype)
    else:
        probe = jax.eval_shape(noise, 0)
    dt = _work_dtype(probe)
    logsnr = jnp.asarray(grid.logsnr, dtype=dt)
    coef_dt = _coefficient_dtype(dt)
    logsnr_coef = logsnr if coef_dt == dt else jnp.asarray(grid.logsnr, dtype=coef_dt)
    n = grid.n_steps
    end_finite = math.isfinite(float(grid.logsnr[-1]))
    denoiser_arrays, denoiser_static = partition(denoiser, name="denoiser")
    noise_arrays, noise_static = partition(noise, name="noise")
    cond_arrays, cond_static = partition(cond, name="cond")
    try:
        hash(sampler)
    except TypeError as e:
        raise TypeError(
            "sample: under JAX the sampler is a static argument of jax.jit and must be hashable, "
            f"got {type(sampler).__name__} ({e}); build it with a diff_core.samplers factory or "
            "make its fields hashable"
        ) from None
    z, ok, traj = _sample_jit(
        logsnr,
        logsnr_coef,
        denoiser_arrays,
        noise_arrays,
        cond_arrays,
        z_init,
        denoiser_static=denoiser_static,
        noise_static=noise_static,
        cond_static=cond_static,
        sampler=sampler,
        final=final,
        x_clip=x_clip,
        end_finite=end_finite,
        trajectory=bool(return_trajectory),
        has_z_init=z_init is not None,
    )
    if check_finite:
        import numpy as np

        ok_h = np.asarray(ok)  # one device-to-host transfer (also waits for the result)
        if not ok_h.all():
            t_h = [float(v) for v in np.asarray(grid.t)]
            lam_h = [float(v) for v in np.asarray(grid.logsnr)]
            for k in range(n):
                if not ok_h[0, k]:
                    raise non_finite_error("denoiser output", k, t_h[k], lam_h[k])
                if not ok_h[1, k]:
                    raise non_finite_error("state", k, t_h[k], lam_h[k])
    else:
        z = jax.block_until_ready(z)
    if return_trajectory:
        return SampleResult(z, nfe(sampler, n, final, grid), list(traj))
    return z
