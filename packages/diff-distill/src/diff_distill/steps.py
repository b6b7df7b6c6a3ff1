"""One iteration of moment matching as diff-pixel trainer phases (spec §5.2–5.4).

:func:`make_phases` returns the :class:`~diff_pixel.train.Phase` list for
``Trainer(MomentMatchingModule, None, ..., phases=..., extra=initial_extra(...))``:

* alternating (MM Algorithm 2): ``aux_steps_per_student_step`` phases ``aux{i}`` (optimiser
  ``aux``: regression of g_φ(z_s) onto the student's x̃ and the teacher), then phase ``student``
  (optimiser ``student``: the surrogate whose gradient moves x̃ along g_φ − x̂_θ, with the
  *updated* φ); each phase draws fresh inputs unless ``share_draws``;
* param_space (MM Algorithm 3): one phase ``student``: half-batch A gives the teacher-loss
  gradient G (one teacher backward), half-batch B the surrogate through one teacher JVP along
  v = −Λ⁻¹G.

Training inputs (§5.2), per example j with key k_j = ``example_keys(key, index)[j]``:
s ~ U(0, 1) (stream 3), t = min(s + u/k, 1) (u: stream 4), ε (stream 1), z_t = α_t x + σ_t ε
on *real* data, x̃ = g_η(z_t, λ_t), z_s = DDIM-η(z_t, sg(x̃), λ_t, λ_s, n) with n from stream 5.
The student's gradient flows only through x̃, never through z_s. The teacher is frozen: an NNX
teacher travels as a :class:`~diff_distill.teacher.ParametricTeacher` in the trainer's ``aux``
argument; any other protocol denoiser (diff-core's exact mixture) is closed over. Everything
runs in at least float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from diff_distill.config import MomentMatchingConfig
from diff_distill.losses import (
    aux_loss,
    moment_gap,
    moment_weight,
    student_surrogate,
)
from diff_distill.param_space import (
    param_space_direction,
    param_space_surrogate,
    teacher_loss_grad,
    tree_dot,
)
from diff_distill.posterior import posterior_sample
from diff_distill.teacher import ParametricTeacher
from diff_distill.times import time_pairs_from_uniforms
from diff_pixel.losses import example_keys, noise_batch
from diff_pixel.train import Phase
from diff_protocol import denoise, diffuse, jax_normal, to_x_eps

__all__ = ["draw_inputs", "net_x", "initial_extra", "make_phases", "split_sizes"]

_S_STREAM, _T_STREAM, _POST_STREAM = 3, 4, 5
_DROPOUT_STUDENT, _DROPOUT_SHARED = 101, 102


def split_sizes(batch_size: int, param_split: float) -> tuple[int, int]:
    """Sizes of half-batches A and B of the parameter-space variant (each ≥ 1)."""
    if batch_size < 2:
        raise ValueError(
            f"batch_size must be >= 2 for the param_space variant (independent half-batches A "
            f"and B), got {batch_size}"
        )
    n_a = min(max(int(round(batch_size * param_split)), 1), batch_size - 1)
    return n_a, batch_size - n_a


def initial_extra(config: MomentMatchingConfig, nu: Any = None) -> dict[str, Any]:
    """Method state kept in the train state: the student-update count, the shared draw key
    (``share_draws``) and the frozen preconditioner ν (``precond="adam"``)."""
    extra: dict[str, Any] = {"iteration": jnp.zeros((), jnp.int32)}
    if config.share_draws:
        extra["draw_key"] = jax.random.key_data(jax.random.key(0))
    if config.precond == "adam":
        if nu is None:
            raise ValueError(
                "precond 'adam' needs the teacher's Adam second moment nu; got none (pass nu= "
                "or use precond='identity')"
            )
        extra["nu"] = nu
    return extra


def _uniform(keys: jax.Array, stream: int) -> jax.Array:
    return jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, stream), ()))(keys)


def _normal(keys: jax.Array, shape: tuple[int, ...], stream: int, dtype: Any) -> jax.Array:
    return jax.vmap(lambda k: jax_normal(jax.random.fold_in(k, stream), tuple(shape[1:]), dtype))(
        keys
    )


def _cond_of(batch: Mapping[str, Any], conditional: bool) -> Any:
    if not conditional or "label" not in batch:
        return None
    from diff_pixel.models import Cond

    return Cond(label=batch["label"])


def net_x(net: Any, z: jax.Array, lam: jax.Array, cond: Any, dropout_key: Any) -> jax.Array:
    """x̂ of an NNX network ``net(z, λ, cond, *, dropout_key)`` whatever it predicts."""
    out = net(z, lam, cond, dropout_key=dropout_key)
    return to_x_eps(out, z, lam, net.prediction)[0]


def draw_inputs(
    student: Any,
    x: jax.Array,
    index: jax.Array,
    key: jax.Array,
    *,
    config: MomentMatchingConfig,
    schedule: Any,
    cond: Any = None,
    student_grad: bool = True,
) -> dict[str, Any]:
    """Spec §5.2 for the examples ``index`` of ``x`` (module docstring)."""
    dt = jnp.promote_types(x.dtype, jnp.float32)
    x = x.astype(dt)
    keys = example_keys(key, index)
    t, s = time_pairs_from_uniforms(
        _uniform(keys, _S_STREAM), _uniform(keys, _T_STREAM), config.k, config.time_sampling
    )
    lam_t = jnp.asarray(schedule.logsnr(t), dt)
    lam_s = jnp.asarray(schedule.logsnr(s), dt)
    z_t = diffuse(x, noise_batch(keys, x.shape, dt), lam_t)
    dk = jax.random.fold_in(key, _DROPOUT_STUDENT) if config.dropout > 0 else None
    x_tilde = net_x(student, z_t, lam_t, cond, dk)
    if not student_grad:
        x_tilde = jax.lax.stop_gradient(x_tilde)
    n = _normal(keys, x.shape, _POST_STREAM, dt)
    z_s = posterior_sample(
        z_t, jax.lax.stop_gradient(x_tilde), lam_t, lam_s, n, eta=config.eta_posterior
    )
    return {"x_tilde": x_tilde, "z_s": z_s, "logsnr_s": lam_s, "logsnr_t": lam_t, "cond": cond}


def make_phases(
    config: MomentMatchingConfig,
    *,
    schedule: Any,
    teacher: Any = None,
    teacher_in_aux: bool = False,
    conditional: bool = True,
) -> list[Phase]:
    """The trainer phases of ``config`` (module docstring).

    Args:
      config: the method's settings.
      schedule: the teacher's schedule (λ of t).
      teacher: a protocol denoiser closed over by the losses (diff-core's exact mixture), or
        None with ``teacher_in_aux`` (a :class:`ParametricTeacher` passed as the trainer's aux).
      conditional: give the networks ``Cond(label=batch["label"])`` when batches have labels.
    """
    cfg = config
    if not isinstance(cfg, MomentMatchingConfig):
        raise TypeError(
            f"make_phases: config must be a MomentMatchingConfig, got {type(cfg).__name__}"
        )
    if (teacher is None) != teacher_in_aux:
        raise ValueError(
            "make_phases: teacher must be given exactly when teacher_in_aux is False, got "
            f"teacher={type(teacher).__name__}, teacher_in_aux={teacher_in_aux}"
        )
    if cfg.variant == "param_space" and not teacher_in_aux:
        raise ValueError(
            "teacher must be a ParametricTeacher (an NNX network or ParametricTeacher.from_mixture)"
            f" for the param_space variant, got {type(teacher).__name__}"
        )

    def teacher_x(aux: Any, z: jax.Array, lam: jax.Array, cond: Any, dk: Any) -> jax.Array:
        net = aux if teacher_in_aux else teacher
        if cfg.guidance_scale != 1.0:
            from diff_core.guidance import guided

            if cond is None:
                raise ValueError(
                    "guidance_scale != 1 needs a class-conditional teacher and labelled data"
                )
            g = guided(net, cfg.guidance_scale, null_cond=lambda c: c.null())
            out = denoise(g, z, lam, cond)[0]
        elif isinstance(net, ParametricTeacher):
            out = net.x_hat(net.params, z, lam, cond, dk)
        else:
            out = denoise(net, z, lam, cond)[0]
        return jax.lax.stop_gradient(out)

    def weight_of(lam: jax.Array) -> jax.Array:
        return moment_weight(lam, cfg.weighting, cfg.weighting_bias).astype(lam.dtype)

    def shared_key(key: jax.Array) -> Any:
        return jax.random.fold_in(key, _DROPOUT_SHARED) if cfg.dropout > 0 else None

    def aux_phase(model, batch, key, aux, extra):
        cond = _cond_of(batch, conditional)
        d = draw_inputs(
            model.student,
            jnp.asarray(batch["x"]),
            batch["index"],
            key,
            config=cfg,
            schedule=schedule,
            cond=cond,
            student_grad=False,
        )
        dk = shared_key(key)
        a = net_x(model.aux, d["z_s"], d["logsnr_s"], cond, dk)
        x_te = teacher_x(aux, d["z_s"], d["logsnr_s"], cond, dk)
        w = weight_of(d["logsnr_s"])
        loss = aux_loss(a, d["x_tilde"], x_te, w, teacher_reg=cfg.teacher_reg)
        metrics = {"moment_gap": moment_gap(jax.lax.stop_gradient(a), x_te, w)}
        new_extra = dict(extra)
        if cfg.share_draws:
            new_extra["draw_key"] = jax.random.key_data(key)
        return loss, metrics, new_extra

    def student_phase(model, batch, key, aux, extra):
        cond = _cond_of(batch, conditional)
        if cfg.share_draws:
            key = jax.random.wrap_key_data(extra["draw_key"])
        d = draw_inputs(
            model.student,
            jnp.asarray(batch["x"]),
            batch["index"],
            key,
            config=cfg,
            schedule=schedule,
            cond=cond,
        )
        dk = shared_key(key)
        a = jax.lax.stop_gradient(net_x(model.aux, d["z_s"], d["logsnr_s"], cond, dk))
        x_te = teacher_x(aux, d["z_s"], d["logsnr_s"], cond, dk)
        w = weight_of(d["logsnr_s"])
        loss = student_surrogate(d["x_tilde"], a, x_te, w, normalize=cfg.normalize)
        direction = a - x_te
        metrics = {
            "moment_gap": moment_gap(a, x_te, w),
            "x_abs_mean": jnp.mean(jnp.abs(jax.lax.stop_gradient(d["x_tilde"]))),
            "nonfinite_direction": 1.0 - jnp.all(jnp.isfinite(direction)).astype(jnp.float32),
            "nonfinite_student": 1.0 - jnp.all(jnp.isfinite(d["x_tilde"])).astype(jnp.float32),
        }
        new_extra = dict(extra)
        new_extra["iteration"] = extra["iteration"] + 1
        return loss, metrics, new_extra

    def param_space_phase(model, batch, key, aux, extra):
        teacher_p: ParametricTeacher = aux
        x = jnp.asarray(batch["x"])
        index = batch["index"]
        n_a, _ = split_sizes(x.shape[0], cfg.param_split)
        cond = _cond_of(batch, conditional)

        def rows(tree, sl):
            return None if tree is None else jax.tree.map(lambda v: v[sl], tree)

        sl_a, sl_b = slice(0, n_a), slice(n_a, None)
        da = draw_inputs(
            model.student,
            x[sl_a],
            index[sl_a],
            key,
            config=cfg,
            schedule=schedule,
            cond=rows(cond, sl_a),
            student_grad=False,
        )
        db = draw_inputs(
            model.student,
            x[sl_b],
            index[sl_b],
            key,
            config=cfg,
            schedule=schedule,
            cond=rows(cond, sl_b),
        )
        w_a, w_b = weight_of(da["logsnr_s"]), weight_of(db["logsnr_s"])
        g = teacher_loss_grad(teacher_p, da["z_s"], da["logsnr_s"], da["x_tilde"], w_a, da["cond"])
        v = param_space_direction(g, precond=cfg.precond, nu=extra.get("nu"))
        loss = param_space_surrogate(
            db["x_tilde"], teacher_p, v, db["z_s"], db["logsnr_s"], w_b, db["cond"]
        )
        g_b = teacher_loss_grad(
            teacher_p,
            db["z_s"],
            db["logsnr_s"],
            jax.lax.stop_gradient(db["x_tilde"]),
            w_b,
            db["cond"],
        )
        g2 = tree_dot(g, g)
        metrics = {
            "g_norm2": g2,
            "g_dot_ab": tree_dot(g, g_b),
            "x_abs_mean": jnp.mean(jnp.abs(jax.lax.stop_gradient(db["x_tilde"]))),
            "nonfinite_g": 1.0 - jnp.isfinite(g2).astype(jnp.float32),
        }
        new_extra = dict(extra)
        new_extra["iteration"] = extra["iteration"] + 1
        return loss, metrics, new_extra

    if cfg.variant == "param_space":
        return [Phase(param_space_phase, ("student",), name="student", updates_extra=True)]
    phases = [
        Phase(aux_phase, ("aux",), name=f"aux{i}", updates_extra=True)
        for i in range(cfg.aux_steps_per_student_step)
    ]
    phases.append(Phase(student_phase, ("student",), name="student", updates_extra=True))
    return phases
