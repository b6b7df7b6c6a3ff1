"""What every backend of the sampling driver shares: the result and per-step record types, the
NFE count, x̂ from a denoiser output, and the non-finite error.

:mod:`diff_core.sampling` (the public driver) and the backend loops (:mod:`diff_core._loop`,
:mod:`diff_core._jax_scan`) all import from here; this module imports neither of them, so the
driver's modules form no import cycle.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from diff_protocol import NonFiniteError, SamplerStep, TimeGrid, to_x_eps

__all__ = ["FINALS", "SampleResult", "StepInfo", "data_estimate", "nfe", "non_finite_error"]

FINALS = ("denoise", "step")


class StepInfo(NamedTuple):
    """Passed to ``callback`` after each step (Python-loop backends)."""

    k: int
    t: float
    t_next: float
    logsnr: float
    z: Any
    x_hat: Any
    nfe: int


class SampleResult(NamedTuple):
    """``x``: the samples; ``nfe``: denoiser evaluations; ``trajectory``: z at every grid point
    (the last entry is the returned x)."""

    x: Any
    nfe: int
    trajectory: list | Any | None


def nfe(
    sampler: SamplerStep, n_steps: int, final: str = "denoise", grid: TimeGrid | None = None
) -> int:
    """Denoiser evaluations of :func:`diff_core.sample` (guidance adds its own, see
    :func:`diff_core.guidance.uncond_evaluations`).

    N for one-evaluation samplers; 2N − 1 for Heun with ``final="denoise"``; with ``final="step"``
    Heun costs 2N, or 2N − 1 when the grid ends at ``logsnr = +inf`` (pass ``grid``).
    """
    if final not in FINALS:
        raise ValueError(f"nfe: final must be 'denoise' or 'step', got {final!r}")
    if sampler.corrector is None:
        return n_steps
    if final == "denoise":
        return 2 * n_steps - 1
    end_inf = grid is not None and math.isinf(float(grid.logsnr[-1]))
    return 2 * n_steps - (1 if end_inf else 0)


def data_estimate(output: Any, z: Any, logsnr: Any, prediction: str) -> Any:
    """x̂ from a denoiser output: the output itself for x-prediction (no wasted ε̂), else via
    :func:`diff_protocol.to_x_eps`. ``logsnr`` is the coefficient-precision level (a host float
    or a 0-d array), so the conversion's α and σ follow the driver's float policy."""
    if tuple(output.shape) != tuple(z.shape):
        raise ValueError(
            f"sample: denoiser output shape {tuple(output.shape)} must equal z shape "
            f"{tuple(z.shape)}"
        )
    if prediction == "x":
        return output if output.dtype == z.dtype else to_x_eps(output, z, logsnr, "x")[0]
    return to_x_eps(output, z, logsnr, prediction)[0]


def non_finite_error(quantity: str, k: int, t: float, logsnr: float) -> NonFiniteError:
    """The error raised when ``quantity`` stops being finite at step ``k``."""
    return NonFiniteError(
        f"sample: {quantity} is not finite at step {k} (t={t:.4g}, logsnr={logsnr:.4g})"
    )
