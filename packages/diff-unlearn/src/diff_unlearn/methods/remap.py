"""``remap``: remap the forgotten condition onto the original model's output under another
condition, keeping the rest with retain *data* (the naive remapping baseline, SalUn-like without
the mask)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diff_unlearn.losses import LossSetup, check_target, forget_remap, retain_data
from diff_unlearn.methods.base import MethodLoss, UnlearnMethod, batch_part, check_weight

__all__ = ["remap"]


@dataclass(frozen=True)
class RemapLoss(MethodLoss):
    alpha: float = 1.0
    target: Any = "random_other"
    method: str = field(default="remap", init=False)

    def __call__(self, model, batch, key, aux, extra):
        lf, _ = forget_remap(
            self.setup, model, aux["original"], batch_part(batch, "forget"), key, self.target
        )
        lr, _ = retain_data(self.setup, model, batch_part(batch, "retain"), key)
        return lf + self.alpha * lr, {"forget_loss": lf, "retain_loss": lr}, extra


def remap(setup: LossSetup, alpha: float = 1.0, target: Any = "random_other") -> UnlearnMethod:
    """Minimise ``forget_remap + α retain_data`` (α = 1, target ``random_other``: our defaults)."""
    alpha = check_weight("remap", "alpha", alpha)
    target = check_target("remap", target, setup.num_classes)
    return UnlearnMethod(
        "remap", RemapLoss(setup, alpha, target), hparams=(("alpha", alpha), ("target", target))
    )
