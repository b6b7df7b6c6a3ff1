"""Sampling a rolling diffusion model: the sliding-window rollout and the standard baseline.

Rolling (Ruhe et al., arXiv 2402.09470, §3 and App. B as this project reads them):

    z ← noise(0)                                     # W frames at local time 1
    for j in 0..I−1:   x̂ ← D(z, λ_init[j], ctx);  z ← step(z, x̂, init[j] → init[j+1], noise(1+j))
    for m in 1..n:
        y_m ← z[:, 0]                                # local time 0: clean
        ctx ← last K of (ctx ++ y_m)                 # emitted frames become context
        if m = n: stop
        z ← z[:, 1:] ++ noise(d_m)[:, −1:]           # frame k+1 → k; a fresh frame at local time 1
        for j in 0..S−1:  z ← step(z, D(z, λ_roll[j], ctx), roll[j] → roll[j+1], noise(d_m+1+j))

with ``I = init_steps`` (default ``S·W``), ``d_m = 1 + I + (m − 1)(S + 1)``: ``I + S(n − 1)``
network calls for n frames, S per frame in steady state, and every frame sees ``W·S`` updates
from noise to data. The step is a :class:`diff_protocol.SamplerStep` applied per frame
(:func:`rolling_window`, registered under ``diff.samplers``): diff-core's ``ddim``/``ddpm`` with
per-frame logsnr ``(B, W)`` (the core's prefix broadcasting), frames reaching local time 0 set to
x̂ and frames whose level does not change (clipped at 1 during the init pass) left unchanged.

Standard (the baseline at equal network calls): blocks of W frames, each sampled from noise with
N steps of the ordinary shared-t grid (``diff_core.grids.uniform_t``) by diff-core's one driver
(:func:`diff_core.sample`), the last K generated (or given) frames as context; N = ``S·W`` gives S
calls per frame (:func:`equal_cost_steps`).

Why the rolling rollout has its own loop: diff-core's driver (:func:`diff_core.sample`) runs one
grid of steps over a fixed state, and the standard baseline uses it unchanged. The rolling
rollout is a sequence-level loop around that per-step update: between groups of S steps it
emits frame 0, appends it to the context and shifts a fresh noise frame in, so the state the
next step sees is not the state the last step returned. Every update inside is diff-core's
``SamplerStep`` (``ddim``/``ddpm`` via :func:`rolling_window`, which also runs in diff-core's
driver for a single window, see integration-tests/test_integration_rolling.py); only the shift
between windows is written here, as one ``lax.scan`` over shifts.

Both rollouts are pure in the noise source: the same noise gives bitwise the same frames, and the
first n frames of a longer rollout equal an n-frame rollout.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diff_protocol import NonFiniteError, SamplerStep, to_x_eps

from .local_time import REGIMES, LocalTimeRange, local_times

__all__ = [
    "LocalTimeTable",
    "RolloutConfig",
    "RolloutResult",
    "equal_cost_steps",
    "local_time_table",
    "rolling_nfe",
    "rolling_window",
    "rollout",
    "standard_nfe",
    "standard_rollout",
    "window_step",
]


# --------------------------------------------------------------------------------------------------
# Tables of local times


class LocalTimeTable(NamedTuple):
    """Host float64 tables ``t`` and ``logsnr`` of shape ``(n + 1, W)``; row j is global time
    ``g_j = 1 − j/n``. Steps read rows j and j+1 and never re-derive times."""

    t: np.ndarray
    logsnr: np.ndarray

    @property
    def n_steps(self) -> int:
        return int(self.t.shape[0]) - 1


def local_time_table(
    schedule: Any,
    window: int,
    n_steps: int,
    regime: str = "rolling",
    range: LocalTimeRange | None = None,  # noqa: A002 (the spec's name)
) -> LocalTimeTable:
    """The ``(n + 1, W)`` table of local times and their logsnr for ``regime``.

    Example:
      >>> from diff_core import CosineSchedule
      >>> tab = local_time_table(CosineSchedule(), 4, 2)
      >>> tab.t.tolist()
      [[0.25, 0.5, 0.75, 1.0], [0.125, 0.375, 0.625, 0.875], [0.0, 0.25, 0.5, 0.75]]
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"local_time_table: n_steps must be an int >= 1, got {n_steps!r}")
    if regime not in REGIMES:
        raise ValueError(f"local_time_table: regime must be one of {REGIMES}, got {regime!r}")
    g = 1.0 - np.arange(n_steps + 1, dtype=np.float64) / n_steps
    g[-1] = 0.0
    t = np.asarray(local_times(g, window, regime), np.float64)
    tau = np.asarray(t if range is None else range(t), np.float64)
    logsnr = np.asarray(schedule.logsnr(tau), np.float64)
    return LocalTimeTable(t, logsnr)


