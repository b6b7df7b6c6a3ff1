r"""Moment matching in parameter space (MM Algorithm 3, arXiv 2406.04103).

If the teacher θ is a stationary point of its denoising loss on real data, the student's
conditional moments match the teacher's exactly when the gradient of the teacher's loss on
*student* data vanishes:

    G(η) = E_g ∇_θ ℓ(θ; x̃, z_s),    ℓ = w mean_d (x̃ − x̂_θ(z_s))²

The student minimises ½‖G‖²_{Λ⁻¹}. With z_s held fixed, ∂G/∂x̃ = −2w J_θᵀ/D (J_θ = ∂x̂_θ/∂θ), so
∇_η ½‖G‖²_{Λ⁻¹} = E[2w (∂x̃/∂η)ᵀ J_θ v]/D with v = −Λ⁻¹G. Two independent half-batches make it
unbiased: G from batch A (one teacher backward), J_θ v on batch B (one forward-mode JVP), and the
surrogate mean_b w_b mean_d x̃_B · sg(J_θ v) whose gradient is half of the above (¼∇‖G‖²_{Λ⁻¹}).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from diff_distill.config import PRECONDITIONERS
from diff_distill.losses import mean_d
from diff_distill.teacher import ParametricTeacher

__all__ = [
    "param_space_direction",
    "param_space_surrogate",
    "teacher_loss",
    "teacher_loss_grad",
    "tree_dot",
]


def _check_teacher(func: str, teacher: Any) -> ParametricTeacher:
    if not isinstance(teacher, ParametricTeacher):
        raise TypeError(
            f"{func}: teacher must be a ParametricTeacher (ParametricTeacher.from_nnx(model) or "
            f".from_mixture(mixture)), got {type(teacher).__name__}"
        )
    return teacher


def teacher_loss(
    params: Any,
    teacher: ParametricTeacher,
    z_s: jax.Array,
    logsnr_s: jax.Array,
    x_gen: jax.Array,
    weight: jax.Array,
    cond: Any = None,
) -> jax.Array:
    """mean_b w_b mean_d (sg(x_gen) − x̂_params(z_s, λ_s, cond))²."""
    x_hat = teacher.x_hat(params, z_s, logsnr_s, cond)
    err = jax.lax.stop_gradient(x_gen) - x_hat
    return jnp.mean(weight * mean_d(jnp.square(err)))


def teacher_loss_grad(
    teacher: ParametricTeacher,
    z_s: jax.Array,
    logsnr_s: jax.Array,
    x_gen: jax.Array,
    weight: jax.Array,
    cond: Any = None,
) -> Any:
    """G = ∇_θ mean_b w_b mean_d (sg(x_gen) − x̂_θ(z_s, λ_s, cond))² at the teacher's θ
    (a pytree like ``teacher.params``)."""
    teacher = _check_teacher("teacher_loss_grad", teacher)
    params = jax.lax.stop_gradient(teacher.params)
    return jax.grad(teacher_loss)(params, teacher, z_s, logsnr_s, x_gen, weight, cond)


def tree_dot(a: Any, b: Any) -> jax.Array:
    """⟨a, b⟩ summed over every leaf."""
    leaves = jax.tree.leaves(jax.tree.map(lambda u, v: jnp.sum(u * v), a, b))
    return sum(leaves, jnp.zeros((), jnp.float32))


def param_space_direction(
    G: Any, *, precond: str = "identity", nu: Any = None, eps: float = 1e-8
) -> Any:
    """v = −G (``identity``) or −G/(√ν + eps) (``adam``: ν = the teacher's Adam second moment)."""
    if precond == "identity":
        return jax.tree.map(lambda g: -g, G)
    if precond == "adam":
        if nu is None:
            raise ValueError(
                "param_space_direction: precond 'adam' needs nu (the teacher's Adam second "
                "moment), got None"
            )
        return jax.tree.map(lambda g, n: -g / (jnp.sqrt(n) + eps), G, nu)
    raise ValueError(
        f"param_space_direction: precond must be one of {', '.join(PRECONDITIONERS)}, "
        f"got {precond!r}"
    )


def param_space_surrogate(
    student_x: jax.Array,
    teacher: ParametricTeacher,
    v: Any,
    z_s: jax.Array,
    logsnr_s: jax.Array,
    weight: jax.Array,
    cond: Any = None,
) -> jax.Array:
    """u = jvp(θ ↦ x̂_θ(z_s, λ_s, cond), θ_T, v); returns mean_b w_b mean_d x̃ · sg(u).

    ``z_s`` must be built from ``stop_gradient(x̃)`` (the student's gradient flows only through
    x̃ here)."""
    teacher = _check_teacher("param_space_surrogate", teacher)
    params = jax.lax.stop_gradient(teacher.params)
    v = jax.lax.stop_gradient(v)
    z_s = jax.lax.stop_gradient(z_s)

    def f(p):
        return teacher.x_hat(p, z_s, logsnr_s, cond)

    _, u = jax.jvp(f, (params,), (v,))
    u = jax.lax.stop_gradient(u)
    return jnp.mean(weight * mean_d(student_x * u))
