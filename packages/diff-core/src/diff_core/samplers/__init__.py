"""Sampler steps, one method per module; each factory returns a :class:`diff_protocol.SamplerStep`.

Factories are ``functools.lru_cache``d: equal arguments return the identical object, so JAX
compilation caches keyed on the sampler stay warm.
"""

from .ddim import ddim
from .ddpm import ddpm
from .dpmpp_2m import dpmpp_2m
from .euler import euler
from .heun import heun

__all__ = ["ddim", "ddpm", "dpmpp_2m", "euler", "heun"]
