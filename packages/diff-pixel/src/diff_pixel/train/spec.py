"""What one train step does, as frozen data: the phases and the optimisers they update.

A step runs the *active* phases in order. A :class:`Phase` is a loss and the named optimisers
that take one update on its gradient; ``every`` / ``offset`` make alternating schemes (phase
active at steps ``s`` with ``s % every == offset``). The optimisers a step does not update keep
their variables *and* optimiser states bitwise. :class:`StepSpec` bundles the model's graphdef,
the phases and the resolved optimisers; :func:`~diff_pixel.train.make_train_step` builds the
jitted step from it.

Loss signatures (``key`` is ``fold_in(fold_in(run_key, step), phase_index)`` when the step has
several phases, ``fold_in(run_key, step)`` when it has one):

* ``loss(model, batch, key, aux) -> (loss, metrics)``;
* with ``updates_extra=True``: ``loss(model, batch, key, aux, extra) -> (loss, metrics, extra)``
  where ``extra`` is the train state's method-state pytree (same structure in and out).

Variables the phase does not train are read-only inside its loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flax import nnx
from jax.sharding import Mesh

from diff_pixel.train.optim import OptimizerSpec

__all__ = ["LossFn", "Phase", "StepSpec"]

LossFn = Callable[..., tuple]


@dataclass(frozen=True)
class Phase:
    """One loss and the optimisers it updates.

    Attributes:
      loss: the loss function (signatures in the module docstring).
      optimizers: names of the optimisers updated with this loss's gradient (may be empty: the
        phase then only computes metrics and, with ``updates_extra``, method state).
      name: prefix of this phase's metrics (``"{name}/loss"``) when the step has several phases.
      every, offset: the phase runs at steps ``s`` with ``s % every == offset``.
      updates_extra: the loss takes and returns the ``extra`` pytree.
    """

    loss: LossFn
    optimizers: tuple[str, ...]
    name: str = ""
    every: int = 1
    offset: int = 0
    updates_extra: bool = False

    def __post_init__(self) -> None:
        if not callable(self.loss):
            raise TypeError(f"Phase: loss must be callable, got {type(self.loss).__name__}")
        if isinstance(self.optimizers, str) or not all(isinstance(n, str) for n in self.optimizers):
            raise TypeError(
                f"Phase: optimizers must be a tuple of optimizer names, got {self.optimizers!r}"
            )
        object.__setattr__(self, "optimizers", tuple(self.optimizers))
        if len(set(self.optimizers)) != len(self.optimizers):
            raise ValueError(f"Phase: optimizers must be distinct, got {self.optimizers!r}")
        for f in ("every", "offset"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"Phase: {f} must be an int, got {v!r}")
        if self.every < 1 or not 0 <= self.offset < self.every:
            raise ValueError(
                f"Phase: every must be >= 1 and offset in [0, every), got every={self.every}, "
                f"offset={self.offset}"
            )
        if not isinstance(self.updates_extra, bool):
            raise TypeError(f"Phase: updates_extra must be a bool, got {self.updates_extra!r}")

    def active_at(self, step: int) -> bool:
        """Whether the phase runs at step ``step`` (completed steps before it)."""
        return step % self.every == self.offset

    def describe(self) -> dict[str, Any]:
        """JSON-able summary stored in checkpoints."""
        return {
            "name": self.name,
            "loss": getattr(self.loss, "__name__", type(self.loss).__name__),
            "optimizers": list(self.optimizers),
            "every": self.every,
            "offset": self.offset,
            "updates_extra": self.updates_extra,
        }


@dataclass(frozen=True)
class StepSpec:
    """Everything the jitted step depends on (hashable, so equal specs share compilations).

    Attributes:
      graphdef: the model's graphdef (``nnx.split(model)[0]``).
      phases: the phases, run in order when active.
      optimizers: ``((name, OptimizerSpec), ...)``, resolved (``tx`` set).
      mesh: when given, the new state and the metrics stay replicated on it (batch sharded over
        its data axis).
    """

    graphdef: nnx.GraphDef
    phases: tuple[Phase, ...]
    optimizers: tuple[tuple[str, OptimizerSpec], ...]
    mesh: Mesh | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "phases", tuple(self.phases))
        object.__setattr__(self, "optimizers", tuple(self.optimizers))
        if not self.phases:
            raise ValueError("StepSpec: phases must hold at least one Phase, got none")
        names = [n for n, _ in self.optimizers]
        if len(set(names)) != len(names):
            raise ValueError(f"StepSpec: optimizer names must be distinct, got {names}")
        for i, ph in enumerate(self.phases):
            if not isinstance(ph, Phase):
                raise TypeError(f"StepSpec: phases[{i}] must be a Phase, got {type(ph).__name__}")
            for n in ph.optimizers:
                if n not in names:
                    raise ValueError(
                        f"StepSpec: phases[{i}].optimizers must name optimizers of the run "
                        f"{names}, got {n!r}"
                    )
        if len(self.phases) > 1:
            labels = [ph.name for ph in self.phases]
            if not all(labels) or len(set(labels)) != len(labels):
                raise ValueError(
                    f"StepSpec: a step with several phases needs distinct non-empty phase names "
                    f"(metric prefixes), got {labels}"
                )
        for name, spec in self.optimizers:
            if not isinstance(spec, OptimizerSpec) or spec.tx is None:
                raise ValueError(
                    f"StepSpec: optimizer {name!r} must be a resolved OptimizerSpec (tx set)"
                )

    def optimizer(self, name: str) -> OptimizerSpec:
        return dict(self.optimizers)[name]

    def active(self, step: int) -> tuple[int, ...]:
        """Indices of the phases that run at step ``step``."""
        return tuple(i for i, ph in enumerate(self.phases) if ph.active_at(step))
