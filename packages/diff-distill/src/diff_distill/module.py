"""``MomentMatchingModule``: what diff-pixel's trainer trains and checkpoints.

The student g_η and (alternating variant) the auxiliary denoiser g_φ in one NNX module. The
trainer's named optimisers ``student`` and ``aux`` select them by path (``nnx.PathContains``);
the teacher is not part of it (it travels as the trainer's frozen ``aux`` argument). Registered
under ``diff.models`` as ``moment_matching_pair``, so ``diff_pixel.train.Trainer.restore(run)``
rebuilds it and ``.student`` is the distilled model.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
from flax import nnx

__all__ = ["MomentMatchingModule"]


class MomentMatchingModule(nnx.Module):
    """Student (and auxiliary) of moment matching distillation.

    Args:
      student: the student network ``student(z, logsnr, cond, *, dropout_key)`` with a
        ``prediction`` attribute (any diff-pixel backbone, wrapper or ``MLPDenoiser``).
      aux: the auxiliary denoiser (same call), or None for the parameter-space variant.
    """

    registry_name: ClassVar[str] = "moment_matching_pair"

    def __init__(self, student: nnx.Module, aux: nnx.Module | None = None) -> None:
        for name, net in (("student", student), ("aux", aux)):
            if net is None and name == "aux":
                continue
            if not isinstance(net, nnx.Module) or not callable(net):
                raise TypeError(
                    f"MomentMatchingModule: {name} must be a callable nnx.Module, "
                    f"got {type(net).__name__}"
                )
        self.student = student
        self.aux = aux
        self.prediction = getattr(student, "prediction", "v")

    def __call__(
        self, z: jax.Array, logsnr: Any, cond: Any = None, *, dropout_key: Any = None
    ) -> jax.Array:
        """The student's output (so the pair samples like its student)."""
        return self.student(z, logsnr, cond, dropout_key=dropout_key)

    def to_config(self) -> dict[str, Any]:
        from diff_pixel.models import describe

        return {
            "student": describe(self.student),
            "aux": None if self.aux is None else describe(self.aux),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], *, seed: int = 0) -> MomentMatchingModule:
        from diff_pixel.models import from_description

        student = from_description(config["student"], seed=seed)
        aux = config.get("aux")
        return cls(student, None if aux is None else from_description(aux, seed=seed))
