"""diff-protocol: the slim contract every diff-* package speaks.

VP maths (:mod:`diff_protocol.vp`), the :class:`Denoiser` and :class:`Schedule` protocols, explicit
noise sources (:mod:`diff_protocol.noise`), the sampler-step protocol and time grids
(:mod:`diff_protocol.sampler`) and the entry-point plugin registry (:mod:`diff_protocol.registry`).
Depends on ``array-api-compat`` only; numpy, JAX and torch are imported lazily where needed.
"""

from .denoiser import Denoiser, Prediction, as_denoiser, check_denoiser, denoise
from .errors import NonFiniteError, RegistryError, arg_error
from .noise import (
    NoiseSource,
    derive_seed,
    jax_noise,
    jax_normal,
    jax_truncated_normal,
    jax_uniform,
    numpy_noise,
    register_jax_pytrees,
    table_noise,
    torch_noise,
)
from .registry import available, load, load_sampler, refresh, register
from .sampler import SamplerStep, State, TimeGrid, check_grid
from .schedule import Schedule, schedule_from_dict, schedule_from_json, schedule_to_json
from .vp import (
    PREDICTIONS,
    alpha_sigma,
    check_prediction,
    convert,
    diffuse,
    expand_like,
    from_x_eps,
    logsnr_from_sigma_edm,
    posterior,
    sigma_edm,
    sigmoid,
    softplus,
    to_x_eps,
    v_target,
)

__version__ = "0.1.2"

__all__ = [
    "PREDICTIONS",
    "Denoiser",
    "NoiseSource",
    "NonFiniteError",
    "Prediction",
    "RegistryError",
    "SamplerStep",
    "Schedule",
    "State",
    "TimeGrid",
    "__version__",
    "alpha_sigma",
    "arg_error",
    "as_denoiser",
    "available",
    "check_denoiser",
    "check_grid",
    "check_prediction",
    "convert",
    "denoise",
    "derive_seed",
    "diffuse",
    "expand_like",
    "from_x_eps",
    "jax_noise",
    "jax_normal",
    "jax_truncated_normal",
    "jax_uniform",
    "load",
    "load_sampler",
    "logsnr_from_sigma_edm",
    "numpy_noise",
    "posterior",
    "refresh",
    "register",
    "register_jax_pytrees",
    "schedule_from_dict",
    "schedule_from_json",
    "schedule_to_json",
    "sigma_edm",
    "sigmoid",
    "softplus",
    "table_noise",
    "to_x_eps",
    "torch_noise",
    "v_target",
]