# --------------------------------------------------------------------------------------------------
# The per-frame window step (a SamplerStep)


def _base_step(sampler: str, eta: float, gamma: float) -> SamplerStep:
    from diff_core.samplers import ddim, ddpm

    if sampler == "ddim":
        return ddim(eta)
    if sampler == "ddpm":
        return ddpm(gamma)
    raise ValueError(f"rolling_window: sampler must be 'ddim' or 'ddpm', got {sampler!r}")


def rolling_window(sampler: str = "ddim", eta: float = 0.0, gamma: float = 0.0) -> SamplerStep:
    """The rolling window step: diff-core's ``ddim(eta)`` or ``ddpm(gamma)`` applied per frame.

    ``step(z_t, x_hat, logsnr_t, logsnr_s, noise, state)`` takes per-frame levels (any prefix of
    ``z_t.shape``, e.g. ``(B, W)``); per element:

    * ``logsnr_s = +inf`` (the frame reaches local time 0): ``z_s = x̂`` (diff-core's
      ``final="denoise"`` per frame);
    * ``logsnr_s = logsnr_t`` (a frame clipped at local time 1 during the init pass): ``z_s = z_t``
      exactly, no noise added;
    * otherwise the base step.

    Example:
      >>> step = rolling_window("ddpm")
      >>> step.name, step.stochastic
      ('rolling_window', True)
    """
    if sampler not in ("ddim", "ddpm"):
        raise ValueError(f"rolling_window: sampler must be 'ddim' or 'ddpm', got {sampler!r}")
    base = _base_step(sampler, eta, gamma)
    return _rolling_window(sampler, float(eta), float(gamma), base)


@functools.cache
def _rolling_window(sampler: str, eta: float, gamma: float, base: SamplerStep) -> SamplerStep:
    def step(z_t, x_hat, logsnr_t, logsnr_s, noise, state=()):
        xp = jnp if isinstance(z_t, jax.Array) else np
        lt = xp.asarray(logsnr_t)
        ls = xp.asarray(logsnr_s)
        lt, ls = xp.broadcast_arrays(lt, ls)
        clean = xp.isinf(ls) & (ls > 0)
        same = ls == lt
        ls_safe = xp.where(clean | same, lt + 1.0, ls)
        z_s, state = base.step(z_t, x_hat, lt, ls_safe, noise, state)
        pad = (1,) * (z_t.ndim - lt.ndim)
        clean = xp.reshape(clean, clean.shape + pad)
        same = xp.reshape(same, same.shape + pad)
        z_s = xp.where(clean, x_hat, xp.where(same, z_t, z_s))
        return z_s.astype(z_t.dtype), state

    return SamplerStep(
        name="rolling_window",
        init=base.init,
        step=step,
        stochastic=base.stochastic,
        requires_finite_start=False,
        order=1,
    )


def _as_window_step(sampler: SamplerStep) -> SamplerStep:
    if not isinstance(sampler, SamplerStep):
        raise TypeError(
            "window_step: sampler must be a diff_protocol.SamplerStep, "
            f"got {type(sampler).__name__}"
        )
    if sampler.name == "rolling_window":
        return sampler
    if sampler.name not in ("ddim", "ddpm"):
        raise ValueError(
            f"window_step: sampler must be ddim, ddpm or rolling_window, got {sampler.name!r}"
        )
    return _rolling_window(sampler.name, 0.0, 0.0, sampler)


class TableRow(NamedTuple):
    """One row of a :class:`LocalTimeTable`: local times ``t (W,)`` and ``logsnr (W,)``."""

    t: Any
    logsnr: Any


def _target_levels(row_s: TableRow) -> np.ndarray:
    """Target logsnr with +inf where the local time is exactly 0 (emitted clean)."""
    return np.where(np.asarray(row_s.t) == 0.0, np.inf, np.asarray(row_s.logsnr, np.float64))


