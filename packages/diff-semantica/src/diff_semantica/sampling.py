"""Variations of conditioning images: diff-pixel's sampling adapter over diff-core's driver.

For each conditioning image ``a`` and sample ``j``: tokens ``E(a)``, classifier-free guidance
with diff-core's ``guided`` (``scale = 1`` plain conditional, ``0`` unconditional; optionally
only for λ in ``interval``, Kynkäänniemi et al., arXiv 2404.07724), a uniform-t grid and the
last step returning x̂, clipped to [−1, 1]. Noise is per example (diff-pixel's
``ExampleNoise``): sample ``j`` of image ``i`` is example number ``i · n_per_image + j`` of the
seed's stream, so it does not depend on batching or chunking.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_pixel import Cond
from diff_pixel import sample as pixel_sample

__all__ = ["encode_batched", "sample_variations"]


def encode_batched(encoder: Any, images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """``encoder(images)`` in batches under one jitted function."""
    graphdef, state = nnx.split(encoder)

    @jax.jit
    def run(state: Any, x: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, state)(x)

    return np.concatenate(
        [
            np.asarray(run(state, jnp.asarray(images[a : a + batch])))
            for a in range(0, len(images), batch)
        ]
    )


def sample_variations(
    model: Any,
    cond_images: Any,
    *,
    encoder: Any = None,
    n_per_image: int = 4,
    guidance: float = 2.0,
    steps: int = 50,
    sampler: str = "ddim",
    interval: tuple[float, float] | None = None,
    seed: int = 0,
    schedule: Any = None,
    image_shape: tuple[int, int, int] | None = None,
    extra: dict[str, Any] | None = None,
    chunk: int = 2048,
) -> np.ndarray:
    """``(n_images, n_per_image, H, W, C)`` variations of ``cond_images`` (host float32).

    Args:
      model: a :class:`~diff_semantica.SemanticaDenoiser`, or any diff-protocol denoiser that
        takes a diff-pixel ``Cond`` (the oracles of :mod:`diff_semantica.testing`).
      cond_images: ``(n, H, W, C)`` in [−1, 1], shaped like the training data.
      encoder: default ``model.encoder``.
      n_per_image, guidance, steps, sampler, interval, seed: as in the module docstring.
      schedule: default the model's config schedule.
      image_shape: default the model's.
      extra: per-image arrays ``{name: (n, ...)}`` repeated per sample into ``Cond.extra``
        (the oracles read the conditioning group / image there).
      chunk: examples per driver call.
    """
    x = np.asarray(cond_images, np.float32)
    shape = tuple(image_shape or model.image_shape)
    if x.ndim != 4 or tuple(x.shape[1:]) != shape:
        got = ", ".join(map(str, x.shape[1:])) if x.ndim == 4 else str(x.shape)
        raise ValueError(
            f"sample_variations: cond_images must be (n, {', '.join(map(str, shape))}) like the "
            f"training data, got (n, {got})"
        )
    for name, v in (("n_per_image", n_per_image), ("steps", steps), ("chunk", chunk)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"sample_variations: {name} must be a positive int, got {v!r}")
    if not isinstance(guidance, (int, float)) or not math.isfinite(guidance):
        raise ValueError(f"sample_variations: guidance must be a finite number, got {guidance!r}")
    encoder = encoder if encoder is not None else model.encoder
    schedule = schedule if schedule is not None else model.config.schedule_obj()
    tokens = encode_batched(encoder, x)
    n = x.shape[0]
    rows = np.repeat(np.arange(n), n_per_image)
    total = rows.size
    out = np.empty((total, *shape), np.float32)
    key = jax.random.key(int(seed))
    lo_hi = (-math.inf, math.inf) if interval is None else tuple(interval)
    for a in range(0, total, chunk):
        r = rows[a : a + chunk]
        fields: dict[str, Any] = {}
        if extra:
            fields["extra"] = {k: jnp.asarray(np.asarray(v)[r]) for k, v in extra.items()}
        make = getattr(model, "make_cond", None)
        t = jnp.asarray(tokens[r])
        cond = make(t, **fields) if callable(make) else Cond(tokens=t, **fields)
        out[a : a + len(r)] = np.asarray(
            pixel_sample(
                model,
                shape=(len(r), *shape),
                key=key,
                schedule=schedule,
                steps=steps,
                sampler=sampler,
                cond=cond,
                guidance=float(guidance),
                interval=lo_hi,
                first_index=a,
            )
        )
    return np.clip(out, -1.0, 1.0).reshape(n, n_per_image, *shape)
