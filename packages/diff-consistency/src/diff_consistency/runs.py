"""Loading run directories: a diff-pixel teacher run (SiD/SiD2 recipe) or a student run of this
package, with its schedule and, for students, the step count S it was trained for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LoadedRun", "load_run"]


@dataclass(frozen=True)
class LoadedRun:
    """A restored run: ``model`` (raw weights), ``ema`` (evaluation weights), ``schedule``,
    ``student_steps`` (None for a teacher), the stored ``config`` and the checkpoint ``step``."""

    model: Any
    ema: Any
    schedule: Any
    student_steps: int | None
    config: dict
    path: Path

    @property
    def is_student(self) -> bool:
        return self.student_steps is not None

    @property
    def num_classes(self) -> int:
        """Classes of a class-conditional backbone (0: unconditional)."""
        return _num_classes(self.ema)


def _backbone(model: Any) -> Any:
    while hasattr(model, "net"):
        model = model.net
    return model


def _num_classes(model: Any) -> int:
    cfg = getattr(_backbone(model), "config", None)
    return int(getattr(cfg, "num_classes", 0) or 0)


def load_run(path: str | Path) -> LoadedRun:
    """Restore a run directory (latest checkpoint). Raises ``ValueError`` naming the path when it
    holds no checkpoint or a damaged one (diff-pixel's message lists the other steps)."""
    from diff_pixel.train import Trainer
    from diff_protocol import schedule_from_json

    path = Path(path)
    if not (path / "checkpoints").is_dir():
        raise ValueError(f"{path} holds no run (no checkpoints/ folder)")
    model, ema, config = Trainer.restore(path)
    recipe = config.get("recipe") or {}
    if recipe.get("method") == "diff-consistency":
        schedule = schedule_from_json(recipe["schedule"])
        steps = int(recipe["consistency"]["student_steps"])
    else:
        from diff_pixel.sid import recipe_from_dict

        try:
            schedule = recipe_from_dict(recipe).schedule()
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: not a diff-pixel or diff-consistency run ({err})") from None
        steps = None
    return LoadedRun(model, ema, schedule, steps, config, path)
