"""Hooks: what a run does besides stepping (pictures, curves, evaluations, interruptions).

The trainer calls, on process 0 and all others alike:

* ``on_start(trainer)`` once before the first step of :meth:`Trainer.run` (after a resume);
* ``on_step(trainer, step, metrics)`` after every step (``step`` = completed steps, ``metrics``
  the step's device metrics); returning ``True`` asks the trainer to stop: it writes a
  checkpoint at ``step`` and returns, as a killed-and-checkpointed run would;
* ``on_log(trainer, record)`` after each ``metrics.jsonl`` record;
* ``on_end(trainer)`` when the run reaches ``config.steps``.

Hooks are plain objects; subclass :class:`Hook` and override what you need. Image hooks (sample
grids, loss curves) live in :mod:`diff_pixel.images`, so the trainer itself imports no image code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Hook", "PeriodicHook", "StopAt"]


class Hook:
    """Base class: every method does nothing."""

    def on_start(self, trainer: Any) -> None:
        """Before the first step of :meth:`Trainer.run`."""

    def on_step(self, trainer: Any, step: int, metrics: Mapping[str, Any]) -> bool | None:
        """After each step; return ``True`` to stop the run (a checkpoint is written first)."""
        return None

    def on_log(self, trainer: Any, record: Mapping[str, Any]) -> None:
        """After each ``metrics.jsonl`` record."""

    def on_end(self, trainer: Any) -> None:
        """When the run has reached ``config.steps``."""


class PeriodicHook(Hook):
    """Calls :meth:`write` every ``every`` completed steps and once when the run ends (``every=0``:
    only at the end); a step that is also the last is written once. Subclasses implement
    ``write(trainer, step)`` (sample grids, rollout strips, evaluations)."""

    def __init__(self, every: int) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError(f"{type(self).__name__}: every must be an int >= 0, got {every!r}")
        self.every = every

    def write(self, trainer: Any, step: int) -> Any:
        """What the hook does at ``step``."""
        raise NotImplementedError(f"{type(self).__name__} must implement write(trainer, step)")

    def on_step(self, trainer: Any, step: int, metrics: Mapping[str, Any]) -> None:
        if self.every and step % self.every == 0 and step != trainer.config.steps:
            self.write(trainer, step)

    def on_end(self, trainer: Any) -> None:
        self.write(trainer, trainer.config.steps)


class StopAt(Hook):
    """Stop the run after ``step`` completed steps (checkpointed): the interruption of resume
    tests, under the run's real configuration and learning-rate schedule."""

    def __init__(self, step: int) -> None:
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ValueError(f"StopAt: step must be a positive int, got {step!r}")
        self.step = step

    def on_step(self, trainer: Any, step: int, metrics: Mapping[str, Any]) -> bool:
        return step >= self.step

    def __repr__(self) -> str:
        return f"StopAt({self.step})"
