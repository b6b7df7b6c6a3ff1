"""``salun`` — SalUn (Fan et al., ICLR 2024, arXiv 2310.12508; OPTML-Group/Unlearn-Saliency).

Saliency mask ``m = 1[|∇_θ l_diff(θ₀; D_f)| ≥ median]`` over all scalar parameters together (the
top half), from the gradient summed over 8 forget batches, computed once before the first step and
kept in the trainer's checkpointed ``extra``; the update minimises ``forget_random_label +
α retain_data`` with the gradient multiplied by m, as SalUn multiplies ``param.grad`` by the mask.
With Adam (no weight decay) a parameter whose gradient is always 0 never moves: every parameter
outside the mask stays bitwise θ₀.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_pixel import Loader
from diff_unlearn.losses import LossSetup, forget_random_label, neg_grad, retain_data
from diff_unlearn.methods.base import (
    MethodLoss,
    UnlearnMethod,
    batch_part,
    check_weight,
    param_split,
)

__all__ = ["masked", "salun", "saliency_mask"]

MASK_BATCHES = 8


def masked(model: nnx.Module, mask: Any) -> nnx.Module:
    """``model`` whose parameters pass gradients only where ``mask`` is True (same values)."""
    graphdef, params, rest = param_split(model)
    params = jax.tree.map(lambda p, m: jnp.where(m, p, jax.lax.stop_gradient(p)), params, mask)
    return nnx.merge(graphdef, params, rest)


def saliency_mask(
    setup: LossSetup,
    original: nnx.Module,
    batches: list[dict[str, Any]],
    key: jax.Array,
    fraction: float = 0.5,
) -> nnx.State:
    """Boolean mask (a State like the model's ``nnx.Param`` state) selecting the ``fraction`` of
    scalar parameters with the largest ``|Σ_b ∇ l_diff(θ₀; batch_b)|`` (ties broken by position)."""
    graphdef, params, rest = param_split(original)

    @jax.jit
    def grad(params, batch, k):
        def f(p):
            m = nnx.merge(graphdef, p, rest)
            return -neg_grad(setup, m, batch, k)[0]  # l_diff on forget data, no label dropout

        return jax.grad(f)(params)

    total = jax.tree.map(jnp.zeros_like, params)
    for i, b in enumerate(batches):
        g = grad(params, {k: jnp.asarray(v) for k, v in b.items()}, jax.random.fold_in(key, i))
        total = jax.tree.map(jnp.add, total, g)
    leaves, treedef = jax.tree.flatten(total)
    flat = np.concatenate([np.abs(np.asarray(x)).ravel() for x in leaves])
    k = int(round(fraction * flat.size))
    order = np.argsort(-flat, kind="stable")
    keep = np.zeros(flat.size, bool)
    keep[order[:k]] = True
    out, pos = [], 0
    for x in leaves:
        out.append(jnp.asarray(keep[pos : pos + x.size].reshape(x.shape)))
        pos += x.size
    return jax.tree.unflatten(treedef, out)


@dataclass(frozen=True)
class SalUnLoss(MethodLoss):
    alpha: float = 1.0
    method: str = field(default="salun", init=False)

    def __call__(self, model, batch, key, aux, extra):
        m = masked(model, extra["mask"])
        lf, _ = forget_random_label(self.setup, m, batch_part(batch, "forget"), key)
        lr, _ = retain_data(self.setup, m, batch_part(batch, "retain"), key)
        return lf + self.alpha * lr, {"forget_loss": lf, "retain_loss": lr}, extra


@dataclass(frozen=True)
class SalUnInit:
    fraction: float = 0.5

    def __call__(self, model, original, task, setup, seed, forget_batch):
        loader = Loader(task.subset("forget"), forget_batch, seed=seed + 2)
        batches = [
            {k: v for k, v in next(loader).items() if k in ("x", "label", "index")}
            for _ in range(MASK_BATCHES)
        ]
        key = jax.random.fold_in(jax.random.key(seed), 2**31 - 2)
        return {"mask": saliency_mask(setup, original, batches, key, self.fraction)}


def salun(setup: LossSetup, alpha: float = 1.0, fraction: float = 0.5) -> UnlearnMethod:
    """SalUn with retain weight α (1, our default; its maintainers advise 1e−3 at their loss
    scale for class-conditional DDPM, OPTML-Group/Unlearn-Saliency#19) and mask ``fraction``."""
    alpha = check_weight("salun", "alpha", alpha)
    if not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 1.0:
        raise ValueError(f"salun: fraction must be in (0, 1], got {fraction!r}")
    return UnlearnMethod(
        "salun",
        SalUnLoss(setup, alpha),
        init=SalUnInit(float(fraction)),
        hparams=(("alpha", alpha), ("fraction", float(fraction))),
    )
