"""``check_schedule``: the contract every :class:`diff_protocol.Schedule` must satisfy.

Packages run it on the schedules they define or configure (re-exported by
``diff_core.testing``). It checks, in float64 numpy unless stated:

1. ``logsnr`` keeps the shape and dtype of ``t`` and is strictly decreasing on ``n`` points of
   [0, 1], finite inside the interval;
2. ``logsnr_range`` is a pair of Python floats equal to ``(λ(1), λ(0))`` (exactly when infinite);
3. ``t_of(logsnr(t)) = t`` (exactly at infinite ends);
4. ``dlogsnr_dt`` equals the fourth-order central difference
   ``(−λ(t+2h) + 8λ(t+h) − 8λ(t−h) + λ(t−2h))/(12h)`` with ``h = min(1e-5, 1e-3·min(t, 1−t))``,
   away from the knots of piecewise-linear schedules (those exposing ``t_knots``), where it must
   equal the slope of the segment to the right;
5. ``schedule_from_json(schedule_to_json(s))`` gives bitwise the same λ and the JSON text holds no
   ``Infinity``/``NaN``;
6. when JAX is installed (or ``jit=True``): ``jax.jit`` of ``(logsnr, dlogsnr_dt, t_of∘logsnr)``
   on float32 input traces, keeps float32 and agrees with the float64 evaluation.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

import numpy as np

from diff_protocol import schedule_from_json, schedule_to_json

__all__ = ["check_schedule"]


def _fail(schedule: Any, what: str) -> AssertionError:
    return AssertionError(f"check_schedule({schedule!r}): {what}")


def _np(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu()
    return np.asarray(a)


def check_schedule(
    schedule: Any,
    *,
    n: int = 10_000,
    inverse_atol: float = 1e-9,
    derivative_rtol: float = 1e-6,
    jit: bool | None = None,
) -> dict[str, float]:
    """Assert that ``schedule`` satisfies the :class:`diff_protocol.Schedule` contract.

    Args:
        schedule: the schedule to check.
        n: number of evaluation points (monotonicity, inverse, derivative).
        inverse_atol: allowed ``|t_of(logsnr(t)) − t|``.
        derivative_rtol: allowed relative error of ``dlogsnr_dt`` against finite differences.
        jit: run the ``jax.jit`` check; ``None`` runs it when JAX is installed.

    Returns:
        The measured errors: ``inverse_max_abs``, ``derivative_max_rel``, ``knot_slope_max_rel``
        and (when run) ``jit_logsnr_max_rel``.

    Raises:
        AssertionError: naming the schedule and the failed property.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 16:
        raise ValueError(f"check_schedule: n must be an integer >= 16, got {n!r}")
    for attr in ("name", "logsnr", "t_of", "dlogsnr_dt", "logsnr_range", "to_dict"):
        if not hasattr(schedule, attr):
            raise TypeError(f"check_schedule: schedule must have {attr!r}, got {schedule!r}")

    report: dict[str, float] = {}
    t = np.linspace(0.0, 1.0, n)
    lam = schedule.logsnr(t)
    if not isinstance(lam, np.ndarray) or lam.dtype != np.float64 or lam.shape != t.shape:
        raise _fail(schedule, f"logsnr of float64 numpy t must keep shape and dtype, got {lam!r}")
    lam2d = schedule.logsnr(np.reshape(t[:12], (3, 4)))
    if lam2d.shape != (3, 4) or not np.array_equal(np.reshape(lam2d, (-1,)), lam[:12]):
        raise _fail(schedule, "logsnr must act elementwise on any shape")

    # 1-2. monotone, finite inside, range
    steps = np.diff(lam)
    if not np.all(steps < 0):
        k = int(np.argmax(~(steps < 0)))
        raise _fail(
            schedule,
            f"logsnr must be strictly decreasing, got {lam[k]!r} at t={t[k]!r} then "
            f"{lam[k + 1]!r} at t={t[k + 1]!r}",
        )
    if not np.all(np.isfinite(lam[1:-1])):
        raise _fail(schedule, "logsnr must be finite for 0 < t < 1")
    rng = schedule.logsnr_range
    if not isinstance(rng, tuple) or len(rng) != 2 or not all(isinstance(v, float) for v in rng):
        raise _fail(schedule, f"logsnr_range must be a pair of Python floats, got {rng!r}")
    for value, end, label in ((lam[-1], rng[0], "λ(1)"), (lam[0], rng[1], "λ(0)")):
        ok = (
            value == end
            if math.isinf(end) or math.isinf(value)
            else (abs(value - end) <= 1e-9 * max(1.0, abs(end)))
        )
        if not ok:
            raise _fail(schedule, f"logsnr_range gives {label} = {end!r}, logsnr gives {value!r}")

    # 3. inverse
    t_back = schedule.t_of(lam)
    if not isinstance(t_back, np.ndarray) or t_back.dtype != np.float64:
        raise _fail(schedule, f"t_of must keep float64 numpy input, got {t_back!r}")
    err = np.abs(t_back - t)
    report["inverse_max_abs"] = float(err.max())
    if not err.max() <= inverse_atol:
        k = int(np.argmax(err))
        raise _fail(
            schedule,
            f"t_of(logsnr(t)) must equal t within {inverse_atol}, got {t_back[k]!r} at t={t[k]!r}",
        )
    for end_t, end_lam in ((0.0, lam[0]), (1.0, lam[-1])):
        if math.isinf(end_lam) and float(schedule.t_of(np.asarray(end_lam))) != end_t:
            raise _fail(schedule, f"t_of({end_lam}) must be exactly {end_t}")

    # 4. derivative vs fourth-order central differences
    tc = (np.arange(n, dtype=np.float64) + 0.5) / n
    h = np.minimum(1e-5, 1e-3 * np.minimum(tc, 1.0 - tc))
    knots = getattr(schedule, "t_knots", None)
    if knots is not None:
        knots = np.asarray(knots, dtype=np.float64)
        pos = np.clip(np.searchsorted(knots, tc), 1, knots.size - 1)
        dist = np.minimum(np.abs(tc - knots[pos - 1]), np.abs(knots[pos] - tc))
        keep = dist > 2.5 * h
        tc, h = tc[keep], h[keep]
    fd = (
        -schedule.logsnr(tc + 2 * h)
        + 8 * schedule.logsnr(tc + h)
        - 8 * schedule.logsnr(tc - h)
        + schedule.logsnr(tc - 2 * h)
    ) / (12 * h)
    d = schedule.dlogsnr_dt(tc)
    if not np.all(d < 0):
        raise _fail(schedule, "dlogsnr_dt must be negative inside (0, 1)")
    rel = np.abs(d - fd) / np.abs(fd)
    report["derivative_max_rel"] = float(rel.max())
    if not rel.max() <= derivative_rtol:
        k = int(np.argmax(rel))
        raise _fail(
            schedule,
            f"dlogsnr_dt must match central differences within rel {derivative_rtol}, got "
            f"{d[k]!r} vs {fd[k]!r} at t={tc[k]!r}",
        )
    if knots is not None:
        inner = knots[:-1]
        seg = np.diff(knots)
        hk = 1e-3 * seg
        slope = (schedule.logsnr(inner + hk) - schedule.logsnr(inner)) / hk
        dk = schedule.dlogsnr_dt(inner)
        rel_k = np.abs(dk - slope) / np.abs(slope)
        report["knot_slope_max_rel"] = float(rel_k.max())
        if not rel_k.max() <= 1e-6:
            k = int(np.argmax(rel_k))
            raise _fail(
                schedule,
                f"dlogsnr_dt at knot t={inner[k]!r} must be the right segment's slope "
                f"{slope[k]!r}, got {dk[k]!r}",
            )

    # 5. JSON round trip
    text = schedule_to_json(schedule)
    if "Infinity" in text or "NaN" in text:
        raise _fail(schedule, f"JSON must not contain Infinity/NaN, got {text}")
    restored = schedule_from_json(text)
    if not np.array_equal(restored.logsnr(t), lam):
        raise _fail(schedule, "the schedule restored from JSON must give bitwise the same logsnr")

    # 6. jit
    if jit is None:
        jit = importlib.util.find_spec("jax") is not None
    if jit:
        report["jit_logsnr_max_rel"] = _check_jit(schedule)
    return report


