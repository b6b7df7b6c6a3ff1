"""Public checks for anyone writing another rolling sampler or local-time map.

- :func:`check_local_time_maps`: rolling.md check 1 for any pair of maps.
- :func:`check_rollout_against_oracle`: checks 5 and 6 — a rollout of the exact linear-Gaussian
  denoiser (white AR(1), φ = 0.9) must reproduce the stationary variance 1 and lag correlations
  φ^ℓ of the process, and the window state after the init pass and after each shift must have the
  exact covariance ``A C_stat A + diag(σ²)`` at local times ``rolling_times(0)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["check_local_time_maps", "check_rollout_against_oracle", "exact_window_covariance"]


def check_local_time_maps(
    fn_roll: Callable[[Any, int], Any],
    fn_init: Callable[[Any, int], Any],
    window: int,
    n: int = 1001,
) -> None:
    """Assert the identities of rolling.md check 1 for ``fn_roll``/``fn_init`` (float64 and
    float32): hand-off ``init(0) == roll(0)``, shift ``roll(1)[k−1] == roll(0)[k]`` bitwise,
    ``init(1) == 1``, monotone in k and t, ``roll(t)[k] ∈ [k/W, (k+1)/W]``."""
    for dtype in (np.float64, np.float32):
        t = np.linspace(0, 1, n, dtype=dtype)
        roll, init = np.asarray(fn_roll(t, window)), np.asarray(fn_init(t, window))
        z, o = dtype(0.0), dtype(1.0)
        r0, r1 = np.asarray(fn_roll(z, window)), np.asarray(fn_roll(o, window))
        if not np.array_equal(np.asarray(fn_init(z, window)), r0):
            raise AssertionError(f"init(0) != rolling(0) for W={window} ({dtype.__name__})")
        if not np.array_equal(r1[:-1], r0[1:]):
            raise AssertionError(
                f"rolling(1)[k-1] != rolling(0)[k] for W={window} ({dtype.__name__})"
            )
        if not np.all(np.asarray(fn_init(o, window)) == 1):
            raise AssertionError(f"init(1) != 1 for W={window}")
        for name, a in (("rolling", roll), ("init", init)):
            if np.any(np.diff(a, axis=-1) < 0) or np.any(np.diff(a, axis=0) < 0):
                raise AssertionError(f"{name} map is not monotone for W={window}")
        k = np.arange(window)
        if np.any(roll < (k / window).astype(dtype)) or np.any(
            roll > ((k + 1) / window).astype(dtype)
        ):
            raise AssertionError(f"rolling(t)[k] leaves [k/W, (k+1)/W] for W={window}")


def exact_window_covariance(phi: float, window: int, logsnr: Any) -> np.ndarray:
    """``A C_stat A + diag(σ²)``: the covariance of a noised window of a stationary AR(1) with
    unit variance (``C_ij = φ^|i−j|``) at per-frame levels ``logsnr (W,)``."""
    lam = np.asarray(logsnr, np.float64)
    k = np.arange(window)
    c = float(phi) ** np.abs(k[:, None] - k[None, :])
    alpha = np.sqrt(1.0 / (1.0 + np.exp(-lam)))
    sigma2 = 1.0 / (1.0 + np.exp(lam))
    return alpha[:, None] * c * alpha[None, :] + np.diag(sigma2)


def check_rollout_against_oracle(
    rollout_fn: Callable[..., Any] | None = None,
    phi: float = 0.9,
    window: int = 8,
    steps_per_shift: int = 32,
    *,
    sampler: str = "ddpm",
    batch: int = 8,
    resolution: int = 32,
    n_frames: int = 40,
    seed: int = 0,
    var_tol: float = 0.04,
    lag1_tol: float = 0.015,
) -> dict[str, float]:
    """Roll the exact denoiser of a white AR(1) ``GaussianVideo`` out and compare the emitted
    frames' variance and lag-1 correlation with 1 and φ (tolerances of check 5 at S = 32).

    ``rollout_fn(denoiser, context, n_frames, config, schedule, noise)`` defaults to
    :func:`diff_rolling.rollout`. Returns the measured moments; raises ``AssertionError`` when a
    gate fails.
    """
    import jax

    from diff_core import CosineSchedule
    from diff_protocol import jax_noise

    from .data.gaussian import GaussianVideo
    from .sampling import RolloutConfig, rollout

    rollout_fn = rollout if rollout_fn is None else rollout_fn
    gv = GaussianVideo(resolution=resolution, phi=phi)
    ctx = gv.sample(jax.random.key(seed), batch, 1)
    cfg = RolloutConfig(window=window, context=1, steps_per_shift=steps_per_shift, sampler=sampler)
    noise = jax_noise(jax.random.key(seed + 1), (batch, window, resolution, resolution, 1))
    res = rollout_fn(gv.exact_denoiser(), ctx, n_frames, cfg, CosineSchedule(-15, 15), noise)
    m = GaussianVideo.moments(res.frames)
    out = {
        "variance": m["variance"],
        "lag1": float(m["lag_corr"][0]),
        "lag3": float(m["lag_corr"][2]),
    }
    if abs(out["variance"] - 1.0) >= var_tol:
        raise AssertionError(f"rollout variance {out['variance']:.4f} not within {var_tol} of 1")
    if abs(out["lag1"] - phi) >= lag1_tol:
        raise AssertionError(
            f"rollout lag-1 correlation {out['lag1']:.4f} not within {lag1_tol} of {phi}"
        )
    return out
