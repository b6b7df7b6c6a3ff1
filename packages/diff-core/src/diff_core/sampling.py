"""The sampling driver: one algorithm, run by the backend's own loop.

``sample(denoiser, sampler, grid, noise)`` walks the time grid from ``t[0]`` to 0:

1. ``z = z_init`` or ``noise(0)`` (the VP prior N(0, I)); ``state = sampler.init(z)``.
2. For k = 0..N−1: ``x̂ = to_x_eps(denoiser(z, λ_k, cond), z, λ_k, prediction)[0]`` (clipped to
   ``x_clip``); at k = N−1 with ``final="denoise"`` return x̂; else
   ``z_pred, state = step(z, x̂, λ_k, λ_{k+1}, noise(k+1) if stochastic else None, state)`` and, for
   predictor-corrector samplers with finite ``λ_{k+1}``, ``z, state = corrector(...)`` with x̂
   evaluated at ``(z_pred, λ_{k+1})``.

numpy, array-api-strict and torch run a Python loop (:mod:`diff_core._loop`); JAX runs steps in one
``lax.scan`` under ``jax.jit`` (:mod:`diff_core._jax_scan`). Given the same noise values
(``table_noise``) the backends agree up to floating-point rounding.

Float policy (the same on every backend; the driver is the only place it lives):

- **State**: z keeps the dtype of ``z_init``, or of ``noise(0)`` when ``z_init`` is not given.
  A bfloat16/float16 state is worked in float32 inside each step and conversion and cast back,
  so the carried state stays in its own dtype.
- **Denoiser input**: the denoiser sees logsnr as a (B,) vector (0-d for a 0-d state) in the
  working dtype: the state's dtype, float32 for bfloat16/float16 states.
- **Coefficients**: the step coefficients (α, σ, c, ratios) and the conversion of the denoiser's
  output to x̂ are computed from logsnr in the highest precision the backend offers: host Python
  floats (float64) in the Python loop; under JAX float64 when ``jax_enable_x64`` is on, else
  float32. They are cast to the working dtype where they meet the state.

``x_clip`` (a positive float or None) is the drivers' one clip argument: x̂ is clipped to
``[−x_clip, x_clip]`` after the conversion, before the step (the samplers' own ``clip_x`` is for
direct step calls).

Under JAX the denoiser, the noise source and ``cond`` are split into traced array leaves and a
hashable static rest (:mod:`diff_core._jax_partition`): a pytree denoiser (a Flax NNX module, a
``jax.tree_util.register_dataclass`` class, a :class:`diff_core.guidance.Guided` around one) has
traced weights, so weights updated in place, a swapped model of the same structure, a new key or a
new condition reach the next call without recompiling. A plain function or unregistered object is
static as a whole (as in diff-core 0.1): arrays it closes over are compile-time constants.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import array_api_compat

from diff_protocol import SamplerStep, TimeGrid, check_denoiser, check_grid
from diff_protocol.checks import check_array, check_bool, check_callable, check_real
from diff_protocol.checks import check_finite as check_finite_values

from ._driver_common import FINALS, SampleResult, StepInfo, nfe

__all__ = ["SampleResult", "StepInfo", "nfe", "sample"]


class _ShapeProbe(NamedTuple):
    backend: str
    shape: tuple[int, ...]


def _noise_probe(noise: Any) -> tuple[str, tuple[int, ...], Any]:
    """``(backend, shape, draw 0 or None)``; JAX pytree sources are not drawn eagerly (the jitted
    loop draws them), which saves a dispatch per call."""
    from diff_protocol.noise import JaxNoise, TableNoise

    if isinstance(noise, JaxNoise):
        return "jax", tuple(noise.shape), None
    if isinstance(noise, TableNoise) and _backend_of(noise.table) == "jax":
        return "jax", tuple(noise.shape), None
    first = noise(0)
    return _backend_of(first), tuple(first.shape), first


def _type_name(a: Any) -> str:
    t = type(a)
    return f"{t.__module__.split('.')[0]}.{t.__name__}"


def _backend_of(a: Any) -> str:
    if array_api_compat.is_jax_array(a):
        return "jax"
    if array_api_compat.is_torch_array(a):
        return "torch"
    if array_api_compat.is_numpy_array(a):
        return "numpy"
    return "array_api"


def sample(
    denoiser: Any,
    sampler: SamplerStep,
    grid: TimeGrid,
    noise: Callable[[Any], Any] | None,
    *,
    cond: Any = None,
    z_init: Any = None,
    final: str = "denoise",
    x_clip: float | None = None,
    callback: Callable[[StepInfo], None] | None = None,
    progress: bool = False,
    return_trajectory: bool = False,
    check_finite: bool = True,
    grad: bool = False,
) -> Any:
    """Sample from ``denoiser`` with ``sampler`` along ``grid``.

    Args:
      denoiser: a :class:`diff_protocol.Denoiser` (``prediction`` in eps, v, x). Under JAX its
        array leaves (:func:`jax.tree_util.tree_flatten`) are traced and the rest (tree structure,
        non-array leaves) is a static argument of the jitted loop that must be hashable; a plain
        function or an unregistered object is entirely static.
      sampler: a :class:`diff_protocol.SamplerStep` (e.g. ``diff_core.samplers.ddim()``).
      grid: :class:`diff_protocol.TimeGrid`, strictly decreasing t ending at exactly 0.
      noise: noise source ``noise(i)`` (:mod:`diff_protocol.noise`); draw 0 is the initial state,
        step k uses draw k + 1. Under JAX a pytree source (``jax_noise``, ``table_noise``, a
        registered dataclass holding a key) is traced like the denoiser. May be None when
        ``z_init`` is given and the sampler is deterministic.
      cond: conditioning passed to the denoiser (array, dict of arrays, any pytree). Under JAX
        its array leaves are traced, its other leaves static.
      z_init: initial state; defaults to ``noise(0)``.
      final: ``"denoise"`` returns x̂ at the last grid point before 0; ``"step"`` returns the state
        after the last step (at t = 0).
      x_clip: clip x̂ to [−x_clip, x_clip] before every step (the drivers' one clip argument).
      callback: ``callback(StepInfo)`` per step (not under JAX; use ``return_trajectory``).
      progress: tqdm progress bar (Python loops).
      return_trajectory: return :class:`SampleResult` with the state at every grid point.
      check_finite: raise :class:`diff_protocol.NonFiniteError` naming the step, t and logsnr when
        the denoiser output or the state stops being finite.
      grad: torch only: keep the autograd graph (default runs under ``torch.no_grad()``).

    Returns:
      The samples, or a :class:`SampleResult` when ``return_trajectory``.
    """
    prediction = check_denoiser("sample", denoiser)
    if not isinstance(sampler, SamplerStep):
        raise TypeError(
            "sample: sampler must be a diff_protocol.SamplerStep (e.g. diff_core.samplers.ddim()), "
            f"got {type(sampler).__name__}"
        )
    if not isinstance(final, str) or final not in FINALS:
        raise ValueError(f"sample: final must be 'denoise' or 'step', got {final!r}")
    if x_clip is not None:
        x_clip = check_real(
            "sample", "x_clip", x_clip, lo=0.0, lo_open=True, expected="None or a positive number"
        )
    check_callable("sample", "callback", callback, allow_none=True)
    for arg, flag in (
        ("progress", progress),
        ("return_trajectory", return_trajectory),
        ("check_finite", check_finite),
        ("grad", grad),
    ):
        check_bool("sample", arg, flag)
    if z_init is not None:
        check_array("sample", "z_init", z_init)
        if check_finite:
            check_finite_values("sample", "z_init", z_init)
    grid = check_grid(grid, "sample")
    n = grid.n_steps
    lam0 = float(grid.logsnr[0])
    if lam0 == -math.inf:
        if prediction == "eps":
            raise ValueError(
                "sample: grid starts at logsnr=-inf where an 'eps' prediction cannot give x; "
                "use a truncated schedule"
            )
        if sampler.requires_finite_start:
            raise ValueError(
                f"sample: grid starts at logsnr=-inf where the {sampler.name!r} sampler cannot "
                "start; use a truncated schedule"
            )
    if noise is None and (z_init is None or sampler.stochastic):
        raise ValueError(
            "sample: noise must be a noise source (diff_protocol.numpy_noise/torch_noise/jax_noise/"
            "table_noise) unless z_init is given and the sampler is deterministic, got None"
        )
    if noise is not None and not callable(noise):
        raise TypeError(
            f"sample: noise must be callable noise(i) -> array, got {type(noise).__name__}"
        )
    n_draws = getattr(noise, "n_draws", None)
    needed = n + 1 if (sampler.stochastic or z_init is None) else 0
    if n_draws is not None and n_draws < needed:
        raise ValueError(f"sample: noise table has {n_draws} draws, the grid needs {needed}")
    probe = z_init
    if noise is not None:
        backend, shape, first = _noise_probe(noise)
        if z_init is not None and backend != _backend_of(z_init):
            kind = _type_name(first) if first is not None else f"{backend} array"
            raise TypeError(f"sample: noise(0) is a {kind} but z_init is a {_type_name(z_init)}")
        if z_init is not None and shape != tuple(z_init.shape):
            raise ValueError(
                f"sample: noise(0) shape {shape} must equal z_init shape {tuple(z_init.shape)}"
            )
        if z_init is None and first is not None:
            check_array("sample", "noise(0)", first)
            if check_finite:
                check_finite_values("sample", "noise(0)", first)
            z_init = probe = first  # draw 0 is the initial state: reuse it, do not draw twice
        elif z_init is None:
            probe = _ShapeProbe(backend, shape)
    if probe is None or getattr(probe, "shape", None) is None:
        raise TypeError(f"sample: z_init must be an array, got {type(probe).__name__}")
    options = dict(
        cond=cond,
        z_init=z_init,
        final=final,
        x_clip=None if x_clip is None else float(x_clip),
        return_trajectory=return_trajectory,
        check_finite=check_finite,
    )
    backend = probe.backend if isinstance(probe, _ShapeProbe) else _backend_of(probe)
    if backend == "jax":
        if callback is not None:
            raise TypeError(
                "sample: callback is not supported under JAX (the loop is a lax.scan); "
                "use return_trajectory=True"
            )
        from ._jax_scan import run_scan

        return run_scan(denoiser, sampler, grid, noise, **options)
    from ._loop import run_loop

    return run_loop(
        denoiser, sampler, grid, noise, callback=callback, progress=progress, grad=grad, **options
    )