def window_step(
    sampler: SamplerStep,
    z: Any,
    x_hat: Any,
    row_t: TableRow,
    row_s: TableRow,
    noise: Any = None,
    state: Any = (),
) -> tuple[Any, Any]:
    """One step of the whole window from table row ``row_t`` to ``row_s`` (each ``TableRow``).

    Frames whose target local time is exactly 0 are set to ``x_hat``; frames with equal local
    times are returned unchanged; the others take ``sampler``'s step (``ddim``/``ddpm``) with their
    own logsnr.
    """
    step = _as_window_step(sampler)
    b, w = z.shape[:2]
    lt = np.broadcast_to(np.asarray(row_t.logsnr, np.float64), (b, w))
    ls = np.broadcast_to(_target_levels(row_s), (b, w))
    xp = jnp if isinstance(z, jax.Array) else np
    return step.step(z, x_hat, xp.asarray(lt, z.dtype), xp.asarray(ls, z.dtype), noise, state)


# --------------------------------------------------------------------------------------------------
# Rollouts


@dataclass(frozen=True)
class RolloutConfig:
    """How to roll out (defaults are ours; the paper's step counts are not confirmed).

    Attributes:
      window: W, frames in the window. context: K, clean frames before it.
      steps_per_shift: S, network calls per shift (per generated frame in steady state).
      init_steps: I, steps of the init pass (default ``S·W``: the first frame gets as many
        updates as every later one).
      sampler: ``"ddim"`` (η = ``eta``, default 0) or ``"ddpm"`` (ancestral, γ = ``gamma``).
      clean_logsnr: the logsnr context frames are shown at (the network wrapper's business; kept
        for the record).
      time_range: optional :class:`LocalTimeRange` rescale.
    """

    window: int
    context: int
    steps_per_shift: int = 4
    init_steps: int | None = None
    sampler: str = "ddim"
    gamma: float = 0.0
    eta: float = 0.0
    clean_logsnr: float = 15.0
    time_range: LocalTimeRange = field(default_factory=LocalTimeRange)

    def __post_init__(self) -> None:
        for name, lo in (("window", 1), ("context", 0), ("steps_per_shift", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"RolloutConfig: {name} must be an int >= {lo}, got {v!r}")
        if self.init_steps is not None and (
            isinstance(self.init_steps, bool)
            or not isinstance(self.init_steps, (int, np.integer))
            or self.init_steps < 1
        ):
            raise ValueError(
                f"RolloutConfig: init_steps must be None or an int >= 1, got {self.init_steps!r}"
            )
        if self.sampler not in ("ddim", "ddpm"):
            raise ValueError(
                f"RolloutConfig: sampler must be 'ddim' or 'ddpm', got {self.sampler!r}"
            )
        _base_step(self.sampler, self.eta, self.gamma)  # validates eta / gamma

    @property
    def n_init(self) -> int:
        return (
            int(self.init_steps)
            if self.init_steps is not None
            else self.steps_per_shift * self.window
        )

    def step(self) -> SamplerStep:
        """The :func:`rolling_window` step of this configuration."""
        return rolling_window(self.sampler, self.eta, self.gamma)

    def base_step(self) -> SamplerStep:
        """The diff-core step (``ddim``/``ddpm``) the standard baseline uses."""
        return _base_step(self.sampler, self.eta, self.gamma)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "context": self.context,
            "steps_per_shift": self.steps_per_shift,
            "init_steps": self.init_steps,
            "sampler": self.sampler,
            "gamma": self.gamma,
            "eta": self.eta,
            "clean_logsnr": self.clean_logsnr,
            "time_range": [self.time_range.lo, self.time_range.hi],
        }


class RolloutResult(NamedTuple):
    """``frames (B, n, h, w, C)``, the network calls ``nfe`` and, when asked, ``windows
    (B, n, W, h, w, C)``: the window state after the init pass and after each shift."""

    frames: Any
    nfe: int
    windows: Any = None


def rolling_nfe(n_frames: int, steps_per_shift: int, init_steps: int) -> int:
    """Network calls of a rolling rollout: ``I + S(n − 1)``."""
    return int(init_steps) + int(steps_per_shift) * (int(n_frames) - 1)


def standard_nfe(n_frames: int, window: int, n_steps: int) -> int:
    """Network calls of the standard block rollout: ``N·⌈n/W⌉``."""
    return int(n_steps) * math.ceil(int(n_frames) / int(window))


