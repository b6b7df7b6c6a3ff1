"""diff-distill: moment matching distillation of diffusion models (Salimans, Mensink, Heek &
Hoogeboom, *Multistep Distillation of Diffusion Models via Moment Matching*, arXiv 2406.04103).

Both variants — alternating optimisation with an auxiliary denoiser (MM Algorithm 2) and moment
matching in the teacher's parameter space (MM Algorithm 3) — and the k-step stochastic student
sampler they train (MM Algorithm 1), registered as the ``moment_matching`` sampler under the
``diff.samplers`` entry points. Built on diff-pixel's trainer (named optimisers, a frozen teacher,
method state) and diff-core's sampling driver; teachers can be diff-pixel runs, any NNX denoiser,
any diff-protocol denoiser (alternating) or diff-core's exact mixtures.

Attributes are imported lazily: ``import diff_distill`` (and loading its sampler through the
entry points) imports no JAX until a JAX-based piece is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # configuration
    "MomentMatchingConfig": "config",
    "PRESETS": "config",
    "FIELD_STATUS": "config",
    "UNCONFIRMED": "config",
    # sampler (array API, no framework)
    "moment_matching": "samplers.moment_matching",
    "sample": "samplers.moment_matching",
    "student_grid": "samplers.moment_matching",
    # training inputs and losses (JAX)
    "sample_time_pairs": "times",
    "time_pairs_from_uniforms": "times",
    "posterior_sample": "posterior",
    "moment_weight": "losses",
    "aux_loss": "losses",
    "normalize_direction": "losses",
    "student_surrogate": "losses",
    "moment_gap": "losses",
    "teacher_loss_grad": "param_space",
    "param_space_direction": "param_space",
    "param_space_surrogate": "param_space",
    # teachers, module, steps, runs
    "ParametricTeacher": "teacher",
    "LoadedTeacher": "teacher",
    "load_teacher": "teacher",
    "teacher_fingerprint": "teacher",
    "teacher_adam_nu": "teacher",
    "MomentMatchingModule": "module",
    "make_phases": "steps",
    "draw_inputs": "steps",
    "initial_extra": "steps",
    "make_trainer": "driver",
    "distill": "driver",
    "optimizer": "driver",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'diff_distill' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"diff_distill.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
