"""diff-rolling: rolling diffusion models (Ruhe et al., arXiv 2402.09470) on the diff-* platform."""

from .data.gaussian import GaussianVideo
from .local_time import (
    LocalTimeDraw,
    LocalTimeRange,
    init_times,
    local_times,
    rolling_times,
    sample_local_times,
)
from .models import VideoDenoiser, space_time_model
from .sampling import (
    LocalTimeTable,
    RolloutConfig,
    RolloutResult,
    equal_cost_steps,
    local_time_table,
    rolling_nfe,
    rolling_window,
    rollout,
    standard_nfe,
    standard_rollout,
    window_step,
)

__version__ = "0.1.0"

__all__ = [
    "GaussianVideo",
    "LocalTimeDraw",
    "LocalTimeRange",
    "LocalTimeTable",
    "RolloutConfig",
    "RolloutResult",
    "VideoDenoiser",
    "__version__",
    "equal_cost_steps",
    "init_times",
    "local_time_table",
    "local_times",
    "rolling_nfe",
    "rolling_times",
    "rolling_window",
    "rollout",
    "sample_local_times",
    "space_time_model",
    "standard_nfe",
    "standard_rollout",
    "window_step",
]
