"""``neg_grad``: gradient ascent on the forget data plus the retain loss (the collapse
reference: unbounded, it destroys the model)."""

from __future__ import annotations

from dataclasses import dataclass, field

from diff_unlearn import losses
from diff_unlearn.losses import LossSetup
from diff_unlearn.methods.base import MethodLoss, UnlearnMethod, batch_part, check_weight

__all__ = ["neg_grad"]


@dataclass(frozen=True)
class NegGradLoss(MethodLoss):
    alpha: float = 1.0
    method: str = field(default="neg_grad", init=False)

    def __call__(self, model, batch, key, aux, extra):
        lf, _ = losses.neg_grad(self.setup, model, batch_part(batch, "forget"), key)
        lr, _ = losses.retain_data(self.setup, model, batch_part(batch, "retain"), key)
        return lf + self.alpha * lr, {"forget_loss": -lf, "retain_loss": lr}, extra


def neg_grad(setup: LossSetup, alpha: float = 1.0) -> UnlearnMethod:
    """Minimise ``−l_diff(θ; D_f) + α l_diff(θ; D_r)`` (α = 1, our default)."""
    alpha = check_weight("neg_grad", "alpha", alpha)
    return UnlearnMethod("neg_grad", NegGradLoss(setup, alpha), hparams=(("alpha", alpha),))
