"""Training configuration: a frozen dataclass that round-trips through JSON.

The defaults are the SiD2 recipe's optimiser and EMA (spec §6.1): AdamW β1 0.9, β2 0.99,
ε 1e−8, weight decay 0, lr 1e−4 with 1000 linear warm-up steps then constant, global-norm
clipping at 1.0, EMA 0.9999 with warm-up ``decay_s = min(decay, (1 + s)/(10 + s))``. These
are our defaults; the papers' optimiser values are not confirmed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["RESUMABLE_FIELDS", "TrainConfig"]

# Fields that may differ between a checkpoint and the run that resumes it: they do not change
# the result of any step (how long to run, how often to log/sample/save, where the run lives).
RESUMABLE_FIELDS = frozenset(
    {
        "steps",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "out_dir",
        "on_nonfinite",
        "progress",
    }
)


@dataclass(frozen=True)
class TrainConfig:
    """How to train (model-independent).

    Attributes:
      steps: total optimiser steps of the run (a resumed run continues up to this).
      batch_size: global batch size (all devices and processes together).
      lr: peak learning rate. warmup_steps: linear warm-up from 0. lr_decay: ``"constant"``
        after warm-up, or ``"cosine"`` / ``"linear"`` decay to 0 at ``steps``.
      b1, b2, eps, weight_decay: AdamW (``optax.adamw``). grad_clip: global-norm clip (0 = off).
      ema_decay: EMA decay; ema_warmup: use ``min(decay, (1 + s)/(10 + s))`` at step s.
      seed: seeds the model-independent randomness of the run (step keys, data order).
      log_every: steps per ``metrics.jsonl`` record. checkpoint_every: steps per checkpoint
        (0 = only at the end and on interruption). Sample grids and curves are hooks
        (:mod:`diff_pixel.images`), with their own period.
      keep_checkpoints: how many checkpoints to keep.
      on_nonfinite: ``"raise"`` (``FloatingPointError``) or ``"skip"`` (discard the update).
      out_dir: run directory (checkpoints/, metrics.jsonl, samples/, loss.png).
      progress: show a tqdm bar and, for a resumed run, the line ``resuming from step N``
        (process 0 only).
    """

    steps: int
    batch_size: int
    lr: float = 1e-4
    warmup_steps: int = 1000
    lr_decay: Literal["constant", "cosine", "linear"] = "constant"
    b1: float = 0.9
    b2: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    ema_warmup: bool = True
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    on_nonfinite: Literal["raise", "skip"] = "raise"
    out_dir: str = "runs/default"
    progress: bool = True

    def __post_init__(self) -> None:
        def integer(name: str, minimum: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"TrainConfig: {name} must be an int, got {v!r}")
            if v < minimum:
                raise ValueError(f"TrainConfig: {name} must be >= {minimum}, got {v}")

        def real(name: str, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TypeError(f"TrainConfig: {name} must be a finite float, got {v!r}")
            if v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
                left, right = "(" if lo_open else "[", ")" if hi_open else "]"
                raise ValueError(f"TrainConfig: {name} must be in {left}{lo}, {hi}{right}, got {v}")

        integer("steps", 0)
        integer("batch_size", 1)
        integer("warmup_steps", 0)
        integer("seed", 0)
        integer("log_every", 1)
        integer("checkpoint_every", 0)
        integer("keep_checkpoints", 1)
        real("lr", 0.0, math.inf, hi_open=True)
        real("b1", 0.0, 1.0, hi_open=True)
        real("b2", 0.0, 1.0, hi_open=True)
        real("eps", 0.0, math.inf, lo_open=True, hi_open=True)
        real("weight_decay", 0.0, math.inf, hi_open=True)
        real("grad_clip", 0.0, math.inf, hi_open=True)
        real("ema_decay", 0.0, 1.0, hi_open=True)
        if self.lr_decay not in ("constant", "cosine", "linear"):
            raise ValueError(
                "TrainConfig: lr_decay must be 'constant', 'cosine' or 'linear', "
                f"got {self.lr_decay!r}"
            )
        if self.on_nonfinite not in ("raise", "skip"):
            raise ValueError(
                f"TrainConfig: on_nonfinite must be 'raise' or 'skip', got {self.on_nonfinite!r}"
            )
        if not isinstance(self.out_dir, str) or not self.out_dir:
            raise TypeError(f"TrainConfig: out_dir must be a non-empty str, got {self.out_dir!r}")
        for name in ("ema_warmup", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"TrainConfig: {name} must be a bool, got {getattr(self, name)!r}")

    @classmethod
    def from_recipe(cls, recipe: Any, *, steps: int, **overrides: Any) -> TrainConfig:
        """Take the optimiser, EMA and batch fields a recipe defines (same names), then overrides.

        Reads ``batch_size, lr, warmup_steps, b1, b2, eps, weight_decay, grad_clip, ema_decay,
        ema_warmup`` from ``recipe`` where present (duck-typed: any object with those attributes),
        so the recipe stays the single source of these defaults.
        """
        names = (
            "batch_size",
            "lr",
            "warmup_steps",
            "b1",
            "b2",
            "eps",
            "weight_decay",
            "grad_clip",
            "ema_decay",
            "ema_warmup",
        )
        fields = {n: getattr(recipe, n) for n in names if hasattr(recipe, n)}
        fields.update(overrides)
        fields["steps"] = steps
        if "batch_size" not in fields:
            raise ValueError("TrainConfig.from_recipe: recipe must define batch_size, got none")
        return cls(**fields)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated; an unknown field is a ``TypeError``
        naming it)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(
                f"TrainConfig.replace: changes must name TrainConfig fields, got {unknown}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a ``TypeError`` naming the key."""
        if not isinstance(d, Mapping):
            raise TypeError(f"TrainConfig.from_dict: d must be a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        for k in d:
            if k not in names:
                raise TypeError(
                    f"TrainConfig.from_dict: d must have only TrainConfig fields, got {k!r}"
                )
        return cls(**dict(d))
