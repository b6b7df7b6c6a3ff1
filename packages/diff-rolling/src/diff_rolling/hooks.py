"""Training hooks of diff-rolling: rollout strips written while a run trains (rolling.md §8).

:class:`RolloutStripHook` is a :class:`diff_pixel.train.PeriodicHook`: every ``every`` steps
and when the run ends it rolls the EMA network out from the first ``context`` frames of a fixed
held-out trajectory (the same noise each time, so the strips of a run are comparable) and writes
``out_dir/samples/step_{step:07d}.png``: rows truth / model / |error|, one column per lead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from diff_pixel.train import PeriodicHook

__all__ = ["RolloutStripHook"]


class RolloutStripHook(PeriodicHook):
    """Rollout strips during training.

    ``config``: the run's :class:`~diff_rolling.train.RollingTrainConfig` (window, context, mode);
    ``trajectory``: one held-out trajectory ``(T, h, w, C)`` with ``T >= context + frames``;
    ``every=0`` writes only at the end. Needs the ``viz`` extra (matplotlib).
    """

    def __init__(
        self,
        config: Any,
        trajectory: Any,
        *,
        every: int = 250,
        frames: int = 8,
        steps_per_shift: int = 4,
        seed: int = 0,
    ) -> None:
        from .viz import require_viz

        require_viz()
        super().__init__(every)
        for name, value, lo in (
            ("frames", frames, 1),
            ("steps_per_shift", steps_per_shift, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"RolloutStripHook: {name} must be an int >= {lo}, got {value!r}")
        trajectory = np.asarray(trajectory, np.float32)
        need = config.context + frames
        if trajectory.ndim != 4 or trajectory.shape[0] < need:
            raise ValueError(
                f"RolloutStripHook: trajectory must have shape (T >= {need}, h, w, C) for "
                f"context {config.context} + {frames} frames, got {trajectory.shape}"
            )
        self.config, self.trajectory = config, trajectory[None]
        self.frames, self.steps_per_shift, self.seed = frames, steps_per_shift, seed
        self.paths: list[Path] = []

    def write(self, trainer: Any, step: int) -> Path:
        from .evaluate import forecast
        from .viz import error_field, save_strip

        fc = forecast(
            trainer.ema_model(),
            self.config,
            self.trajectory,
            n_frames=self.frames,
            steps_per_shift=self.steps_per_shift,
            seed=self.seed,
        )
        path = Path(trainer.out_dir) / "samples" / f"step_{step:07d}.png"
        if trainer.is_main:
            truth, model = fc["truth"][0], fc["frames"][0]
            save_strip(
                path,
                {"truth": truth, fc["mode"]: model, "|error|": error_field(model, truth)},
                title=f"step {step}: {fc['nfe']} network calls",
            )
        self.paths.append(path)
        return path
