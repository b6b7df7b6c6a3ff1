"""Joint multi-view sampling of DORSal: guidance, fixed noise, long camera paths.

:func:`sample_views` runs diff-core's one driver (``diff_core.sample``) on the grid
``uniform_t(CosineSchedule(-15, 15), steps)``; classifier-free guidance (Ho & Salimans, arXiv
2207.12598) is diff-core's ``guided`` with the null condition "same cameras, every slot masked"
(:func:`~diff_dorsal.denoiser.null_slot_cond`; diff-pixel's ``sample`` is not used because its null
drops every field, the cameras included). Scale 1 (our default) is the conditional model, 0 the
unconditional one; ``interval`` limits guidance to a logsnr range (Kynkäänniemi et al., arXiv
2404.07724). The noise is ``jax_noise(key, (B, L, h, w, 3), per_example=True)``: an edit that
re-uses the key differs from the original only through the conditioning.

:func:`sample_path` generates long camera paths in chunks of ``chunk`` views; the ``overlap``
views shared with the previous chunk are held by replacement (Ho et al., *Video Diffusion
Models*, arXiv 2204.03458): at every step their state is the forward-noised previously generated
views at the current logsnr (with one fixed ε per chunk). Our default; the paper's scheme is not
confirmed.

Samples are returned as images in [0, 1] (the data convention); the denoiser works in [−1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import diff_core
from diff_core import grids
from diff_core.guidance import guided
from diff_core.schedules import CosineSchedule
from diff_dorsal.denoiser import null_slot_cond
from diff_pixel.sampling import sampler_step
from diff_protocol import PREDICTIONS, jax_normal
from diff_protocol.noise import jax_noise

__all__ = ["DEFAULT_SCHEDULE", "guided_denoiser", "make_cond", "sample_path", "sample_views"]

#: The sampling schedule (our default): cosine log-SNR on [−15, 15].
DEFAULT_SCHEDULE = CosineSchedule(-15.0, 15.0)


def _key(func: str, key: Any) -> jax.Array:
    """A typed PRNG key from a typed key, raw ``uint32[2]`` key data or an int seed."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if isinstance(key, (jax.Array, np.ndarray)):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
            return key
        if key.dtype == np.uint32 and key.shape == (2,):
            return jax.random.wrap_key_data(jnp.asarray(key))
    raise ValueError(
        f"{func}: noise_key must be a single JAX PRNG key or an int seed, got {key!r:.60}"
    )


def make_cond(slots: Any, slot_mask: Any, origins: Any, directions: Any, poses: Any = None):
    """The denoiser's condition dict (jax arrays; ``slot_mask`` bool, True = kept)."""
    cond = {
        "slots": jnp.asarray(slots, jnp.float32),
        "slot_mask": jnp.asarray(slot_mask, bool),
        "origins": jnp.asarray(origins, jnp.float32),
        "directions": jnp.asarray(directions, jnp.float32),
    }
    if poses is not None:
        cond["poses"] = jnp.asarray(poses, jnp.float32)
    return cond


def _check_common(func: str, denoiser: Any, steps: Any, guidance: Any, clip_x: Any) -> None:
    if getattr(denoiser, "prediction", None) not in PREDICTIONS or not callable(denoiser):
        raise TypeError(
            f"{func}: denoiser must be a diff-protocol Denoiser (prediction in {PREDICTIONS}), "
            f"got {type(denoiser).__name__}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{func}: steps must be a positive int, got {steps!r}")
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)):
        raise ValueError(f"{func}: guidance must be a number >= 0, got {guidance!r}")
    if not math.isfinite(guidance) or guidance < 0:
        raise ValueError(f"{func}: guidance must be >= 0, got {float(guidance)}")
    if clip_x is not None and (
        isinstance(clip_x, bool) or not isinstance(clip_x, (int, float)) or not clip_x > 0
    ):
        raise ValueError(f"{func}: clip_x must be None or a positive number, got {clip_x!r}")


def _views_shape(func: str, origins: Any, directions: Any, slots: Any, slot_mask: Any):
    o, d = np.shape(origins), np.shape(directions)
    if len(o) != 5 or o[-1] != 3 or o != d:
        raise ValueError(
            f"{func}: origins and directions must share a shape (B, L, h, w, 3), got {o} and {d}"
        )
    s, m = np.shape(slots), np.shape(slot_mask)
    if len(s) != 3 or s[0] != o[0]:
        raise ValueError(f"{func}: slots must have shape ({o[0]}, S, D), got {s}")
    if m != s[:2]:
        raise ValueError(f"{func}: slot_mask must have shape {s[:2]}, got {m}")
    return tuple(int(v) for v in o)


