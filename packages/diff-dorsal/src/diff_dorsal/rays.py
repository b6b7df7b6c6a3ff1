"""Positional encodings of rays: the camera information every DORSal network sees.

A ray is an origin ``o`` and a unit direction ``d`` per pixel (``diff_dorsal.cameras.rays``).
``posenc`` is the sinusoidal encoding of NeRF / SRT (Sajjadi et al., arXiv 2111.13152);
``ray_features`` encodes origins and directions into one per-pixel map: the stage-1 encoder's
extra input channels and the stage-2 decoder's camera map (``Cond.spatial``).

Defaults (6 position octaves over a scale of 6, 4 direction octaves: 60 channels) are this
project's choice for 32² scenes; ``OSRT_MSN`` gives the ``stelzner/osrt`` MSN settings (15 octaves
each, position start octave -5).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

__all__ = ["OSRT_MSN", "RayEncoding", "posenc", "ray_features"]


@dataclass(frozen=True)
class RayEncoding:
    """Octaves of the ray-feature map; ``channels = 3·2·pos_octaves + 3·2·dir_octaves``."""

    pos_octaves: int = 6
    dir_octaves: int = 4
    pos_scale: float = 6.0
    pos_start_octave: int = 0

    def __post_init__(self):
        for name in ("pos_octaves", "dir_octaves"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"RayEncoding: {name} must be an int >= 1, got {value!r}")
        if not self.pos_scale > 0:
            raise ValueError(f"RayEncoding: pos_scale must be > 0, got {self.pos_scale!r}")

    @property
    def channels(self) -> int:
        return 6 * (self.pos_octaves + self.dir_octaves)


#: The ``stelzner/osrt`` MSN configuration (15 octaves each, position start octave -5).
OSRT_MSN = RayEncoding(pos_octaves=15, dir_octaves=15, pos_scale=1.0, pos_start_octave=-5)


def posenc(x, octaves: int, start_octave: int = 0, scale: float = 1.0):
    """``[sin(2^o π x/scale) for every o and coordinate, cos(...) likewise]`` on the last axis.

    ``x (..., C)`` → ``(..., 2·C·octaves)``; octaves ``o = start_octave .. start_octave+octaves-1``.
    Layout: all sines (coordinate-major, octave-minor), then all cosines.
    """
    if not isinstance(octaves, int) or isinstance(octaves, bool) or octaves < 1:
        raise ValueError(f"posenc: octaves must be an int >= 1, got {octaves!r}")
    x = jnp.asarray(x)
    freqs = (2.0 ** jnp.arange(start_octave, start_octave + octaves, dtype=x.dtype)) * jnp.pi
    angles = (x[..., :, None] / scale) * freqs  # (..., C, octaves)
    angles = angles.reshape(*x.shape[:-1], -1)
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def ray_features(origins, directions, encoding: RayEncoding | None = None):
    """Per-pixel ray features ``posenc(origins) ++ posenc(directions)`` (60 channels by default).

    ``origins``, ``directions``: ``(..., 3)`` with the same shape; returns ``(..., channels)``.
    """
    enc = RayEncoding() if encoding is None else encoding
    origins = jnp.asarray(origins)
    directions = jnp.asarray(directions)
    if origins.shape != directions.shape or origins.shape[-1:] != (3,):
        raise ValueError(
            "ray_features: origins and directions must share a shape (..., 3), got "
            f"{tuple(origins.shape)} and {tuple(directions.shape)}"
        )
    pos = posenc(origins, enc.pos_octaves, enc.pos_start_octave, enc.pos_scale)
    dirs = posenc(directions, enc.dir_octaves)
    return jnp.concatenate([pos, dirs], axis=-1)