def _check_jit(schedule: Any) -> float:
    import jax
    import jax.numpy as jnp

    t32 = np.linspace(0.0, 1.0, 257, dtype=np.float32)

    @jax.jit
    def evaluate(t: Any) -> tuple[Any, Any, Any]:
        lam = schedule.logsnr(t)
        return lam, schedule.dlogsnr_dt(t), schedule.t_of(lam)

    lam, dlam, t_back = evaluate(jnp.asarray(t32))
    if not (lam.dtype == dlam.dtype == t_back.dtype == jnp.float32):
        raise _fail(schedule, "under jax.jit float32 input must give float32 outputs")
    t64 = t32.astype(np.float64)
    ref, dref = schedule.logsnr(t64), schedule.dlogsnr_dt(t64)
    lam, dlam, t_back = _np(lam).astype(np.float64), _np(dlam), _np(t_back)
    fin = np.isfinite(ref)
    if not np.array_equal(np.isfinite(lam), fin) or not np.array_equal(lam[~fin], ref[~fin]):
        raise _fail(schedule, "under jax.jit the infinite ends must be exact")
    rel = np.abs(lam[fin] - ref[fin]) / (1.0 + np.abs(ref[fin]))
    inner = slice(1, -1)
    drel = np.abs(dlam[inner] - dref[inner]) / np.abs(dref[inner])
    if not rel.max() <= 1e-4 or not drel.max() <= 1e-3:
        raise _fail(
            schedule,
            f"jax.jit float32 must agree with float64: logsnr rel {rel.max():.3g}, "
            f"dlogsnr_dt rel {drel.max():.3g}",
        )
    if not np.max(np.abs(t_back - t32)) <= 1e-4:
        raise _fail(schedule, f"jax.jit t_of(logsnr(t)) off by {np.max(np.abs(t_back - t32)):.3g}")
    return float(rel.max())
