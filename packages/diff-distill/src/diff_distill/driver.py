"""Distillation runs on diff-pixel's trainer: :func:`make_trainer` and :func:`distill`.

The trainer's model is a :class:`~diff_distill.module.MomentMatchingModule` (student and, for the
alternating variant, the auxiliary denoiser), trained by two named optimisers ``student`` and
``aux`` (Adam with β1 = 0, β2 = 0.99, ε = 1e-12 and global-norm clipping by default; each its own
learning rate, linear warm-up, then constant or linear decay to 0); only the student keeps an EMA.
The teacher is frozen: an NNX teacher becomes a :class:`~diff_distill.teacher.ParametricTeacher`
passed as the trainer's ``aux`` (a jit argument: no gradient, optimiser state or EMA); any other
protocol denoiser (diff-core's exact mixture) is closed over by the losses (alternating variant
only). The configuration, the schedule and the teacher's SHA-256 are stored in the run and
compared on resume: a different teacher or configuration is refused with the differing fields.
Checkpoints (Orbax, atomic), bitwise resume, progress, ``metrics.jsonl`` and the non-finite
policy are the trainer's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import optax
from flax import nnx

from diff_distill.config import MomentMatchingConfig
from diff_distill.module import MomentMatchingModule
from diff_distill.steps import initial_extra, make_phases, split_sizes
from diff_distill.teacher import (
    LoadedTeacher,
    ParametricTeacher,
    load_teacher,
    teacher_adam_nu,
    teacher_fingerprint,
)
from diff_pixel.train import OptimizerSpec, TrainConfig, Trainer
from diff_protocol import check_denoiser, schedule_to_json

__all__ = ["distill", "make_trainer", "optimizer", "resolve_teacher"]


def optimizer(config: MomentMatchingConfig, lr: float) -> optax.GradientTransformation:
    """Adam(β1, β2, ε) with linear warm-up to ``lr`` then ``lr_schedule``, after global-norm
    clipping when ``grad_clip > 0``."""
    warm, total = config.warmup_steps, config.num_steps
    linear = config.lr_schedule == "linear_to_zero"

    def schedule(count: Any) -> Any:
        c = jnp.asarray(count, jnp.float32)
        ramp = jnp.minimum(1.0, (c + 1.0) / warm) if warm > 0 else 1.0
        if not linear:
            return lr * ramp
        frac = jnp.clip((c - warm) / max(total - warm, 1), 0.0, 1.0)
        return lr * ramp * (1.0 - frac)

    adam = optax.adam(schedule, b1=config.b1, b2=config.b2, eps=config.adam_eps)
    if config.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(config.grad_clip), adam)
    return adam


def resolve_teacher(teacher: Any, variant: str) -> tuple[Any, Any, Any, int]:
    """``(teacher for the losses, NNX network or None, schedule or None, num_classes)``.

    Accepts a diff-pixel run directory, a :class:`LoadedTeacher`, an NNX denoiser, a
    :class:`ParametricTeacher` or (alternating only) any protocol denoiser."""
    schedule, num_classes = None, 0
    if isinstance(teacher, (str, Path)):
        teacher = load_teacher(teacher)
    if isinstance(teacher, LoadedTeacher):
        schedule, num_classes = teacher.schedule, teacher.num_classes
        teacher = teacher.model
    if isinstance(teacher, nnx.Module):
        check_denoiser("distill", teacher)
        return ParametricTeacher.from_nnx(teacher), teacher, schedule, num_classes
    if isinstance(teacher, ParametricTeacher):
        return teacher, None, schedule, num_classes
    if variant == "param_space":
        raise ValueError(
            "teacher must be an NNX network, a diff-pixel run or a ParametricTeacher for the "
            f"param_space variant (it differentiates the teacher's parameters), got "
            f"{type(teacher).__name__}"
        )
    try:
        check_denoiser("distill", teacher)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"teacher must be a diff-pixel run directory, an NNX denoiser, a ParametricTeacher or "
            f"a diff-protocol Denoiser, got {type(teacher).__name__} ({err})"
        ) from None
    return teacher, None, schedule, num_classes


def _train_config(
    config: MomentMatchingConfig,
    out_dir: str,
    *,
    progress: bool,
    log_every: int,
    checkpoint_every: int,
) -> TrainConfig:
    return TrainConfig(
        steps=config.num_steps,
        batch_size=config.batch_size,
        lr=config.lr_student,
        warmup_steps=config.warmup_steps,
        b1=config.b1,
        b2=config.b2,
        eps=config.adam_eps,
        weight_decay=0.0,
        grad_clip=config.grad_clip,
        ema_decay=0.999 if config.ema_decay is None else config.ema_decay,
        seed=config.seed,
        log_every=log_every,
        checkpoint_every=checkpoint_every,
        out_dir=str(out_dir),
        progress=progress,
    )


def make_trainer(
    config: MomentMatchingConfig,
    *,
    teacher: Any,
    data: Iterator[Mapping[str, Any]],
    out_dir: str | Path,
    student: nnx.Module | None = None,
    schedule: Any = None,
    hooks: Sequence[Any] = (),
    progress: bool = True,
    resume: bool = True,
    log_every: int = 50,
    checkpoint_every: int = 1000,
    conditional: bool = True,
    nu: Any = None,
) -> Trainer:
    """The diff-pixel :class:`~diff_pixel.train.Trainer` of one distillation run (not run yet).

    Args:
      config: the method (:class:`MomentMatchingConfig`).
      teacher: a diff-pixel run directory, an NNX denoiser, a :class:`ParametricTeacher`, or any
        protocol denoiser (alternating only; e.g. diff-core's exact mixture denoiser).
      data: a diff-pixel ``Loader`` / ``SampledData`` of real data (batches ``{"x", "index"}``).
      out_dir: the run directory (resumed when it holds checkpoints and ``resume``).
      student: the network student and auxiliary start from (default: the NNX teacher).
      schedule: the teacher's schedule (taken from a run directory when not given).
      hooks: trainer hooks (loss curves, ``StopAt``, ...).
      conditional: give the networks ``Cond(label)`` when batches carry labels.
      nu: the teacher's Adam second moment (``precond="adam"``), a pytree like its parameters;
        read from the run (:func:`~diff_distill.teacher.teacher_adam_nu`) when ``teacher`` is a
        diff-pixel run directory or its :class:`LoadedTeacher`.
    """
    if not isinstance(config, MomentMatchingConfig):
        raise TypeError(
            f"distill: config must be a MomentMatchingConfig, got {type(config).__name__}"
        )
    source = teacher if isinstance(teacher, (str, Path, LoadedTeacher)) else None
    loss_teacher, net, run_schedule, _ = resolve_teacher(teacher, config.variant)
    if config.precond == "adam" and nu is None and source is not None:
        nu = teacher_adam_nu(source, loss_teacher.params)
    schedule = schedule if schedule is not None else run_schedule
    if schedule is None:
        raise ValueError("distill: schedule must be given (the teacher's), got None")
    init = student if student is not None else net
    if init is None:
        raise ValueError(
            "distill: student must be given when the teacher is not an NNX network (the student "
            "and the auxiliary start as copies of it), got None"
        )
    if config.variant == "param_space":
        split_sizes(config.batch_size, config.param_split)
    aux_net = (
        None if config.variant == "param_space" else nnx.clone(net if net is not None else init)
    )
    pair = MomentMatchingModule(nnx.clone(init), aux_net)
    in_aux = isinstance(loss_teacher, ParametricTeacher)
    phases = make_phases(
        config,
        schedule=schedule,
        teacher=None if in_aux else loss_teacher,
        teacher_in_aux=in_aux,
        conditional=conditional,
    )
    optimizers = {
        "student": OptimizerSpec(
            wrt=nnx.All(nnx.Param, nnx.PathContains("student")),
            tx=optimizer(config, config.lr_student),
            ema_decay=config.ema_decay,
        )
    }
    if aux_net is not None:
        optimizers["aux"] = OptimizerSpec(
            wrt=nnx.All(nnx.Param, nnx.PathContains("aux")),
            tx=optimizer(config, config.lr_aux),
            ema_decay=None,
        )
    recipe = {
        "method": "diff-distill",
        "distill": config.to_dict(),
        "schedule": schedule_to_json(schedule),
        "teacher": teacher_fingerprint(loss_teacher),
    }
    return Trainer(
        pair,
        None,
        _train_config(
            config,
            str(out_dir),
            progress=progress,
            log_every=log_every,
            checkpoint_every=checkpoint_every,
        ),
        data,
        optimizers=optimizers,
        phases=phases,
        extra=initial_extra(config, nu),
        aux=loss_teacher if in_aux else None,
        hooks=hooks,
        recipe=recipe,
        resume=resume,
    )


def distill(
    config: MomentMatchingConfig,
    *,
    teacher: Any,
    data: Iterator[Mapping[str, Any]],
    out_dir: str | Path,
    student: nnx.Module | None = None,
    schedule: Any = None,
    **kwargs: Any,
) -> nnx.Module:
    """Run (or resume) a distillation and return the student: its EMA weights, or the raw ones
    when ``config.ema_decay`` is None. Arguments as :func:`make_trainer`."""
    trainer = make_trainer(
        config,
        teacher=teacher,
        data=data,
        out_dir=out_dir,
        student=student,
        schedule=schedule,
        **kwargs,
    )
    trainer.run()
    pair = trainer.model() if config.ema_decay is None else trainer.ema_model()
    return pair.student
