r"""Exact conditional denoisers of the pair distribution, for end-to-end checks.

:func:`pair_oracle_denoiser` is the exact denoiser of the pair data: given a conditioning image
``a`` of group ``g``, the target is uniform over the *other* members of ``g``, so

.. math::
    \hat x(z, \lambda) = \frac{\sum_{i \in g, i \ne a} x_i\, e^{-\lVert z - \alpha x_i\rVert^2 /
    2\sigma^2}}{\sum_{i \in g, i \ne a} e^{-\lVert z - \alpha x_i\rVert^2 / 2\sigma^2}},

diff-core's ``EmpiricalDistribution`` posterior mean restricted per example to a mask of points
(the tests check the two agree). A dropped example (``cond.drop``) uses every training image:
the unconditional model of classifier-free guidance. :func:`copy_oracle_denoiser` is the
``EmpiricalDistribution`` over ``{a}`` alone: it returns the conditioning image.

Both take the model's ``Cond``; the conditioning group and the excluded index (−1 for an image
outside the data) ride in ``cond.extra["group"]`` / ``cond.extra["exclude"]``, the conditioning
image in ``cond.extra["image"]`` (:func:`oracle_extra` builds them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diff_pixel import Cond
from diff_semantica.data import GroupedImages

__all__ = [
    "CopyOracle",
    "PairOracle",
    "copy_oracle_denoiser",
    "micro_config",
    "micro_model",
    "oracle_extra",
    "pair_oracle_denoiser",
]


def _alpha_sigma2(logsnr: jax.Array, b: int) -> tuple[jax.Array, jax.Array]:
    lam = jnp.broadcast_to(jnp.asarray(logsnr, jnp.float32).reshape(-1), (b,))
    return jnp.sqrt(jax.nn.sigmoid(lam)), jax.nn.sigmoid(-lam)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class PairOracle:
    """The exact denoiser of the pair distribution (``prediction = "x"``)."""

    points: jax.Array  # (N, D)
    groups: jax.Array  # (N,)
    event_shape: tuple[int, ...] = field(metadata={"static": True})
    prediction: str = field(default="x", metadata={"static": True})

    def __call__(self, z: jax.Array, logsnr: jax.Array, cond: Cond | None = None) -> jax.Array:
        b = z.shape[0]
        zf = z.reshape(b, -1).astype(jnp.float32)
        alpha, sigma2 = _alpha_sigma2(logsnr, b)
        extra = cond.extra if cond is not None and cond.extra else {}
        group = extra.get("group", jnp.full((b,), -1, jnp.int32))
        exclude = extra.get("exclude", jnp.full((b,), -1, jnp.int32))
        drop = cond.drop if cond is not None and cond.drop is not None else jnp.zeros((b,), bool)
        idx = jnp.arange(self.points.shape[0])

        def one(args: tuple) -> jax.Array:
            zi, ai, si, gi, ei, di = args
            u = jnp.sum((zi[None, :] - ai * self.points) ** 2, axis=-1)
            ok = jnp.where(di | (gi < 0), True, (self.groups == gi) & (idx != ei))
            logits = jnp.where(ok, -u / (2.0 * si), -jnp.inf)
            return jax.nn.softmax(logits) @ self.points

        xs = (zf, alpha, sigma2, group.astype(jnp.int32), exclude.astype(jnp.int32), drop)
        out = jax.lax.map(one, xs, batch_size=32)
        return out.reshape(z.shape).astype(z.dtype)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class CopyOracle:
    """Returns the conditioning image ``cond.extra["image"]`` (``prediction = "x"``); a dropped
    example returns 0."""

    prediction: str = field(default="x", metadata={"static": True})

    def __call__(self, z: jax.Array, logsnr: jax.Array, cond: Cond | None = None) -> jax.Array:
        if cond is None or not cond.extra or "image" not in cond.extra:
            raise ValueError("CopyOracle: cond.extra['image'] must hold the conditioning images")
        img = jnp.asarray(cond.extra["image"], z.dtype).reshape(z.shape)
        if cond.drop is not None:
            img = jnp.where(cond.drop.reshape((-1,) + (1,) * (z.ndim - 1)), 0.0, img)
        return img


def pair_oracle_denoiser(data: GroupedImages) -> PairOracle:
    """The exact conditional denoiser of ``data``'s pairs (see the module docstring)."""
    if not isinstance(data, GroupedImages):
        raise TypeError(
            f"pair_oracle_denoiser: data must be GroupedImages, got {type(data).__name__}"
        )
    pts = jnp.asarray(data.images.reshape(len(data), -1), jnp.float32)
    return PairOracle(pts, jnp.asarray(data.groups, jnp.int32), tuple(data.image_shape))


def copy_oracle_denoiser() -> CopyOracle:
    """The exact denoiser of self-reconstruction: the posterior over ``{a}`` alone."""
    return CopyOracle()


def oracle_extra(
    cond_images: np.ndarray, cond_groups: np.ndarray, exclude: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """``Cond.extra`` entries the oracles read: ``group``, ``exclude`` (−1: none), ``image``."""
    n = len(cond_images)
    ex = np.full((n,), -1, np.int32) if exclude is None else np.asarray(exclude, np.int32)
    return {
        "group": np.asarray(cond_groups, np.int32),
        "exclude": ex,
        "image": np.asarray(cond_images, np.float32),
    }


def micro_config(encoder: Any, **kw: Any) -> Any:
    """A one-block, 16-channel backbone at 8×8 (compiles in seconds) conditioned on ``encoder``'s
    tokens (and its global token as the vector condition): the model of the fast tests."""
    from diff_pixel import UViTConfig
    from diff_semantica.model import SemanticaConfig, _maybe_describe

    bb = UViTConfig(
        image_size=8,
        in_channels=1,
        channels=(16,),
        blocks=(),
        block_types=(),
        mid_blocks=1,
        head_dim=8,
        dropout=(0.0,),
        token_dim=encoder.dim,
        vector_dim=encoder.dim,
    )
    return SemanticaConfig(bb.to_dict(), _maybe_describe(encoder), **kw)


def micro_model(encoder: Any, seed: int = 0, scale: float = 0.05, **kw: Any) -> Any:
    """:func:`micro_config` built with ``seed``, its zero-initialised layers moved off zero by
    diff-pixel's ``perturb`` (so the condition acts from the first step)."""
    from diff_pixel.testing import perturb
    from diff_semantica.model import SemanticaDenoiser

    model = SemanticaDenoiser(micro_config(encoder, **kw), encoder, seed=seed)
    perturb(model.net, seed, scale)
    return model
