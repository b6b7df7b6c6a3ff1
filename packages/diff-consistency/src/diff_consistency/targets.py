r"""The multistep consistency target (MCM Algorithm 1 without the loss; arXiv 2403.06807).

For one example at t in segment (t_step, t_step + 1/S], with s = t − 1/T on the fine grid:

1. z_s = aDDIM_{t→s}(x_teach, z_t; x_var)   (= DDIM bitwise when x_var = 0; CT: x_teach = x)
2. x_ref = sg f_target(z_s, s)
3. z_ref = DDIM_{s→t_step}(x_ref, z_s), replaced by z_s where n_rel = 1 (s = t_step)
4. x_tgt = invDDIM_{t→t_step}(z_ref, z_t)

so one DDIM jump of the student from z_t to t_step lands on z_ref. At n_rel = 1 the target does
not depend on the target network. t_step = 0 uses λ = +∞ (DDIM into it returns x̂, invDDIM from
it returns z_ref itself), so S = 1 is exactly the consistency-model target. Steps 1–4 run in at
least float32 (inputs of lower precision are cast up).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diff_consistency.addim import addim_step
from diff_core import transitions
from diff_protocol.arrays import is_lazy

__all__ = ["consistency_target"]


def _concrete(a: Any) -> bool:
    return not is_lazy(a) if hasattr(a, "shape") else isinstance(a, (int, float))


def _up(a: Any) -> jax.Array:
    a = jnp.asarray(a)
    return a.astype(jnp.float32) if a.dtype in (jnp.bfloat16, jnp.float16) else a


def consistency_target(
    f_ref: Callable[[jax.Array, jax.Array], jax.Array],
    z_t: Any,
    x_teach: Any,
    x_var: Any,
    logsnr_t: Any,
    logsnr_s: Any,
    logsnr_step: Any,
    *,
    at_segment_end: Any,
    max_snr: float = math.inf,
    stop_gradient: bool = True,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Steps 1–4 of the module docstring.

    Args:
      f_ref: ``(z, logsnr) -> x̂`` of the target network (stop-gradient is applied here).
      z_t: (B, ...). x_teach: the teacher's x̂ at (z_t, λ_t) (CT: the data x).
      x_var: per-dimension variance for the aDDIM teacher step, 0-d or (B,) (0: DDIM).
      logsnr_t, logsnr_s, logsnr_step: (B,) with λ_t < λ_s ≤ λ_step (λ_step may be +∞).
      at_segment_end: bool (B,), n_rel == 1 (then λ_s = λ_step).
      max_snr: aDDIM's cut-off (inf: the paper's formula).
      stop_gradient: apply ``stop_gradient`` to the target network's output (always in training;
        ``False`` lets tests check that the anchored examples do not depend on it at all).

    Returns:
      ``(x_tgt, {"z_s", "z_ref"})``, x_tgt in z_t's dtype.
    """
    if _concrete(logsnr_s) and _concrete(logsnr_t):
        ls, lt = np.asarray(logsnr_s, np.float64), np.asarray(logsnr_t, np.float64)
        if not np.all(ls > lt):
            raise ValueError(
                "consistency_target: logsnr_s must be > logsnr_t (s is the less noisy time; a "
                "grid or index with s = t has no teacher step)"
            )
        if _concrete(logsnr_step) and not np.all(np.asarray(logsnr_step, np.float64) >= ls):
            raise ValueError("consistency_target: logsnr_step must be >= logsnr_s")
    out_dtype = jnp.asarray(z_t).dtype
    z_t, x_teach = _up(z_t), _up(x_teach)
    lt, ls, lstep = _up(logsnr_t), _up(logsnr_s), _up(logsnr_step)
    end = jnp.asarray(at_segment_end, bool)
    z_s = addim_step(z_t, x_teach, lt, ls, x_var=_up(x_var), max_snr=max_snr)
    # The target network is evaluated at a finite level even where s = 0 (there its output is
    # not used: n_rel = 1 replaces z_ref by z_s).
    ls_eval = jnp.where(jnp.isfinite(ls), ls, lt)
    x_ref = f_ref(z_s, ls_eval)
    x_ref = _up(jax.lax.stop_gradient(x_ref) if stop_gradient else x_ref)
    ls_from = jnp.where(end, lt, ls)  # any λ < λ_step; the jump is discarded where end
    z_jump = transitions.ddim(x_ref, z_s, ls_from, lstep)
    end_b = end.reshape(end.shape + (1,) * (z_s.ndim - 1))
    z_ref = jnp.where(end_b, z_s, z_jump)
    x_tgt = transitions.inv_ddim(z_ref, z_t, lt, lstep)
    return x_tgt.astype(out_dtype), {"z_s": z_s, "z_ref": z_ref}
