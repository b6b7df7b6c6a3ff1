"""Training runs on diff-pixel's trainer: :func:`train_consistency` (CD / CT) and :func:`tract`.

The trainer's model is the **student** itself — a diff-pixel parameterisation wrapper
(``Predicts`` around a copy of the initial network, or ``ConsistencyOutput``) — so
``Trainer.restore(run)`` rebuilds it from the registry and every diff-core sampler runs on it.
The teacher is frozen: an NNX teacher travels as the trainer's ``aux`` (a jit argument, no
gradient, optimiser state or EMA), any other protocol denoiser (an exact mixture) is closed over
by the loss. The method state (curriculum position, optional target EMA) lives in the train
state's ``extra``; the configuration, the schedule and the teacher's parameter hash are stored in
the run and compared on resume (a different teacher is refused with the differing fields).
Checkpoints, bitwise resume, progress, ``metrics.jsonl`` and the non-finite policy are the
trainer's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from diff_consistency.config import ConsistencyConfig, check_tract_schedule
from diff_consistency.steps import initial_extra, make_phases
from diff_pixel.models import ConsistencyOutput, Predicts
from diff_pixel.models.parameterization import Parameterization
from diff_pixel.train import OptimizerSpec, TrainConfig, Trainer
from diff_protocol import check_denoiser

__all__ = ["make_student", "teacher_fingerprint", "train_config", "train_consistency", "tract"]


def make_student(init: nnx.Module, output: str = "predicts") -> nnx.Module:
    """The student: a copy of ``init`` behind diff-pixel's parameterisation wrapper.

    ``"predicts"``: ``Predicts(copy, init.prediction)`` (a wrapper is copied as it is), so the
    student starts as exactly the initial network. ``"consistency"``: ``ConsistencyOutput(copy)``
    (c_skip z + c_out F, prediction "x"; for training from scratch).
    """
    if not isinstance(init, nnx.Module) or not callable(init):
        raise TypeError(
            f"make_student: init must be a callable nnx.Module, got {type(init).__name__}"
        )
    net = nnx.clone(init)
    if output == "predicts":
        if isinstance(net, Parameterization):
            return net
        return Predicts(net, getattr(net, "prediction", "v"))
    if output == "consistency":
        if isinstance(net, Predicts):
            net = net.net
        return ConsistencyOutput(net)
    raise ValueError(f"make_student: output must be 'predicts' or 'consistency', got {output!r}")


def teacher_fingerprint(teacher: Any) -> str:
    """SHA-256 of an NNX teacher's variables (or the repr of another denoiser)."""
    if teacher is None:
        return "none"
    if isinstance(teacher, nnx.Module):
        h = hashlib.sha256()
        for leaf in jax.tree.leaves(nnx.state(teacher)):
            a = np.asarray(jax.device_get(leaf))
            h.update(str(a.dtype).encode() + str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()
    return f"repr:{teacher!r}"


def train_config(
    config: ConsistencyConfig,
    out_dir: str,
    *,
    progress: bool = True,
    log_every: int = 50,
    checkpoint_every: int = 1000,
) -> TrainConfig:
    """The diff-pixel ``TrainConfig`` of ``config`` (Adam = AdamW without decay, ε 1e-8)."""
    return TrainConfig(
        steps=config.num_steps,
        batch_size=config.batch_size,
        lr=config.lr,
        warmup_steps=config.warmup_steps,
        b1=config.b1,
        b2=config.b2,
        eps=1e-8,
        weight_decay=0.0,
        grad_clip=config.grad_clip,
        ema_decay=0.9999 if config.ema_decay is None else config.ema_decay,
        seed=config.seed,
        log_every=log_every,
        checkpoint_every=checkpoint_every,
        out_dir=str(out_dir),
        progress=progress,
    )


def _shape_check(student: nnx.Module, teacher: Any, data: Any, conditional: bool) -> None:
    """Evaluate teacher and student abstractly on one batch; different shapes are named."""
    if teacher is None:
        return
    state = data.state()
    batch = next(data)
    data.restore(state)
    x = np.asarray(batch["x"], np.float32)
    lam = np.zeros((x.shape[0],), np.float32)
    cond = None
    if conditional and "label" in batch:
        from diff_pixel.models import Cond

        cond = Cond(label=np.asarray(batch["label"]))

    def shape_of(net: Any, name: str) -> tuple[int, ...]:
        try:

            def call(z, lam):
                return net(z, lam) if cond is None else net(z, lam, cond)

            return tuple(jax.eval_shape(call, x, lam).shape)
        except Exception as err:  # the network rejects the data's shape
            raise ValueError(
                f"train_consistency: the {name} does not accept the data's shape {x.shape}: {err}"
            ) from None

    s_shape, t_shape = shape_of(student, "student"), shape_of(teacher, "teacher")
    if s_shape != t_shape:
        raise ValueError(
            f"train_consistency: teacher and student must have the same output shape, got "
            f"teacher {t_shape} and student {s_shape}"
        )


def train_consistency(
    config: ConsistencyConfig,
    *,
    data: Iterator[Mapping[str, Any]],
    out_dir: str,
    init: nnx.Module,
    schedule: Any,
    teacher: Any = None,
    hooks: Sequence[Any] = (),
    progress: bool = True,
    resume: bool = True,
    log_every: int = 50,
    checkpoint_every: int = 1000,
    conditional: bool = True,
    run: bool = True,
) -> Trainer:
    """Multistep consistency distillation (``mode="cd"``, needs ``teacher``) or training
    (``mode="ct"``, no teacher) of a student initialised from ``init``.

    Args:
      config: the method (:class:`ConsistencyConfig`).
      data: a diff-pixel ``Loader`` / ``SampledData`` (batches ``{"x", "index", ...}``).
      out_dir: the run directory (resumed when it holds checkpoints and ``resume``).
      init: the NNX network the student starts from (MCM: the diffusion model).
      schedule: the teacher's schedule (diff-core).
      teacher: CD only: an NNX denoiser (frozen, passed as ``aux``) or any protocol denoiser.
      hooks: trainer hooks (sample grids, ``StopAt``, ...).
      conditional: give the networks ``Cond(label)`` when batches carry labels.
      run: train now (default); False returns the trainer untrained (resume tests).

    Returns:
      the :class:`~diff_pixel.train.Trainer` (``trainer.model()``, ``trainer.ema_model()``).
    """
    if not isinstance(config, ConsistencyConfig):
        raise TypeError(
            f"train_consistency: config must be a ConsistencyConfig, got {type(config).__name__}"
        )
    if config.mode == "ct" and teacher is not None:
        raise ValueError(
            "train_consistency: teacher must be None for consistency training (mode 'ct' uses the "
            "data; the diffusion model only initialises the student), got a teacher"
        )
    if config.mode == "cd":
        if teacher is None:
            raise ValueError("train_consistency: teacher must be given for mode 'cd', got None")
        check_denoiser("train_consistency", teacher)
    student = make_student(init, config.student_output)
    _shape_check(student, teacher, data, conditional)
    in_aux = isinstance(teacher, nnx.Module)
    phases = make_phases(
        config,
        schedule=schedule,
        teacher=None if in_aux else teacher,
        teacher_in_aux=in_aux,
        conditional=conditional,
    )
    from diff_protocol import schedule_to_json

    recipe = {
        "method": "diff-consistency",
        "consistency": config.to_dict(),
        "schedule": schedule_to_json(schedule),
        "teacher": teacher_fingerprint(teacher),
    }
    trainer = Trainer(
        student,
        None,
        train_config(
            config,
            out_dir,
            progress=progress,
            log_every=log_every,
            checkpoint_every=checkpoint_every,
        ),
        data,
        optimizers={"student": OptimizerSpec(wrt=nnx.Param, ema_decay=config.ema_decay)},
        phases=phases,
        extra=initial_extra(config, student),
        aux=teacher if in_aux else None,
        hooks=hooks,
        recipe=recipe,
        resume=resume,
    )
    if run:
        trainer.run()
    return trainer


def tract(
    config: ConsistencyConfig,
    *,
    data: Callable[[], Iterator[Mapping[str, Any]]],
    out_dir: str,
    teacher: nnx.Module,
    schedule: Any,
    progress: bool = True,
    conditional: bool = True,
) -> list[nnx.Module]:
    """TRACT (Berthelot et al., arXiv 2303.04248) as consistency configurations: phase p distils
    a ``schedule[p + 1]``-step student from a teacher taking ``schedule[p]`` fixed steps (phase 0:
    the diffusion model; later phases: the previous phase's EMA student, which also initialises
    the next student), each in ``out_dir/phase_{p}`` (resumable). ``data()`` returns a fresh batch
    iterator per phase. Returns each phase's EMA student."""
    sched = check_tract_schedule(config.tract_schedule, "tract")
    if not isinstance(teacher, nnx.Module):
        raise TypeError(f"tract: teacher must be an nnx.Module, got {type(teacher).__name__}")
    students: list[nnx.Module] = []
    current = teacher
    for p, (big_t, s) in enumerate(zip(sched[:-1], sched[1:])):
        cfg_p = config.replace(mode="cd", student_steps=s, n_start=big_t, n_end=big_t)
        trainer = train_consistency(
            cfg_p,
            data=data(),
            out_dir=f"{out_dir}/phase_{p}",
            init=current,
            schedule=schedule,
            teacher=current,
            progress=progress,
            conditional=conditional,
        )
        current = trainer.ema_model()
        students.append(current)
    return students
