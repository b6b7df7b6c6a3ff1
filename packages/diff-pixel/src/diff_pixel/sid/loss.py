r"""The weighted diffusion loss of SiD/SiD2 for the trainer, with per-example randomness.

Per example i (Kingma & Gao, arXiv 2303.00848; SiD2, arXiv 2410.19324):

.. math::
    \ell_i = \tfrac12 \, (-\tfrac{d\lambda}{dt})_i \, w(\lambda_i) \,
             \mathrm{mean}_{pixels}(\epsilon_i - \hat\epsilon_i)^2,
    \qquad \hat\epsilon = \sigma z + \alpha \hat v,

with :math:`t_i` stratified over the global batch, :math:`\lambda_i = \lambda(t_i)` from the
recipe's diff-core schedule and :math:`w` its diff-core weighting; the loss value is computed by
``diff_core.losses.diffusion_loss``. Every random draw of example j (t, ε, label dropout) comes from
``example_keys(key, index)[j]``, so it depends only on (seed, j, step), never on the batch split,
device count or sharding.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from diff_core import losses as core_losses
from diff_pixel.losses import drop_mask, example_keys, noise_batch, stratified_times
from diff_pixel.models.cond import Cond
from diff_pixel.models.parameterization import Parameterization
from diff_pixel.sid.recipes import Recipe
from diff_protocol import to_x_eps

__all__ = ["LOSS_BINS", "diffusion_loss", "recipe_loss"]

LOSS_BINS = 8
_COND_FIELDS = ("vector", "tokens", "token_lengths", "spatial")


def _backbone(model: Any) -> Any:
    """The network under any output parameterisation (``Predicts(net, "eps")`` reads its
    conditions through ``net``)."""
    while isinstance(model, Parameterization):
        model = model.net
    return model


def _has_condition(model: Any) -> bool:
    """Whether the model (or the network under its parameterisation) has conditioning embedders
    (a backbone's built-in or extra ones)."""
    embedders = getattr(_backbone(model), "embedders", None)
    return bool(callable(embedders) and embedders())


def _build_cond(model: Any, batch: Mapping[str, jax.Array], drop: jax.Array | None) -> Cond | None:
    """The batch's condition: ``batch["cond"]`` when given (any embedders), else the built-in
    fields (``label`` for class-conditional models, ``vector``, ``tokens``, ``token_lengths``,
    ``spatial``) read from the batch."""
    if not _has_condition(model):
        return None
    cfg = getattr(_backbone(model), "config", None)
    if isinstance(batch.get("cond"), Cond):
        cond = batch["cond"]
    else:
        fields: dict[str, Any] = {}
        if getattr(cfg, "num_classes", 0):
            fields["label"] = jnp.asarray(batch["label"], jnp.int32)
        for f in _COND_FIELDS:
            if f in batch:
                fields[f] = batch[f]
        cond = Cond(**fields)
    return cond if drop is None else cond.replace(drop=drop)


def _avg_pool(a: jax.Array, size: int) -> jax.Array:
    b, h, w, c = a.shape
    return a.reshape(b, size, h // size, size, w // size, c).mean(axis=(2, 4))


def diffusion_loss(
    model: Any,
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    recipe: Recipe,
    aux: Any = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """SiD/SiD2 training loss with the trainer's ``LossFn`` signature.

    Args:
      model: a backbone (or any model ``model(z, logsnr, cond, *, dropout_key)``); its output is
        read as ``model.prediction`` (``"v"`` for the backbones).
      batch: ``{"x": (B, H, W, C), "index": (B,) global example numbers, "slot": (B,) optional,
        "label": (B,) for class-conditional models}``, plus optional condition fields
        (``vector``, ``tokens``, ``token_lengths``, ``spatial``) or a ready ``Cond`` under
        ``"cond"``.
      key: the step key; example j uses ``example_keys(fold_in(key, 0), index)[j]`` and the model's
        dropout ``fold_in(key, 1)``.
      recipe: :class:`~diff_pixel.recipes.SiD2Recipe` or :class:`~diff_pixel.recipes.SiDRecipe`.
      aux: unused (kept for the trainer's signature).

    Returns:
      (loss, metrics) with metrics ``loss``, ``x_mse`` (mean (x̂ − x)²), and the per-example losses
      summed and counted in 8 equal λ-bins over the schedule's range: ``bin_loss_sum``,
      ``bin_loss_count`` (so bins average correctly across steps).
    """
    del aux
    if not isinstance(recipe, Recipe):
        raise TypeError(
            f"diffusion_loss: recipe must be a Recipe (SiD2Recipe, SiDRecipe, SiD2Variant), "
            f"got {type(recipe).__name__}"
        )
    x = jnp.asarray(batch["x"], jnp.float32)
    if x.ndim != 4:
        raise ValueError(f"diffusion_loss: batch['x'] must have shape (B, H, W, C), got {x.shape}")
    b = x.shape[0]
    index = batch.get("index")
    if index is None:
        raise ValueError(
            "diffusion_loss: batch must contain 'index' (global example numbers), got none"
        )
    keys = example_keys(jax.random.fold_in(key, 0), index)
    schedule, weighting = recipe.schedule(), recipe.weighting()

    t = stratified_times(keys, batch.get("slot"))
    eps = noise_batch(keys, x.shape)
    z, lam, dlam = core_losses.training_inputs(schedule, x, t, eps)
    drop = None
    if _has_condition(model) and recipe.p_uncond > 0:
        drop = drop_mask(keys, recipe.p_uncond)
    cond = _build_cond(model, batch, drop)
    prediction = getattr(model, "prediction", "v")
    out = model(z, lam, cond, dropout_key=jax.random.fold_in(key, 1)).astype(jnp.float32)

    def per_example(o: jax.Array, xx: jax.Array, ee: jax.Array) -> jax.Array:
        return core_losses.diffusion_loss(
            o, xx, ee, lam, dlam, prediction=prediction, weighting=weighting, space="eps"
        )

    if recipe.multiscale:
        # SiD's multiscale loss: Σ_s (1/s)·mean((Pool_s ε − Pool_s ε̂)²), s = 32, 64, …, d. The map
        # output ↦ ε is affine at fixed (z, λ), so pooling commutes with it.
        sizes = []
        s = 32
        while s <= min(x.shape[1], x.shape[2]):
            sizes.append(s)
            s *= 2
        ell = sum(
            (1.0 / s) * per_example(_avg_pool(out, s), _avg_pool(x, s), _avg_pool(eps, s))
            for s in sizes
        )
    else:
        ell = per_example(out, x, eps)
    loss = jnp.mean(ell)

    x_hat = to_x_eps(out, z, lam, prediction)[0]
    lo, hi = schedule.logsnr_range
    pos = (lam - lo) / (hi - lo) * LOSS_BINS
    bins = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, LOSS_BINS - 1)
    onehot = jax.nn.one_hot(bins, LOSS_BINS, dtype=jnp.float32)
    metrics = {
        "loss": loss,
        "x_mse": jnp.mean((x_hat - x) ** 2),
        "bin_loss_sum": onehot.T @ ell,
        "bin_loss_count": jnp.sum(onehot, axis=0),
    }
    del b
    return loss, metrics


@functools.cache
def recipe_loss(recipe: Recipe) -> Callable[..., tuple[jax.Array, dict[str, jax.Array]]]:
    """``loss_fn(model, batch, key, aux=None)`` = :func:`diffusion_loss` with ``recipe`` bound.

    Cached: equal recipes give the same function object, so trainers of equal models share one
    compiled step.
    """
    if not isinstance(recipe, Recipe):
        raise TypeError(
            f"recipe_loss: recipe must be a Recipe (SiD2Recipe, SiDRecipe, SiD2Variant), "
            f"got {type(recipe).__name__}"
        )

    def loss_fn(
        model: Any, batch: Mapping[str, jax.Array], key: jax.Array, aux: Any = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        return diffusion_loss(model, batch, key, recipe, aux)

    loss_fn.__name__ = f"diffusion_loss[{recipe.name}@{recipe.resolution}]"
    return loss_fn