def equal_cost_steps(window: int, steps_per_shift: int) -> int:
    """N steps per block of W frames with the same calls per frame as S steps per shift:
    ``W·S``."""
    return int(window) * int(steps_per_shift)


def _is_array(a: Any) -> bool:
    return isinstance(a, (jax.Array, np.ndarray, np.generic))


def _partition(obj: Any) -> tuple[list[Any], Any]:
    """Array leaves (traced) and a hashable static rest (tree structure, other leaves)."""
    leaves, treedef = jax.tree_util.tree_flatten(obj)
    arrays = [leaf if _is_array(leaf) else None for leaf in leaves]
    static = tuple((i, leaf) for i, leaf in enumerate(leaves) if not _is_array(leaf))
    return arrays, (treedef, static)


def _combine(arrays: list[Any], static: Any) -> Any:
    treedef, rest = static
    leaves = list(arrays)
    for i, leaf in rest:
        leaves[i] = leaf
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _x_hat(denoiser: Any, z: Any, lam: Any, ctx: Any) -> Any:
    out = denoiser(z, lam, {"context": ctx})
    if denoiser.prediction == "x":
        return out
    return to_x_eps(out, z, lam, denoiser.prediction)[0]


def _update_bad(bad: Any, z: Any, shift: Any, j: Any) -> Any:
    ok = jnp.all(jnp.isfinite(z))
    first = (bad[0] < 0) & ~ok
    return jnp.where(
        first, jnp.stack([jnp.asarray(shift, jnp.int32), jnp.asarray(j, jnp.int32)]), bad
    )


@functools.partial(jax.jit, static_argnames=("dstatic", "nstatic", "step", "n_init", "windows"))
def _init_pass(darr, dstatic, narr, nstatic, ctx, lt, ls, step, n_init, windows):
    denoiser = _combine(darr, dstatic)
    noise = _combine(narr, nstatic)
    b, w = ctx.shape[0], lt.shape[1]
    z0 = noise(0)

    def body(carry, j):
        z, state, bad = carry
        lam_t = jnp.broadcast_to(lt[j], (b, w))
        lam_s = jnp.broadcast_to(ls[j], (b, w))
        x_hat = _x_hat(denoiser, z, lam_t, ctx)
        eps = noise(1 + j) if step.stochastic else None
        z, state = step.step(z, x_hat, lam_t, lam_s, eps, state)
        return (z, state, _update_bad(bad, z, 0, j)), None

    bad0 = jnp.array([-1, -1], jnp.int32)
    (z, state, bad), _ = jax.lax.scan(body, (z0, step.init(z0), bad0), jnp.arange(n_init))
    return z, state, bad


@functools.partial(
    jax.jit, static_argnames=("dstatic", "nstatic", "step", "n_init", "n_shifts", "windows")
)
def _shift_pass(
    darr, dstatic, narr, nstatic, z, state, ctx, bad, m0, lt, ls, step, n_init, n_shifts, windows
):
    denoiser = _combine(darr, dstatic)
    noise = _combine(narr, nstatic)
    b, w = z.shape[:2]
    s = lt.shape[0]

    def shift(carry, m):
        z, state, ctx, bad = carry
        y = z[:, 0]
        if ctx.shape[1]:
            ctx = jnp.concatenate([ctx[:, 1:], y[:, None]], axis=1)
        d = 1 + n_init + (m - 1) * (s + 1)
        z = jnp.concatenate([z[:, 1:], noise(d)[:, -1:]], axis=1)

        def inner(c, j):
            z, state, bad = c
            lam_t = jnp.broadcast_to(lt[j], (b, w))
            lam_s = jnp.broadcast_to(ls[j], (b, w))
            x_hat = _x_hat(denoiser, z, lam_t, ctx)
            eps = noise(d + 1 + j) if step.stochastic else None
            z, state = step.step(z, x_hat, lam_t, lam_s, eps, state)
            return (z, state, _update_bad(bad, z, m, j)), None

        (z, state, bad), _ = jax.lax.scan(inner, (z, state, bad), jnp.arange(s))
        out = (y, z) if windows else (y,)
        return (z, state, ctx, bad), out

    ms = m0 + jnp.arange(n_shifts)
    (z, state, ctx, bad), outs = jax.lax.scan(shift, (z, state, ctx, bad), ms)
    return z, state, ctx, bad, outs


