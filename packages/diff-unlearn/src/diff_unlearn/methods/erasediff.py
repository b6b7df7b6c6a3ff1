r"""``erasediff`` — EraseDiff (Wu et al., arXiv 2401.05779; JingWu321/EraseDiff).

Per step, from the current parameters θᵢ: run K plain gradient steps (lr = the outer learning
rate) on the forgetting loss ``L_f = forget_remap`` from θᵢ to φ_K (a functional copy: θᵢ is never
modified, so the outer gradient is taken at θᵢ exactly); then update with

.. math::  g = \nabla L_r(\theta_i) + \alpha\,(\nabla L_f(\theta_i) - \nabla L_f(\phi_K)),

the first-order update of the value-function constraint ``L_f(θ) − min_φ L_f(φ)`` (our reading of
the EraseDiff paper; its exact update is not confirmed). ``L_r = retain_data``.
``variant="unified"`` uses ``∇L_r + α∇L_f``, what ``L_r + α(L_f − sg[L_f*])`` of the unified
re-implementation (RamailoTech/msu_unlearningalgorithm) amounts to. Every inner step and the final
gradient use the step's forget batch and key: φ_K descends the same minibatch objective.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
from flax import nnx

from diff_unlearn.losses import LossSetup, check_target, forget_remap, retain_data
from diff_unlearn.methods.base import (
    MethodLoss,
    UnlearnMethod,
    batch_part,
    check_weight,
    param_split,
    with_gradient,
)

__all__ = ["erasediff", "inner_descent"]

_VARIANTS = ("first_order", "unified")


def inner_descent(f: Any, params: Any, steps: int, lr: float) -> tuple[Any, list[Any]]:
    """``steps`` plain gradient steps ``φ ← φ − lr ∇f(φ)`` from ``params``; returns φ_K and the
    losses ``f(φ_0), …, f(φ_{K−1})``."""
    phi, values = params, []
    for _ in range(steps):
        v, g = jax.value_and_grad(f)(phi)
        phi = jax.tree.map(lambda p, d: p - lr * d, phi, g)
        values.append(v)
    return phi, values


@dataclass(frozen=True)
class EraseDiffLoss(MethodLoss):
    alpha: float = 0.1
    inner_steps: int = 2
    inner_lr: float = 2e-4
    target: Any = "random_other"
    variant: str = "first_order"
    method: str = field(default="erasediff", init=False)

    def __call__(self, model, batch, key, aux, extra):
        original = aux["original"]
        fb, rb = batch_part(batch, "forget"), batch_part(batch, "retain")
        graphdef, params, rest = param_split(model)

        def l_f(p):
            return forget_remap(
                self.setup, nnx.merge(graphdef, p, rest), original, fb, key, self.target
            )[0]

        lr_, _ = retain_data(self.setup, model, rb, key)
        lf = l_f(params)
        metrics = {"forget_loss": lf, "retain_loss": lr_}
        if self.variant == "unified":
            return lr_ + self.alpha * lf, metrics, extra
        theta_i = jax.lax.stop_gradient(params)
        phi, _ = inner_descent(l_f, theta_i, self.inner_steps, self.inner_lr)
        lf_phi, g_phi = jax.value_and_grad(l_f)(phi)
        metrics["forget_loss_inner"] = lf_phi
        # gradient ∇L_r(θᵢ) + α∇L_f(θᵢ) from the loss itself, − α∇L_f(φ_K) through the surrogate
        surrogate = with_gradient(0.0, params, jax.tree.map(lambda g: -self.alpha * g, g_phi))
        return lr_ + self.alpha * lf + surrogate, metrics, extra


def erasediff(
    setup: LossSetup,
    alpha: float = 0.1,
    inner_steps: int = 2,
    lr: float = 2e-4,
    target: Any = "random_other",
    variant: str = "first_order",
) -> UnlearnMethod:
    """EraseDiff with α = 0.1, K = 2 inner steps at the outer learning rate ``lr`` (our
    defaults)."""
    alpha = check_weight("erasediff", "alpha", alpha)
    if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 1:
        raise ValueError(f"erasediff: K (inner steps) must be >= 1, got {inner_steps!r}")
    if variant not in _VARIANTS:
        raise ValueError(f"erasediff: variant must be one of {_VARIANTS}, got {variant!r}")
    lr = check_weight("erasediff", "lr", lr)
    target = check_target("erasediff", target, setup.num_classes)
    return UnlearnMethod(
        "erasediff",
        EraseDiffLoss(setup, alpha, inner_steps, lr, target, variant),
        hparams=(("alpha", alpha), ("K", inner_steps), ("variant", variant)),
    )
