"""Training a rolling (or standard) video denoiser on diff-pixel's trainer.

``train(config, frames, workdir)`` builds the frame-axis U-ViT of ``config.preset``, the objective
:func:`~diff_rolling.losses.make_rolling_loss` (``mode="rolling"``: the β-mixture of the rolling
and init maps; ``"standard"``: one noise level per clip, the baseline) and runs
:class:`diff_pixel.train.Trainer` over a :class:`~diff_rolling.data.windows.ClipSampler`. Adam
with linear warm-up and cosine decay, EMA, Orbax checkpoints: re-running the same call resumes
from the last checkpoint and ends bitwise equal to an uninterrupted run on CPU; a checkpoint
written with other settings is refused with the differing fields (the trainer's check).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flax import nnx

from .data.windows import ClipSampler
from .losses import RollingRecipe, make_rolling_loss
from .models import PRESETS, space_time_model

__all__ = ["RollingTrainConfig", "load_run", "make_trainer", "train"]


@dataclass(frozen=True)
class RollingTrainConfig:
    """A training run (our defaults; the paper's optimiser settings are not confirmed)."""

    preset: str = "tiny"
    mode: str = "rolling"
    window: int = 4
    context: int = 2
    beta: float = 0.1
    batch: int = 16
    steps: int = 1000
    lr: float = 1e-3
    warmup: int = 200
    lr_decay: str = "cosine"
    grad_clip: float = 1.0
    ema: float = 0.999
    seed: int = 0
    compute_dtype: str = "float32"
    log_every: int = 25
    checkpoint_every: int = 250

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(
                f"RollingTrainConfig: preset must be one of {sorted(PRESETS)}, got {self.preset!r}"
            )
        if self.mode not in ("rolling", "standard"):
            raise ValueError(
                f"RollingTrainConfig: mode must be 'rolling' or 'standard', got {self.mode!r}"
            )
        for name, lo in (("window", 1), ("context", 0), ("batch", 1), ("steps", 0), ("warmup", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"RollingTrainConfig: {name} must be an int >= {lo}, got {v!r}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"RollingTrainConfig: beta must be in [0, 1], got {self.beta}")

    def replace(self, **changes: Any) -> RollingTrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def recipe(self) -> RollingRecipe:
        regime = "mixed" if self.mode == "rolling" else "standard"
        return RollingRecipe(
            window=self.window, context=self.context, regime=regime, beta=self.beta
        )


def _train_config(config: RollingTrainConfig, workdir: str | Path, progress: bool) -> Any:
    from diff_pixel.train import TrainConfig

    return TrainConfig(
        steps=config.steps,
        batch_size=config.batch,
        lr=config.lr,
        warmup_steps=min(config.warmup, config.steps),
        lr_decay=config.lr_decay,
        b1=0.9,
        b2=0.99,
        weight_decay=0.0,
        grad_clip=config.grad_clip,
        ema_decay=config.ema,
        seed=config.seed,
        log_every=max(1, min(config.log_every, max(config.steps, 1))),
        checkpoint_every=config.checkpoint_every,
        out_dir=str(workdir),
        progress=progress,
    )


def make_trainer(
    config: RollingTrainConfig,
    frames: Any,
    workdir: str | Path,
    *,
    hooks: Sequence[Any] = (),
    progress: bool = True,
    data_meta: dict[str, Any] | None = None,
) -> Any:
    """The :class:`diff_pixel.train.Trainer` of a run (resumes when ``workdir`` has checkpoints)."""
    from diff_pixel.train import Trainer

    if not isinstance(config, RollingTrainConfig):
        raise TypeError(f"train: config must be a RollingTrainConfig, got {type(config).__name__}")
    frames_shape = tuple(getattr(frames, "shape", ()))
    overrides: dict[str, Any] = {"compute_dtype": config.compute_dtype}
    if len(frames_shape) == 5:
        overrides.update(image_size=frames_shape[2], in_channels=frames_shape[4])
    overrides["max_frames"] = max(16, config.context + config.window)
    model = space_time_model(config.preset, rngs=nnx.Rngs(config.seed), **overrides)
    data = ClipSampler(frames, config.context, config.window, config.batch, seed=config.seed)
    recipe = {
        "method": "diff-rolling",
        "rolling": config.to_dict(),
        "objective": config.recipe().to_dict(),
    }
    if data_meta:
        recipe["data"] = data_meta
    return Trainer(
        model,
        make_rolling_loss(config.recipe()),
        _train_config(config, workdir, progress),
        data,
        hooks=hooks,
        recipe=recipe,
    )


def train(
    config: RollingTrainConfig,
    frames: Any,
    workdir: str | Path,
    *,
    hooks: Sequence[Any] = (),
    progress: bool = True,
    data_meta: dict[str, Any] | None = None,
) -> Any:
    """Train (or resume) and return the trainer (``trainer.ema_model()`` is the network)."""
    trainer = make_trainer(
        config, frames, workdir, hooks=hooks, progress=progress, data_meta=data_meta
    )
    trainer.run()
    return trainer


def load_run(
    workdir: str | Path, *, ema: bool = True
) -> tuple[Any, RollingTrainConfig, dict[str, Any]]:
    """``(network, config, saved)`` of a finished or interrupted run."""
    from diff_pixel.train import Trainer

    model, averaged, saved = Trainer.restore(workdir)
    recipe = saved.get("recipe") or {}
    if recipe.get("method") != "diff-rolling":
        raise ValueError(
            f"load_run: {workdir} is not a diff-rolling run "
            f"(recipe method {recipe.get('method')!r})"
        )
    return (averaged if ema else model), RollingTrainConfig(**recipe["rolling"]), saved
