"""The training step of multistep consistency models as diff-pixel trainer phases.

:func:`make_phases` returns the :class:`~diff_pixel.train.Phase` list for
``Trainer(student, None, ..., phases=..., extra=initial_extra(...))``:

* phase ``student`` — MCM Algorithm 1 (spec §5.2): curriculum position from ``extra["iteration"]``
  (N, n_seg and T are traced: no recompilation as they change), per-example segment and position,
  z_t, the teacher's x̂ (CD; through diff-core's ``guided`` when ``guidance_scale != 1``) or the
  data (CT), the aDDIM/DDIM teacher step, the stop-gradient (or EMA) target network with the
  student's dropout key (synchronised dropout), the inverse-DDIM target and the loss;
* phase ``target`` (only with ``target_mode="ema"``) — after the student's update, the target EMA
  ``θ⁻ ← d θ⁻ + (1 − d) θ`` kept in ``extra["target"]`` (checkpointed with the run).

Per-example randomness follows diff-pixel's streams: example j's keys are
``fold_in(fold_in(key, step), j)``; stream 1 is the noise, stream 3 the segment, stream 4 the
position inside it. Everything of steps 3–6 runs in float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from diff_consistency.config import ConsistencyConfig
from diff_consistency.curriculum import (
    logsnr_at,
    n_teacher,
    segment_indices,
    segments,
    teacher_times,
)
from diff_consistency.losses import consistency_loss
from diff_consistency.targets import consistency_target
from diff_core import guidance as core_guidance
from diff_pixel.losses import example_keys, noise_batch
from diff_pixel.train import Phase
from diff_protocol import denoise, diffuse, to_x_eps

__all__ = ["initial_extra", "make_phases", "params_of", "with_params"]

_SEGMENT_STREAM, _POSITION_STREAM = 3, 4
_DROPOUT, _DROPOUT_TARGET = 101, 102


def params_of(model: nnx.Module) -> nnx.State:
    """The ``nnx.Param`` state of ``model`` (what the target EMA averages)."""
    return nnx.state(model, nnx.Param)


def with_params(model: nnx.Module, params: Any) -> nnx.Module:
    """A model of ``model``'s structure with its ``nnx.Param`` values replaced by ``params``."""
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)
    return nnx.merge(graphdef, params, rest)


def initial_extra(config: ConsistencyConfig, student: nnx.Module) -> dict[str, Any]:
    """The method state: the curriculum position and, with ``target_mode="ema"``, the target EMA
    (initialised to the student)."""
    extra: dict[str, Any] = {"iteration": jnp.zeros((), jnp.int32)}
    if config.target_mode == "ema":
        extra["target"] = jax.tree.map(jnp.array, params_of(student))
    return extra


def _uniform(keys: jax.Array, stream: int) -> jax.Array:
    return jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, stream), ()))(keys)


def _cond_of(batch: Mapping[str, Any], conditional: bool) -> Any:
    if not conditional or "label" not in batch:
        return None
    from diff_pixel.models import Cond

    return Cond(label=batch["label"])


def _call_x(net: Any, z: jax.Array, lam: jax.Array, cond: Any, dropout_key: Any) -> jax.Array:
    """x̂ of an NNX network (with a dropout key) or of any protocol denoiser."""
    if isinstance(net, nnx.Module):
        out = net(z, lam, cond, dropout_key=dropout_key)
        return to_x_eps(out, z, lam, net.prediction)[0]
    return denoise(net, z, lam, cond)[0]


