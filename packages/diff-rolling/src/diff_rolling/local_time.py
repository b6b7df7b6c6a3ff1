"""Local time of rolling diffusion (Ruhe et al., *Rolling Diffusion Models*, arXiv 2402.09470, §3).

A window holds W frames, ``k = 0`` the oldest (next to be emitted). One global time ``t`` runs
from 1 to 0 per shift of the window and maps to one local (noise) time per frame:

    rolling:  t_k = clip((k + t)/W, 0, 1)     at t = 1: 1/W, …, 1;   at t = 0: 0, 1/W, …, (W−1)/W
    init:     t_k = clip(k/W + t, 0, 1)       at t = 1: all 1;       at t = 0: = rolling(0)
    standard: t_k = t                          (every frame at one level: the baseline)

so frame k always lies in ``[k/W, (k+1)/W]`` under the rolling map and the window after a shift
(``k → k − 1``, a fresh noise frame at ``k = W − 1``) continues exactly where the last one
stopped: ``rolling(1)[k−1] == rolling(0)[k]`` bitwise (both are ``k/W`` computed from the same
integers). These maps are this project's derivation (linear in k and t, spanning [0, 1], with
the shift property), consistent with ERDM's convention (arXiv 2506.20024); the paper's exact
formulas could not be read. Training draws ``t ~ U(0, 1)`` stratified over the batch and picks
the init map with probability β (our default β = 0.1; the paper's value is not confirmed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "REGIMES",
    "LocalTimeDraw",
    "LocalTimeRange",
    "init_times",
    "local_times",
    "local_times_from_keys",
    "rolling_times",
    "sample_local_times",
]

REGIMES = ("rolling", "init", "standard")


def _check_window(func: str, window: Any) -> int:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"{func}: window must be a positive int, got {window!r}")
    return int(window)


def _is_jax(a: Any) -> bool:
    return type(a).__module__.startswith("jax")


def _namespace(t: Any) -> Any:
    if _is_jax(t):
        import jax.numpy as jnp

        return jnp
    return np


def _as_time(func: str, t: Any) -> Any:
    """``t`` as an array (numpy for host numbers, JAX for JAX arrays); concrete values are
    checked to lie in [0, 1]."""
    if isinstance(t, bool) or not (isinstance(t, (int, float, np.floating)) or hasattr(t, "shape")):
        raise TypeError(f"{func}: t must be a number or an array, got {type(t).__name__}")
    xp = _namespace(t)
    t = xp.asarray(t)
    if not xp.issubdtype(t.dtype, xp.floating):
        t = t.astype(xp.float64 if xp is np else xp.float32)
    try:
        tn = np.asarray(t)
    except Exception:  # a tracer: checked by the caller's contract
        return t
    if tn.size and (np.isnan(tn).any() or tn.min() < 0.0 or tn.max() > 1.0):
        bad = tn[(tn < 0) | (tn > 1) | np.isnan(tn)].ravel()[0]
        raise ValueError(f"{func}: t must be in [0, 1], got {float(bad)}")
    return t


def rolling_times(t: Any, window: int) -> Any:
    """``t_k = clip((k + t)/W, 0, 1)`` for k = 0..W−1; shape ``t.shape + (W,)``.

    Example:
      >>> rolling_times(1.0, 4).tolist()
      [0.25, 0.5, 0.75, 1.0]
    """
    window = _check_window("rolling_times", window)
    t = _as_time("rolling_times", t)
    xp = _namespace(t)
    k = xp.arange(window, dtype=t.dtype)
    return xp.clip((k + t[..., None]) / window, 0.0, 1.0)


def init_times(t: Any, window: int) -> Any:
    """``t_k = clip(k/W + t, 0, 1)``: all frames at 1 for t = 1, equal to ``rolling_times(0)``
    at t = 0 (the hand-off to the rolling phase)."""
    window = _check_window("init_times", window)
    t = _as_time("init_times", t)
    xp = _namespace(t)
    k = xp.arange(window, dtype=t.dtype)
    return xp.clip(k / window + t[..., None], 0.0, 1.0)


def local_times(t: Any, window: int, regime: str) -> Any:
    """Dispatch ``"rolling" | "init" | "standard"`` (standard: every frame at t)."""
    if regime == "rolling":
        return rolling_times(t, window)
    if regime == "init":
        return init_times(t, window)
    if regime == "standard":
        window = _check_window("local_times", window)
        t = _as_time("local_times", t)
        xp = _namespace(t)
        return xp.broadcast_to(t[..., None], t.shape + (window,)) + xp.zeros((), t.dtype)
    raise ValueError(f"local_times: regime must be one of {REGIMES}, got {regime!r}")


@dataclass(frozen=True)
class LocalTimeRange:
    """Affine rescale ``τ = lo + (hi − lo)·t_k`` applied after the map, before the schedule.

    Places the window on a sub-range of noise levels (a stand-in for the paper's rescaled schedule,
    App. G, whose definition is not confirmed); identity by default.
    """

    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self) -> None:
        lo, hi = float(self.lo), float(self.hi)
        if not (0.0 <= lo < hi <= 1.0):
            raise ValueError(f"LocalTimeRange: need 0 <= lo < hi <= 1, got lo={lo}, hi={hi}")

    @property
    def is_identity(self) -> bool:
        return self.lo == 0.0 and self.hi == 1.0

    def __call__(self, t: Any) -> Any:
        if self.is_identity:
            return t
        return self.lo + (self.hi - self.lo) * t


class LocalTimeDraw(NamedTuple):
    """A training draw: global ``t (B,)``, per-frame ``local (B, W)``, ``is_init (B,)``."""

    t: Any
    local: Any
    is_init: Any


def _check_beta(func: str, beta: Any) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta <= 1.0:
        raise ValueError(f"{func}: beta must be in [0, 1], got {beta}")
    return float(beta)


def local_times_from_keys(
    keys: Any, window: int, beta: float, regime: str = "mixed"
) -> LocalTimeDraw:
    """The training draw from per-example keys (``diff_pixel.example_keys``): stream 0 gives the
    stratified global time (``diff_pixel.stratified_times``), stream 3 the init coin
    (``is_init ~ Bernoulli(β)``) for ``regime="mixed"``; ``"rolling"``, ``"init"`` and
    ``"standard"`` force one map."""
    import jax
    import jax.numpy as jnp

    from diff_pixel.losses import stratified_times

    window = _check_window("local_times_from_keys", window)
    beta = _check_beta("local_times_from_keys", beta)
    if regime not in ("mixed",) + REGIMES:
        raise ValueError(
            f"local_times_from_keys: regime must be one of {('mixed',) + REGIMES}, got {regime!r}"
        )
    t = stratified_times(keys)
    k = jnp.arange(window, dtype=t.dtype)
    roll = jnp.clip((k + t[:, None]) / window, 0.0, 1.0)
    init = jnp.clip(k / window + t[:, None], 0.0, 1.0)
    if regime == "standard":
        return LocalTimeDraw(t, jnp.broadcast_to(t[:, None], roll.shape), jnp.zeros(t.shape, bool))
    if regime == "rolling":
        is_init = jnp.zeros(t.shape, bool)
    elif regime == "init":
        is_init = jnp.ones(t.shape, bool)
    else:
        is_init = jax.vmap(lambda kk: jax.random.bernoulli(jax.random.fold_in(kk, 3), beta))(keys)
    return LocalTimeDraw(t, jnp.where(is_init[:, None], init, roll), is_init)


def sample_local_times(key: Any, batch: int, window: int, beta: float = 0.1) -> LocalTimeDraw:
    """Draw ``batch`` training local times: t ~ U(0, 1) stratified over the batch, the init map
    with probability ``beta``, the rolling map otherwise.

    Example:
      >>> import jax
      >>> d = sample_local_times(jax.random.key(0), 8, 4, beta=0.1)
      >>> d.local.shape
      (8, 4)
    """
    import jax

    window = _check_window("sample_local_times", window)
    beta = _check_beta("sample_local_times", beta)
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"sample_local_times: batch must be a positive int, got {batch!r}")
    keys = jax.random.split(key, int(batch))
    return _draw_jit(keys, window, beta)


def _draw(keys: Any, window: int, beta: float) -> LocalTimeDraw:
    return local_times_from_keys(keys, window, beta, "mixed")


def _jit_draw() -> Any:
    import jax

    return jax.jit(_draw, static_argnums=(1, 2))


class _LazyJit:
    fn: Any = None

    def __call__(self, *args: Any) -> Any:
        if self.fn is None:
            self.fn = _jit_draw()
        return self.fn(*args)


_draw_jit = _LazyJit()
