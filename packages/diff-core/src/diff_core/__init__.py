"""diff-core: framework-neutral diffusion maths for numpy, JAX and PyTorch.

Schedules (:mod:`diff_core.schedules`), loss weightings and the weighted loss
(:mod:`diff_core.weighting`, :mod:`diff_core.losses`), time sampling, transitions, samplers
(:mod:`diff_core.samplers`), time grids, the sampling driver (:func:`sample`), classifier-free
guidance with an interval (:mod:`diff_core.guidance`), exact denoisers (:mod:`diff_core.analytic`)
and distribution metrics (:mod:`diff_core.metrics`). ``import diff_core`` imports neither JAX nor
torch.
"""

from . import grids, guidance, samplers, transitions
from .guidance import guided, interval_from_sigma, uncond_evaluations
from .samplers import ddim, ddpm, dpmpp_2m, euler, heun
from .sampling import SampleResult, StepInfo, nfe, sample

__version__ = "0.1.0"

__all__ = [
    "SampleResult",
    "StepInfo",
    "__version__",
    "ddim",
    "ddpm",
    "dpmpp_2m",
    "euler",
    "grids",
    "guidance",
    "guided",
    "heun",
    "interval_from_sigma",
    "nfe",
    "sample",
    "samplers",
    "transitions",
    "uncond_evaluations",
]
