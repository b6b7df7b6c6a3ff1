"""diff-core: framework-neutral diffusion maths for numpy, JAX and PyTorch.

Schedules (:mod:`diff_core.schedules`), loss weightings and the weighted loss
(:mod:`diff_core.weighting`, :mod:`diff_core.losses`), time sampling
(:mod:`diff_core.timesampling`), transitions (:mod:`diff_core.transitions`), samplers
(:mod:`diff_core.samplers`), time grids (:mod:`diff_core.grids`), the sampling driver
(:func:`sample`), classifier-free guidance with an interval (:mod:`diff_core.guidance`), exact
distributions and denoisers (:mod:`diff_core.analytic`), distribution metrics
(:mod:`diff_core.metrics`), sample grids as pictures (:mod:`diff_core.images`, Pillow from the
``demo`` extra) and test helpers (:mod:`diff_core.testing`). ``import diff_core``
imports neither JAX nor torch.
"""

from . import (
    analytic,
    grids,
    guidance,
    images,
    losses,
    metrics,
    samplers,
    schedules,
    timesampling,
    transitions,
    weighting,
)
from .analytic import ConditionalMixture, EmpiricalDistribution, GaussianMixture, gaussian
from .guidance import guided, interval_from_sigma, register_jax_pytrees, uncond_evaluations
from .losses import diffusion_loss, training_inputs
from .samplers import ddim, ddpm, dpmpp_2m, euler, heun
from .sampling import SampleResult, StepInfo, nfe, sample
from .schedules import (
    CosineSchedule,
    InterpolatedCosineSchedule,
    KarrasSchedule,
    LinearBetaSchedule,
    PolynomialSchedule,
    ShiftedCosineSchedule,
    TableSchedule,
)
from .timesampling import low_discrepancy_times, stratified_times, uniform_times
from .weighting import Weighting, weighting_from_dict

__version__ = "0.2.1"

__all__ = [
    "ConditionalMixture",
    "CosineSchedule",
    "EmpiricalDistribution",
    "GaussianMixture",
    "InterpolatedCosineSchedule",
    "KarrasSchedule",
    "LinearBetaSchedule",
    "PolynomialSchedule",
    "SampleResult",
    "ShiftedCosineSchedule",
    "StepInfo",
    "TableSchedule",
    "Weighting",
    "__version__",
    "analytic",
    "ddim",
    "ddpm",
    "diffusion_loss",
    "dpmpp_2m",
    "euler",
    "gaussian",
    "grids",
    "guidance",
    "images",
    "guided",
    "heun",
    "interval_from_sigma",
    "losses",
    "low_discrepancy_times",
    "metrics",
    "nfe",
    "register_jax_pytrees",
    "sample",
    "samplers",
    "schedules",
    "stratified_times",
    "timesampling",
    "training_inputs",
    "transitions",
    "uncond_evaluations",
    "uniform_times",
    "weighting",
    "weighting_from_dict",
]
