"""``distill`` (this project's default method): forget by remapping, retain by distilling the
original model's own predictions on retain conditions, conditional and unconditional.

Unlike ``remap``, the retain term does not pull the model towards the *data* (which the original
model fits only approximately) but towards the original model itself, so at θ = θ₀ it is exactly
zero with zero gradient, and the retain outputs move only as far as forgetting forces them. This
is our reading of arXiv 2411.02068's proposal; the paper's exact losses are not confirmed.

``source="teacher_samples"`` makes the retain term data-free: its images are θ₀'s own samples of
the retain classes (:func:`~diff_unlearn.losses.teacher_bank`, drawn once before the first step
and kept in the trainer's checkpointed ``extra``), so the retain images are never read (only the
retain stream's labels, i.e. how often each class is distilled).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp

from diff_unlearn.losses import (
    RETAIN_SOURCES,
    LossSetup,
    check_target,
    forget_remap,
    retain_distill,
    teacher_bank,
    teacher_inputs,
)
from diff_unlearn.methods.base import MethodLoss, UnlearnMethod, batch_part, check_weight

__all__ = ["distill"]


@dataclass(frozen=True)
class DistillLoss(MethodLoss):
    beta: float = 1.0
    target: Any = "random_other"
    include_null: bool = True
    source: str = "data"
    teacher_n: int = 128
    teacher_steps: int = 25
    teacher_guidance: float = 1.0
    method: str = field(default="distill", init=False)

    def _hidden(self) -> tuple[str, ...]:
        if self.source == "data":
            return ("source", "teacher_n", "teacher_steps", "teacher_guidance")
        return ()

    def __call__(self, model, batch, key, aux, extra):
        original = aux["original"]
        lf, _ = forget_remap(
            self.setup, model, original, batch_part(batch, "forget"), key, self.target
        )
        rb = batch_part(batch, "retain")
        if self.source == "teacher_samples":
            rb = teacher_inputs(self.setup, extra["teacher_x"], rb, key)
        lr, mets = retain_distill(self.setup, model, original, rb, key, self.include_null)
        return lf + self.beta * lr, {"forget_loss": lf, "retain_loss": lr, **mets}, extra


@dataclass(frozen=True)
class TeacherInit:
    """The teacher bank of ``source="teacher_samples"`` (θ₀'s samples, seed from the run's)."""

    n_per_class: int = 128
    steps: int = 25
    guidance: float = 1.0

    def __call__(self, model, original, task, setup, seed, forget_batch):
        bank = teacher_bank(
            setup,
            original,
            n_per_class=self.n_per_class,
            seed=seed,
            steps=self.steps,
            guidance=self.guidance,
        )
        return {"teacher_x": jnp.asarray(bank)}


def distill(
    setup: LossSetup,
    beta: float = 1.0,
    target: Any = "random_other",
    include_null: bool = True,
    source: str = "data",
    teacher_n: int = 128,
    teacher_steps: int = 25,
    teacher_guidance: float = 1.0,
) -> UnlearnMethod:
    """Minimise ``forget_remap + β retain_distill`` (β = 1, target ``random_other``, with the
    null term, retain images from the data: our defaults). ``source="teacher_samples"``:
    retain images are ``teacher_n`` samples per retain class of θ₀ (DDIM-``teacher_steps``,
    guidance ``teacher_guidance``), drawn once."""
    beta = check_weight("distill", "beta", beta)
    target = check_target("distill", target, setup.num_classes)
    if source not in RETAIN_SOURCES:
        raise ValueError(f"distill: source must be one of {RETAIN_SOURCES}, got {source!r}")
    for name, v in (("teacher_n", teacher_n), ("teacher_steps", teacher_steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"distill: {name} must be an int >= 1, got {v!r}")
    teacher_guidance = check_weight("distill", "teacher_guidance", teacher_guidance)
    hparams: tuple = (("beta", beta), ("target", target), ("include_null", bool(include_null)))
    init = None
    if source == "teacher_samples":
        init = TeacherInit(teacher_n, teacher_steps, teacher_guidance)
        hparams += (
            ("source", source),
            ("teacher_n", teacher_n),
            ("teacher_steps", teacher_steps),
            ("teacher_guidance", teacher_guidance),
        )
    return UnlearnMethod(
        "distill",
        DistillLoss(
            setup,
            beta,
            target,
            bool(include_null),
            source,
            teacher_n,
            teacher_steps,
            teacher_guidance,
        ),
        init=init,
        hparams=hparams,
    )
