"""The rolling objective (Ruhe et al., arXiv 2402.09470, §3.4) and the standard baseline objective.

For a clip ``(B, K + W, h, w, C)`` (K clean context frames, W targets) and per-example keys from
``diff_pixel.example_keys(key, batch["index"])``:

1. local times ``t_k`` per frame (``"mixed"``: the init map with probability β, else the rolling
   map; ``"rolling"`` / ``"init"`` force one; ``"standard"``: one t for all frames);
2. ``λ_k = schedule.logsnr(range(t_k))``, ``z_k = α_k x_k + σ_k ε_k`` (per-frame noising);
3. ``out = D(z, λ, {"context": x_c})`` with ``D`` a :class:`~diff_rolling.models.VideoDenoiser`;
4. per frame ``½ W(λ_k) ‖ε_k − ε̂_k‖²`` (diff-core's ``diffusion_loss``, mean over pixels) with the
   default weighting ``v_mse`` (= ½‖v − v̂‖²; our default, the paper's weighting is not
   confirmed); the loss is the mean over (B, W).

Metrics: ``loss``, ``loss_per_position (W,)``, ``loss_init`` / ``loss_rolling`` (means over each
regime's examples, 0 when a batch has none), ``frac_init``. Per-position logging exposes a model
that copies a nearly clean neighbour (a collapsed loss at one position).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

from .local_time import LocalTimeRange, local_times_from_keys

__all__ = ["RollingRecipe", "make_rolling_loss", "rolling_loss"]

_REGIMES = ("mixed", "rolling", "init", "standard")


def _default_schedule() -> Any:
    from diff_core import CosineSchedule

    return CosineSchedule(-15.0, 15.0)


def _default_weighting() -> Any:
    from diff_core.weighting import v_mse

    return v_mse()


@dataclass(frozen=True)
class RollingRecipe:
    """The objective's settings (our defaults; the paper's values are not confirmed)."""

    schedule: Any = field(default_factory=_default_schedule)
    window: int = 4
    context: int = 2
    regime: str = "mixed"
    beta: float = 0.1
    weighting: Any = field(default_factory=_default_weighting)
    clean_logsnr: float = 15.0
    time_range: LocalTimeRange = field(default_factory=LocalTimeRange)

    def __post_init__(self) -> None:
        if self.regime not in _REGIMES:
            raise ValueError(
                f"RollingRecipe: regime must be one of {_REGIMES}, got {self.regime!r}"
            )
        for name, lo in (("window", 1), ("context", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"RollingRecipe: {name} must be an int >= {lo}, got {v!r}")
        if (
            isinstance(self.beta, bool)
            or not isinstance(self.beta, (int, float))
            or not 0 <= self.beta <= 1
        ):
            raise ValueError(f"RollingRecipe: beta must be in [0, 1], got {self.beta}")

    def to_dict(self) -> dict[str, Any]:
        from diff_protocol import schedule_to_json

        return {
            "schedule": schedule_to_json(self.schedule),
            "window": self.window,
            "context": self.context,
            "regime": self.regime,
            "beta": self.beta,
            "weighting": self.weighting.to_dict(),
            "clean_logsnr": self.clean_logsnr,
            "time_range": [self.time_range.lo, self.time_range.hi],
        }


def _as_denoiser(model: Any, recipe: RollingRecipe) -> Any:
    if getattr(model, "is_video_denoiser", False) or (
        hasattr(model, "prediction") and not hasattr(model, "config")
    ):
        return model
    from .models import VideoDenoiser

    return VideoDenoiser(model, recipe.context, "v", recipe.clean_logsnr)


def rolling_loss(
    model: Any, batch: dict[str, Any], key: jax.Array, recipe: RollingRecipe
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The objective on one batch: ``(loss, metrics)`` (see the module docstring).

    ``model`` is a frame-axis network (wrapped in a ``VideoDenoiser``) or any window denoiser
    with ``prediction`` (e.g. the exact ``GaussianVideo`` denoiser, for the Bayes floor).
    """
    from diff_core.losses import diffusion_loss
    from diff_pixel.losses import example_keys, noise_batch

    x_all = jnp.asarray(batch["x"])
    k, w = recipe.context, recipe.window
    if x_all.ndim != 5 or x_all.shape[1] != k + w:
        raise ValueError(
            f"rolling_loss: batch['x'] must have shape (B, {k + w}, h, w, C) (context {k} + window "
            f"{w}), got {tuple(x_all.shape)}"
        )
    keys = example_keys(key, batch["index"])
    draw = local_times_from_keys(keys, w, recipe.beta, recipe.regime)
    tau = recipe.time_range(draw.local)
    lam = recipe.schedule.logsnr(tau).astype(jnp.float32)  # (B, W)
    x_c, x = x_all[:, :k], x_all[:, k:]
    eps = noise_batch(keys, x.shape, x.dtype)
    alpha = jnp.sqrt(jax.nn.sigmoid(lam))[..., None, None, None]
    sigma = jnp.sqrt(jax.nn.sigmoid(-lam))[..., None, None, None]
    z = alpha * x + sigma * eps
    den = _as_denoiser(model, recipe)
    out = den(z, lam, {"context": x_c})
    b = x.shape[0]
    fold = (b * w,) + tuple(x.shape[2:])
    per = diffusion_loss(
        out.reshape(fold),
        x.reshape(fold),
        eps.reshape(fold),
        lam.reshape(-1),
        prediction=den.prediction,
        weighting=recipe.weighting,
        reduce="mean",
    ).reshape(b, w)
    loss = jnp.mean(per)
    per_ex = per.mean(1)
    is_init = draw.is_init.astype(jnp.float32)
    n_init = is_init.sum()
    n_roll = b - n_init
    metrics = {
        "loss": loss,
        "loss_per_position": per.mean(0),
        "loss_init": jnp.where(n_init > 0, (per_ex * is_init).sum() / jnp.maximum(n_init, 1), 0.0),
        "loss_rolling": jnp.where(
            n_roll > 0, (per_ex * (1 - is_init)).sum() / jnp.maximum(n_roll, 1), 0.0
        ),
        "frac_init": n_init / b,
    }
    return loss, metrics


def make_rolling_loss(recipe: RollingRecipe) -> Any:
    """``loss_fn(model, batch, key, aux) -> (loss, metrics)`` for ``diff_pixel.train.Trainer``."""
    if not isinstance(recipe, RollingRecipe):
        raise TypeError(
            f"make_rolling_loss: recipe must be a RollingRecipe, got {type(recipe).__name__}"
        )
    try:
        return _cached_loss(recipe)  # one function per recipe: the trainer's jitted step is reused
    except TypeError:  # an unhashable schedule or weighting
        return _loss(recipe)


def _loss(recipe: RollingRecipe) -> Any:
    def loss_fn(model: Any, batch: dict[str, Any], key: jax.Array, aux: Any = None):
        return rolling_loss(model, batch, key, recipe)

    return loss_fn


_cached_loss = functools.lru_cache(maxsize=32)(_loss)