def _check_context(func: str, context: Any, k: int) -> Any:
    if not hasattr(context, "shape") or len(context.shape) != 5:
        raise ValueError(
            f"{func}: context must be an array (B, K, h, w, C), got shape "
            f"{tuple(getattr(context, 'shape', ()))}"
        )
    if context.shape[1] != k:
        raise ValueError(f"{func}: context must have {k} frames (axis 1), got {context.shape[1]}")
    return jnp.asarray(context)


def _check_noise(func: str, noise: Any, shape: tuple[int, ...]) -> None:
    if not callable(noise):
        raise TypeError(
            f"{func}: noise must be a noise source noise(i) -> array, got {type(noise).__name__}"
        )
    got = tuple(getattr(noise, "shape", None) or jax.eval_shape(lambda: noise(0)).shape)
    if got != shape:
        raise ValueError(f"{func}: noise(0) must have the window's shape {shape}, got {got}")


def _check_frames(func: str, n_frames: Any) -> int:
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ValueError(f"{func}: n_frames must be an int >= 1, got {n_frames!r}")
    return int(n_frames)


def _rows(table: LocalTimeTable) -> tuple[jax.Array, jax.Array]:
    lt = table.logsnr[:-1]
    ls = np.where(table.t[1:] == 0.0, np.inf, table.logsnr[1:])
    return jnp.asarray(lt, jnp.float32), jnp.asarray(ls, jnp.float32)


def _raise_nonfinite(bad: Any, init_t: LocalTimeTable, roll_t: LocalTimeTable) -> None:
    shift, j = (int(v) for v in np.asarray(bad))
    if shift < 0:
        return
    row = (init_t if shift == 0 else roll_t).t[j + 1]
    raise NonFiniteError(
        f"rollout: state is not finite at shift {shift}, step {j} "
        f"(frame local times {row.min():.2g}..{row.max():.2g})"
    )


def rollout(
    denoiser: Any,
    context: Any,
    n_frames: int,
    config: RolloutConfig,
    schedule: Any,
    noise: Any,
    *,
    return_windows: bool = False,
    progress: bool = False,
    check_finite: bool = True,
) -> RolloutResult:
    """Generate ``n_frames`` frames after ``context`` with the rolling window sampler.

    Args:
      denoiser: a window denoiser ``D(z (B, W, h, w, C), λ (B, W), {"context": (B, K, h, w, C)})``
        with ``prediction`` (:class:`~diff_rolling.models.VideoDenoiser`, the exact
        ``GaussianVideo.exact_denoiser()``, ...). Its array leaves are traced (a new weight or
        model of the same structure does not recompile).
      context: ``(B, K, h, w, C)`` clean frames (K = ``config.context``).
      n_frames: frames to emit.
      config: :class:`RolloutConfig`.
      schedule: the diff-core schedule the model was trained with.
      noise: a window-shaped noise source (``diff_protocol.jax_noise(key, (B, W, h, w, C))``).
      return_windows: also return the window state after the init pass and after every shift.
      progress: a tqdm bar advancing per emitted frame (the shift scan runs in chunks).
      check_finite: raise :class:`diff_protocol.NonFiniteError` naming the shift and step where
        the state stopped being finite.

    Returns:
      :class:`RolloutResult` with ``nfe = I + S(n − 1)``.
    """
    if not isinstance(config, RolloutConfig):
        raise TypeError(f"rollout: config must be a RolloutConfig, got {type(config).__name__}")
    n = _check_frames("rollout", n_frames)
    if not hasattr(denoiser, "prediction"):
        raise TypeError(
            "rollout: denoiser must have a 'prediction' attribute (a diff_protocol.Denoiser)"
        )
    ctx = _check_context("rollout", context, config.context)
    w, s, n_init = config.window, config.steps_per_shift, config.n_init
    shape = (ctx.shape[0], w) + tuple(ctx.shape[2:])
    _check_noise("rollout", noise, shape)
    init_t = local_time_table(schedule, w, n_init, "init", config.time_range)
    roll_t = local_time_table(schedule, w, s, "rolling", config.time_range)
    i_lt, i_ls = _rows(init_t)
    r_lt, r_ls = _rows(roll_t)
    step = config.step()
    darr, dstatic = _partition(denoiser)
    narr, nstatic = _partition(noise)
    z, state, bad = _init_pass(
        darr, dstatic, narr, nstatic, ctx, i_lt, i_ls, step, n_init, return_windows
    )
    emitted, wins = [], [z] if return_windows else []
    n_shifts = n - 1
    chunk = max(1, math.ceil(n_shifts / 20)) if progress else max(n_shifts, 1)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="rollout", unit="frame", dynamic_ncols=True)
    m = 1
    try:
        while m <= n_shifts:
            c = min(chunk, n_shifts - m + 1)
            z, state, ctx, bad, outs = _shift_pass(
                darr,
                dstatic,
                narr,
                nstatic,
                z,
                state,
                ctx,
                bad,
                jnp.int32(m),
                r_lt,
                r_ls,
                step,
                n_init,
                c,
                return_windows,
            )
            emitted.append(jnp.moveaxis(outs[0], 0, 1))
            if return_windows:
                wins.append(outs[1])
            if check_finite:
                _raise_nonfinite(jax.device_get(bad), init_t, roll_t)
            m += c
            if bar is not None:
                bar.update(c)
        if check_finite:
            _raise_nonfinite(jax.device_get(bad), init_t, roll_t)
        emitted.append(z[:, :1])
        if bar is not None:
            bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    frames = jnp.concatenate(emitted, axis=1)
    windows = None
    if return_windows:
        first = wins[0][None]
        rest = [jnp.asarray(x) for x in wins[1:]]
        windows = jnp.moveaxis(jnp.concatenate([first] + rest, axis=0), 0, 1)
    return RolloutResult(frames, rolling_nfe(n, s, n_init), windows)