def make_phases(
    config: ConsistencyConfig,
    *,
    schedule: Any,
    teacher: Any = None,
    teacher_in_aux: bool = False,
    conditional: bool = True,
) -> list[Phase]:
    """The trainer phases of ``config`` (module docstring).

    Args:
      config: the method's configuration.
      schedule: the teacher's schedule (λ of t; also the student's).
      teacher: CD: a protocol denoiser closed over by the loss (an exact mixture, any JAX-callable
        denoiser); None with ``teacher_in_aux`` (an NNX teacher passed as the trainer's ``aux``)
        or for CT.
      conditional: pass ``Cond(label=batch["label"])`` to the networks when the batch has labels.
    """
    cfg = config
    s_steps = cfg.student_steps
    cd = cfg.mode == "cd"
    if cd and teacher is None and not teacher_in_aux:
        raise ValueError(
            "make_phases: mode 'cd' needs a teacher (or teacher_in_aux=True), got None"
        )
    if not cd and (teacher is not None or teacher_in_aux):
        raise ValueError("make_phases: teacher must be None for mode 'ct' (CT uses the data)")

    def student_loss(model, batch, key, aux, extra):
        x = jnp.asarray(batch["x"])
        dt = jnp.promote_types(x.dtype, jnp.float32)  # steps 3-6 in at least float32
        x = x.astype(dt)
        b = x.shape[0]
        keys = example_keys(key, batch["index"])
        it = extra["iteration"]
        n_now = n_teacher(
            it,
            n_start=cfg.n_start,
            n_end=cfg.n_end,
            anneal_steps=cfg.anneal_steps,
            kind=cfg.anneal,
        )
        n_seg, big_t = segments(n_now, s_steps)
        idx = segment_indices(
            _uniform(keys, _SEGMENT_STREAM), _uniform(keys, _POSITION_STREAM), s_steps, n_seg
        )

        def lam_of(i):
            t = teacher_times(i, big_t, cfg.teacher_grid, schedule=schedule)
            return logsnr_at(schedule, t, i).astype(dt)

        lam_t, lam_s, lam_step = lam_of(idx.i_t), lam_of(idx.i_s), lam_of(idx.i_step)
        eps = noise_batch(keys, x.shape, dt)
        z_t = diffuse(x, eps, lam_t)
        cond = _cond_of(batch, conditional)
        if cd:
            net = aux if teacher_in_aux else teacher
            x_c = jax.lax.stop_gradient(_call_x(net, z_t, lam_t, cond, None))
            if cfg.guidance_scale != 1.0:
                guided = core_guidance.guided(
                    _as_denoiser(net), cfg.guidance_scale, null_cond=_null_of(cond)
                )
                x_teach = jax.lax.stop_gradient(denoise(guided, z_t, lam_t, cond)[0])
            else:
                x_teach = x_c
            if cfg.clip_x is not None:
                x_teach = jnp.clip(x_teach, -cfg.clip_x, cfg.clip_x)
            if cfg.teacher_step == "ddim":
                x_var = jnp.zeros((b,), dt)
            elif cfg.addim_variance == "per_example":
                x_var = cfg.xvar_frac * jnp.mean(jnp.square(x_c - x).reshape(b, -1), axis=-1)
            else:
                x_var = cfg.analytic_scale / (2.0 + jnp.exp(lam_t))
        else:
            x_teach, x_var = x, jnp.zeros((b,), dt)
        dk = jax.random.fold_in(key, _DROPOUT)
        dk_ref = dk if cfg.synchronized_dropout else jax.random.fold_in(key, _DROPOUT_TARGET)
        target_net = with_params(model, extra["target"]) if cfg.target_mode == "ema" else model

        def f_ref(z, lam):
            return _call_x(target_net, z, lam, cond, dk_ref)

        x_tgt, _ = consistency_target(
            f_ref,
            z_t,
            x_teach,
            x_var,
            lam_t,
            lam_s,
            lam_step,
            at_segment_end=idx.n_rel == 1,
            max_snr=cfg.addim_max_snr,
        )
        x_tgt = jax.lax.stop_gradient(x_tgt)
        student_x = _call_x(model, z_t, lam_t, cond, dk)
        loss = consistency_loss(
            student_x,
            x_tgt,
            lam_t,
            norm=cfg.norm,
            eps=cfg.huber_eps,
            loss_space=cfg.loss_space,
            weight=cfg.weight,
            reduce=cfg.reduce,
        )
        bad = ~jnp.all(jnp.isfinite(x_tgt).reshape(b, -1), axis=-1)
        metrics = {
            "n_rel": jnp.mean(idx.n_rel.astype(jnp.float32)),
            "T": big_t.astype(jnp.float32),
            "n_teacher": jnp.asarray(n_now, jnp.float32),
            "nonfinite_targets": jnp.mean(bad.astype(jnp.float32)),
            # λ range of the examples with a non-finite target (+inf / −inf when there are none)
            "bad_logsnr_t_min": jnp.min(jnp.where(bad, lam_t, jnp.inf)),
            "bad_logsnr_step_max": jnp.max(jnp.where(bad, lam_step, -jnp.inf)),
        }
        new_extra = dict(extra)
        new_extra["iteration"] = it + 1
        return loss, metrics, new_extra

    phases = [
        Phase(
            student_loss,
            ("student",),
            name="student" if cfg.target_mode == "ema" else "",
            updates_extra=True,
        )
    ]
    if cfg.target_mode == "ema":
        decay = float(cfg.target_ema_decay)

        def target_ema(model, batch, key, aux, extra):
            new_extra = dict(extra)
            new_extra["target"] = jax.tree.map(
                lambda e, p: decay * e + (1.0 - decay) * p, extra["target"], params_of(model)
            )
            return jnp.zeros((), jnp.float32), {}, new_extra

        phases.append(Phase(target_ema, (), name="target", updates_extra=True))
    return phases


def _as_denoiser(net: Any) -> Any:
    if isinstance(net, nnx.Module):
        from diff_pixel.models import as_denoiser

        return as_denoiser(net)
    return net


def _null_of(cond: Any) -> Any:
    from diff_pixel.models import Cond

    if isinstance(cond, Cond):
        return Cond.null
    raise ValueError("make_phases: guidance_scale != 1 needs a class-conditional batch (labels)")
