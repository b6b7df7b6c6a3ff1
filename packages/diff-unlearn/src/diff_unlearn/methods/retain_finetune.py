"""``retain_finetune``: keep training on retain data only (forgets nothing on purpose; the
reference for how much plain fine-tuning moves the model)."""

from __future__ import annotations

from dataclasses import dataclass, field

from diff_unlearn.losses import LossSetup, retain_data
from diff_unlearn.methods.base import MethodLoss, UnlearnMethod, batch_part

__all__ = ["retain_finetune"]


@dataclass(frozen=True)
class RetainFinetuneLoss(MethodLoss):
    method: str = field(default="retain_finetune", init=False)

    def __call__(self, model, batch, key, aux, extra):
        lr, _ = retain_data(self.setup, model, batch_part(batch, "retain"), key)
        return lr, {"retain_loss": lr}, extra


def retain_finetune(setup: LossSetup) -> UnlearnMethod:
    """Minimise ``retain_data``."""
    return UnlearnMethod("retain_finetune", RetainFinetuneLoss(setup))
