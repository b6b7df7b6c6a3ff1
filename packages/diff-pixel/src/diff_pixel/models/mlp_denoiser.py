"""A small MLP denoiser for low-dimensional (vector) data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_pixel.nn import init as _init
from diff_protocol import PREDICTIONS

__all__ = ["MLPDenoiser"]


class MLPDenoiser(nnx.Module):
    r"""MLP on :math:`[z, \phi(\lambda)]` with SiLU activations and a zero-initialised output.

    :math:`\phi(\lambda) = [\sin(\omega_k \lambda), \cos(\omega_k \lambda)]` with
    ``logsnr_features/2`` frequencies :math:`\omega_k` log-spaced in [0.05, 4]; λ is clipped to
    [−50, 50] so the features are finite at the infinite ends of an untruncated schedule.
    ``depth`` hidden layers of ``width``. Same call as the image backbones:
    ``model(z, logsnr, cond=None, *, dropout_key=None)``, z of shape (B, *event) with
    prod(event) = ``dim``; the output has z's shape and the named ``prediction``.
    Used by diff-distill and diff-consistency for their toy problems. Registered as
    ``mlp_denoiser`` (``to_config`` / ``from_config``).
    """

    registry_name: ClassVar[str] = "mlp_denoiser"

    def __init__(
        self,
        dim: int,
        width: int = 256,
        depth: int = 4,
        logsnr_features: int = 16,
        prediction: str = "v",
        *,
        rngs: nnx.Rngs,
    ) -> None:
        for name, v in (("dim", dim), ("width", width), ("depth", depth)):
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"MLPDenoiser: {name} must be a positive int, got {v!r}")
        if not isinstance(logsnr_features, int) or logsnr_features <= 0 or logsnr_features % 2:
            raise ValueError(
                f"MLPDenoiser: logsnr_features must be a positive even int, got {logsnr_features!r}"
            )
        if prediction not in PREDICTIONS:
            raise ValueError(
                f"MLPDenoiser: prediction must be one of {PREDICTIONS}, got {prediction!r}"
            )
        self.dim, self.prediction = dim, prediction
        self.logsnr_features = logsnr_features
        self.width, self.depth = width, depth
        sizes = [dim + logsnr_features] + [width] * depth
        self.hidden = nnx.List(
            [
                nnx.Linear(a, b, **_init.dense_inits(), rngs=rngs)
                for a, b in zip(sizes[:-1], sizes[1:], strict=True)
            ]
        )
        self.out = nnx.Linear(width, dim, **_init.dense_inits(zero=True), rngs=rngs)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments (stored in checkpoints; ``MLPDenoiser(**config, rngs=...)``)."""
        return {
            "dim": self.dim,
            "width": self.width,
            "depth": self.depth,
            "logsnr_features": self.logsnr_features,
            "prediction": self.prediction,
        }

    def to_config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-able); :meth:`from_config` inverts it."""
        return dict(self.config)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, seed: int = 0) -> MLPDenoiser:
        """A fresh model (weights from ``seed``) with the constructor arguments ``config``."""
        if not isinstance(config, Mapping):
            raise TypeError(
                f"MLPDenoiser.from_config: config must be a dict, got {type(config).__name__}"
            )
        return cls(**config, rngs=nnx.Rngs(seed))

    def __call__(
        self,
        z: jax.Array,
        logsnr: jax.Array | float,
        cond: Any = None,
        *,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        del dropout_key  # no dropout
        if cond is not None:
            raise ValueError(f"MLPDenoiser: cond must be None, got {type(cond).__name__}")
        z = jnp.asarray(z)
        b = z.shape[0] if z.ndim else 0
        if z.ndim < 1 or int(np.prod(z.shape[1:])) != self.dim:
            raise ValueError(
                f"MLPDenoiser: z must have shape (B, *event) with prod(event) = {self.dim}, got "
                f"{z.shape}"
            )
        lam = jnp.clip(jnp.broadcast_to(jnp.asarray(logsnr, jnp.float32), (b,)), -50.0, 50.0)
        freqs = np.geomspace(0.05, 4.0, self.logsnr_features // 2).astype(np.float32)
        arg = lam[:, None] * freqs[None, :]
        h = jnp.concatenate(
            [z.reshape(b, -1).astype(jnp.float32), jnp.sin(arg), jnp.cos(arg)], axis=-1
        )
        for layer in self.hidden:
            h = jax.nn.silu(layer(h))
        return self.out(h).reshape(z.shape).astype(z.dtype)
