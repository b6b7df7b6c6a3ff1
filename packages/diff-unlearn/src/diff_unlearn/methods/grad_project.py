r"""``grad_project`` (this project's second method): remap-to-forget with the retain-distillation
gradient protected by projection, in the style of A-GEM (arXiv 1812.00420) and PCGrad
(arXiv 2001.06782).

With ``g_f = ∇ forget_remap`` and ``g_r = ∇ retain_distill``: if ``⟨g_f, g_r⟩ < 0`` and
``‖g_r‖² > 10⁻¹² ‖g_f‖²``, remove from g_f its component against g_r,

.. math::  g_f \leftarrow g_f - \frac{\langle g_f, g_r\rangle}{\lVert g_r\rVert^2}\, g_r,

then update with ``g_f + β g_r``. At θ = θ₀, g_r is exactly 0 and nothing is projected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from diff_unlearn.losses import LossSetup, check_target, forget_remap, retain_distill
from diff_unlearn.methods.base import (
    MethodLoss,
    UnlearnMethod,
    batch_part,
    check_weight,
    global_dot,
    param_split,
    with_gradient,
)

__all__ = ["grad_project", "project"]


def project(g_f: Any, g_r: Any, tol: float = 1e-12) -> tuple[Any, jax.Array]:
    """``(g_f projected off g_r where they conflict, whether it was projected)``.

    The result equals ``g_f`` bitwise when ``⟨g_f, g_r⟩ ≥ 0`` or ``‖g_r‖² ≤ tol ‖g_f‖²``.
    """
    dot = global_dot(g_f, g_r)
    rr = global_dot(g_r, g_r)
    ff = global_dot(g_f, g_f)
    conflict = (dot < 0) & (rr > tol * ff)
    coef = jnp.where(conflict, dot / jnp.where(rr > 0, rr, 1.0), 0.0)
    out = jax.tree.map(lambda f, r: jnp.where(conflict, f - coef * r, f), g_f, g_r)
    return out, conflict


@dataclass(frozen=True)
class GradProjectLoss(MethodLoss):
    beta: float = 1.0
    target: Any = "random_other"
    include_null: bool = True
    method: str = field(default="grad_project", init=False)

    def __call__(self, model, batch, key, aux, extra):
        original = aux["original"]
        fb, rb = batch_part(batch, "forget"), batch_part(batch, "retain")
        graphdef, params, rest = param_split(model)

        def l_f(p):
            return forget_remap(
                self.setup, nnx.merge(graphdef, p, rest), original, fb, key, self.target
            )[0]

        def l_r(p):
            return retain_distill(
                self.setup, nnx.merge(graphdef, p, rest), original, rb, key, self.include_null
            )[0]

        theta = jax.lax.stop_gradient(params)
        lf, g_f = jax.value_and_grad(l_f)(theta)
        lr_, g_r = jax.value_and_grad(l_r)(theta)
        g_f, conflict = project(g_f, g_r)
        direction = jax.tree.map(lambda f, r: f + self.beta * r, g_f, g_r)
        loss = with_gradient(lf + self.beta * lr_, params, direction)
        metrics = {"forget_loss": lf, "retain_loss": lr_, "projected": conflict.astype(jnp.float32)}
        return loss, metrics, extra


def grad_project(
    setup: LossSetup, beta: float = 1.0, target: Any = "random_other", include_null: bool = True
) -> UnlearnMethod:
    """Projected remap + β retain distillation (β = 1, our default)."""
    beta = check_weight("grad_project", "beta", beta)
    target = check_target("grad_project", target, setup.num_classes)
    return UnlearnMethod(
        "grad_project",
        GradProjectLoss(setup, beta, target, bool(include_null)),
        hparams=(("beta", beta), ("target", target), ("include_null", bool(include_null))),
    )