class OffsetNoise:
    """``noise(offset + i)``: block b of the standard rollout reads its own draws."""

    def __init__(self, base: Any, offset: int) -> None:
        self.base, self.offset = base, int(offset)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.base.shape)

    def __call__(self, i: Any) -> Any:
        return self.base(i + self.offset)


jax.tree_util.register_pytree_node(
    OffsetNoise,
    lambda n: ((n.base,), n.offset),
    lambda offset, children: OffsetNoise(children[0], offset),
)


def standard_rollout(
    denoiser: Any,
    context: Any,
    n_frames: int,
    config: RolloutConfig,
    schedule: Any,
    noise: Any,
    *,
    n_steps: int | None = None,
    progress: bool = False,
) -> RolloutResult:
    """The standard (whole-window) baseline: block-autoregressive sampling.

    Block b (``⌈n/W⌉`` blocks) is ``diff_core.sample(denoiser, step, uniform_t(schedule, N),
    noise_b, cond={"context": last K frames})`` with ``noise_b(i) = noise(b(N + 1) + i)`` and
    ``N = n_steps`` (default :func:`equal_cost_steps` ``(W, S)``: S calls per frame, as rolling).
    The denoiser sees one logsnr per example (every frame at the same level). NFE = ``N·⌈n/W⌉``.
    """
    from diff_core import grids
    from diff_core import sample as core_sample

    if not isinstance(config, RolloutConfig):
        raise TypeError(
            f"standard_rollout: config must be a RolloutConfig, got {type(config).__name__}"
        )
    n = _check_frames("standard_rollout", n_frames)
    ctx = _check_context("standard_rollout", context, config.context)
    w, k = config.window, config.context
    big_n = equal_cost_steps(w, config.steps_per_shift) if n_steps is None else int(n_steps)
    if big_n < 1:
        raise ValueError(f"standard_rollout: n_steps must be >= 1, got {big_n}")
    shape = (ctx.shape[0], w) + tuple(ctx.shape[2:])
    _check_noise("standard_rollout", noise, shape)
    grid = grids.uniform_t(schedule, big_n)
    blocks = math.ceil(n / w)
    out = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=blocks, desc="standard", unit="block", dynamic_ncols=True)
    for b in range(blocks):
        x = core_sample(
            denoiser,
            config.base_step(),
            grid,
            OffsetNoise(noise, b * (big_n + 1)),
            cond={"context": ctx},
        )
        out.append(x)
        if k:
            ctx = jnp.concatenate([ctx, x], axis=1)[:, -k:]
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    frames = jnp.concatenate(out, axis=1)[:, :n]
    return RolloutResult(frames, standard_nfe(n, w, big_n))
