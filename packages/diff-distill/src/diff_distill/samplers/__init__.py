"""The student sampler as a diff-protocol ``SamplerStep`` factory, registered under the
``diff.samplers`` entry points as ``moment_matching`` and run by diff-core's driver. Imports no
framework."""

from .moment_matching import moment_matching, sample, student_grid

__all__ = ["moment_matching", "sample", "student_grid"]