def guided_denoiser(
    denoiser: Any, cond: Any, guidance: float, interval: tuple[float, float] | None = None
) -> tuple[Any, Any]:
    """``(denoiser, cond)`` as :func:`sample_views` runs them: the plain denoiser for scale 1, the
    all-slots-masked condition for scale 0 (without an interval), else diff-core's ``guided``
    with ``null_cond`` = :func:`~diff_dorsal.denoiser.null_slot_cond` (evaluated separately,
    ``batch=False``, so scale 0 inside an interval is the unconditional output bitwise)."""
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)):
        raise ValueError(f"guided_denoiser: guidance must be a number >= 0, got {guidance!r}")
    if not math.isfinite(guidance) or guidance < 0:
        raise ValueError(f"guided_denoiser: guidance must be >= 0, got {float(guidance)}")
    guidance = float(guidance)
    if guidance == 1.0:
        return denoiser, cond
    if guidance == 0.0 and interval is None:
        return denoiser, null_slot_cond(cond)  # the unconditional model itself
    return guided(
        denoiser, float(guidance), null_cond=null_slot_cond, interval=interval, batch=False
    ), cond


def sample_views(
    denoiser: Any,
    slots: Any,
    slot_mask: Any,
    origins: Any,
    directions: Any,
    noise_key: Any,
    *,
    steps: int = 64,
    sampler: Any = "ddim",
    guidance: float = 1.0,
    interval: tuple[float, float] | None = None,
    clip_x: float | None = 1.0,
    poses: Any = None,
    schedule: Any = None,
) -> jax.Array:
    """Generate the L views of each example jointly: ``(B, L, h, w, 3)`` images in [0, 1].

    Args:
      denoiser: a :class:`~diff_dorsal.denoiser.DorsalDenoiser` or any protocol denoiser taking
        the condition dict (e.g. :class:`~diff_dorsal.testing.RendererDenoiser`).
      slots, slot_mask: ``(B, S, D)`` and ``(B, S)`` bool (True = kept).
      origins, directions: the target cameras' rays ``(B, L, h, w, 3)``.
      noise_key: a JAX key (or int seed); noise is ``jax_noise(key, (B, L, h, w, 3),
        per_example=True)``, so the same key gives the same noise for an edited condition.
      steps: grid points of ``uniform_t(schedule, steps)``. sampler: ``"ddim"`` (η = 0),
        ``"ddpm"``, any registered name or a ``SamplerStep``.
      guidance: classifier-free guidance scale >= 0 (1 = conditional, 0 = unconditional).
      interval: guide only for logsnr in ``[lo, hi)`` (None: everywhere).
      clip_x: clip x̂ to [−clip_x, clip_x] in the [−1, 1] scale before each step (None: off).
      poses: ``(B, L, 3, 4)`` for decoders built with ``pose_vector``.
      schedule: default ``CosineSchedule(-15, 15)``.
    """
    func = "sample_views"
    _check_common(func, denoiser, steps, guidance, clip_x)
    b, views, h, w, _ = _views_shape(func, origins, directions, slots, slot_mask)
    key = _key(func, noise_key)
    cond = make_cond(slots, slot_mask, origins, directions, poses)
    grid = grids.uniform_t(DEFAULT_SCHEDULE if schedule is None else schedule, steps)
    den, cond = guided_denoiser(denoiser, cond, float(guidance), interval)
    noise = jax_noise(key, (b, views, h, w, 3), per_example=True)
    x = diff_core.sample(
        den,
        sampler_step(sampler),
        grid,
        noise,
        cond=cond,
        final="denoise",
        x_clip=None if clip_x is None else float(clip_x),
    )
    return (x + 1.0) * 0.5


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class _Replaced:
    """Replacement conditioning (Ho et al., arXiv 2204.03458): the views where ``known_mask``
    is True enter the network as ``α_λ x_known + σ_λ ε`` at every step."""

    denoiser: Any
    known: jax.Array  # (B, L, h, w, 3) in [-1, 1]
    eps: jax.Array  # (B, L, h, w, 3)
    known_mask: jax.Array  # (L,) bool
    prediction: str = field(metadata={"static": True}, default="v")

    def __call__(self, z: jax.Array, logsnr: jax.Array, cond: Any = None) -> jax.Array:
        lam = jnp.asarray(logsnr, jnp.float32)
        lam = jnp.broadcast_to(lam, (z.shape[0],)).reshape((-1,) + (1,) * (z.ndim - 1))
        alpha, sigma = jnp.sqrt(jax.nn.sigmoid(lam)), jnp.sqrt(jax.nn.sigmoid(-lam))
        zk = (alpha * self.known + sigma * self.eps).astype(z.dtype)
        m = self.known_mask.reshape((1, -1) + (1,) * (z.ndim - 2))
        return self.denoiser(jnp.where(m, zk, z), logsnr, cond)


