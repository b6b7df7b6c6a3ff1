"""diff-consistency: Multistep Consistency Models (Heek, Hoogeboom & Salimans, arXiv 2403.06807).

Multistep consistency training (CT) and distillation (CD) with the teacher-step curriculum and
inverse-DDIM targets, the deterministic multistep sampler (MCM Algorithm 2) and the adjusted DDIM
sampler aDDIM (Algorithm 3); single-step consistency models, an iCT-like setting and TRACT as
configurations of the same loss. Built on diff-pixel's trainer and parameterisation wrappers and
diff-core's sampling driver.

Attributes are imported lazily, so ``import diff_consistency`` (and loading its samplers through
the ``diff.samplers`` entry points) imports no JAX until a JAX-based piece is used.
"""

from __future__ import annotations

import importlib
from typing import Any

# The array-API pieces import no framework; imported eagerly so that the function ``addim``
# (not its module) is the package attribute.
from .addim import (
    AnalyticVariance,
    EmpiricalVariance,
    OracleVariance,
    addim,
    addim_step,
    estimate_variance_table,
)

__version__ = "0.1.0"

_EXPORTS = {
    # config
    "ConsistencyConfig": "config",
    "PRESETS": "config",
    "FIELD_STATUS": "config",
    # samplers (array API)
    "multistep_consistency": "samplers.multistep",
    "student_grid": "samplers.multistep",
    "sample": "samplers.multistep",
    "consistency_renoise": "samplers.renoise",
    "renoise_grid": "samplers.renoise",
    # JAX pieces
    "SegmentTimes": "curriculum",
    "n_teacher": "curriculum",
    "segments": "curriculum",
    "segment_indices": "curriculum",
    "teacher_grid": "curriculum",
    "teacher_times": "curriculum",
    "sample_segment_times": "curriculum",
    "logsnr_at": "curriculum",
    "pseudo_huber": "norms",
    "consistency_weight": "norms",
    "consistency_target": "targets",
    "consistency_loss": "losses",
    "consistency_loss_per_example": "losses",
    "oracle_student": "oracle",
    "OracleStudent": "oracle",
    "make_phases": "steps",
    "initial_extra": "steps",
    "make_student": "driver",
    "train_consistency": "driver",
    "tract": "driver",
    "teacher_fingerprint": "driver",
}

__all__ = [
    "AnalyticVariance",
    "ConsistencyConfig",
    "EmpiricalVariance",
    "FIELD_STATUS",
    "OracleStudent",
    "OracleVariance",
    "PRESETS",
    "SegmentTimes",
    "__version__",
    "addim",
    "addim_step",
    "consistency_loss",
    "consistency_loss_per_example",
    "consistency_renoise",
    "consistency_target",
    "consistency_weight",
    "estimate_variance_table",
    "initial_extra",
    "logsnr_at",
    "make_phases",
    "make_student",
    "multistep_consistency",
    "n_teacher",
    "oracle_student",
    "pseudo_huber",
    "renoise_grid",
    "sample",
    "sample_segment_times",
    "segment_indices",
    "segments",
    "student_grid",
    "teacher_fingerprint",
    "teacher_grid",
    "teacher_times",
    "tract",
    "train_consistency",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'diff_consistency' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"diff_consistency.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
