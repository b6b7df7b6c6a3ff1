"""Samplers of this package as diff-protocol ``SamplerStep`` factories, registered under the
``diff.samplers`` entry points and run by diff-core's one driver (``diff_core.sample``):

* ``multistep_consistency`` — MCM Algorithm 2 (:mod:`.multistep`);
* ``addim`` — MCM Algorithm 3 (:mod:`.addim`);
* ``consistency_renoise`` — Song et al.'s multistep consistency sampler (:mod:`.renoise`).

None of these modules imports a framework; the steps use the array API of their inputs.
"""

from .addim import addim
from .multistep import multistep_consistency, sample, student_grid
from .renoise import consistency_renoise, renoise_grid

__all__ = [
    "addim",
    "consistency_renoise",
    "multistep_consistency",
    "renoise_grid",
    "sample",
    "student_grid",
]