def _chunks(n: int, chunk: int, overlap: int) -> list[int]:
    if n <= chunk:
        return [0]
    starts, s = [0], 0
    while s + chunk < n:
        s = min(s + chunk - overlap, n - chunk)
        starts.append(s)
    return starts


def sample_path(
    denoiser: Any,
    slots: Any,
    slot_mask: Any,
    origins: Any,
    directions: Any,
    noise_key: Any,
    *,
    chunk: int = 5,
    overlap: int = 2,
    steps: int = 64,
    sampler: Any = "ddim",
    guidance: float = 1.0,
    interval: tuple[float, float] | None = None,
    clip_x: float | None = 1.0,
    poses: Any = None,
    schedule: Any = None,
) -> jax.Array:
    """Views along a long camera path ``(B, N, h, w, 3)`` (images in [0, 1]), in chunks.

    Chunk 0 is views ``0 .. chunk−1``; each next chunk starts ``chunk − overlap`` views later
    (the last one ends at view N − 1, so it may share more than ``overlap`` views). The views a
    chunk shares with those already generated are held by replacement; the others are sampled
    with the noise key ``fold_in(noise_key, c)`` of chunk c. Other arguments as in
    :func:`sample_views`.
    """
    func = "sample_path"
    _check_common(func, denoiser, steps, guidance, clip_x)
    for name, v in (("chunk", chunk), ("overlap", overlap)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{func}: {name} must be an int, got {v!r}")
    if chunk < 1 or not 0 <= overlap < chunk:
        raise ValueError(
            f"{func}: chunk must be >= 1 and overlap in [0, chunk), got chunk={chunk}, "
            f"overlap={overlap}"
        )
    b, n, h, w, _ = _views_shape(func, origins, directions, slots, slot_mask)
    key = _key(func, noise_key)
    origins = jnp.asarray(origins, jnp.float32)
    directions = jnp.asarray(directions, jnp.float32)
    grid = grids.uniform_t(DEFAULT_SCHEDULE if schedule is None else schedule, steps)
    step = sampler_step(sampler)
    # host-side numpy: a jax array updated with .at[].set would carry a sharding the zeros did
    # not, and chunk 1 would compile the sampler a second time
    out = np.zeros((b, n, h, w, 3), np.float32)  # [-1, 1]
    done = 0
    for c, s in enumerate(_chunks(n, chunk, overlap)):
        L = min(chunk, n)
        idx = np.arange(s, s + L)
        cond = make_cond(
            slots,
            slot_mask,
            origins[:, idx],
            directions[:, idx],
            None if poses is None else jnp.asarray(poses)[:, idx],
        )
        den, cond = guided_denoiser(denoiser, cond, float(guidance), interval)
        kc = jax.random.fold_in(key, c)
        # every chunk runs the same wrapped denoiser (chunk 0 with nothing known): one compilation
        known_mask = jnp.asarray(idx < done)
        eps = jax_normal(jax.random.fold_in(kc, 2**31 - 2), (b, L, h, w, 3))
        den = _Replaced(den, jnp.asarray(out[:, idx]), eps, known_mask, den.prediction)
        noise = jax_noise(kc, (b, L, h, w, 3), per_example=True)
        x = diff_core.sample(
            den,
            step,
            grid,
            noise,
            cond=cond,
            final="denoise",
            x_clip=None if clip_x is None else float(clip_x),
        )
        new = idx >= done
        out[:, idx[new]] = np.asarray(x[:, new])
        done = int(s + L)
    return (jnp.asarray(out) + 1.0) * 0.5
