"""Cost model: analytic MACs per component and XLA's count from the lowered HLO.

The papers' "GFLOPs" are multiply-accumulates (MACs). :func:`count_macs` counts the blocks'
convolutions (1×1 skip projections included), their dense layers and the attention products
(QKᵀ and AV), and leaves out the stem, resampling, modulation and embeddings. :func:`xla_macs`
takes half the FLOPs of XLA's cost analysis of the *lowered* (not compiled) forward pass with XLA
attention, which also counts resampling, norms, modulation and element-wise work. The cost analysis
of a GPU-compiled module must not be used: GEMMs, convolutions and cuDNN attention become custom
calls it does not count.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from diff_pixel.models.cond import Cond
from diff_pixel.models.config import UViTConfig
from diff_pixel.nn.attention import force_attention_impl

__all__ = ["count_macs", "lowered_cost", "xla_macs"]


def _resblock(din: int, dout: int, n: int) -> int:
    macs = 9 * din * dout * n + 9 * dout * dout * n
    if din != dout:
        macs += din * dout * n
    return macs


def _transformer(cfg: UViTConfig, level: int, frames: int, tokens: int) -> tuple[int, int]:
    """(dense, attention) MACs of one transformer block at ``level`` (all frames)."""
    c = cfg.channels[level]
    h, w = cfg.grid(level)
    hw = h * w
    n = frames * hw
    dense = (4 + 2 * cfg.mlp_ratio) * c * c * n
    mode = cfg.frame_attention if cfg.frame_axis else "none"
    if mode == "joint":
        attn = 2 * n * n * c
    else:
        attn = frames * 2 * hw * hw * c
    if mode == "factorized" and cfg.frame_axis:
        dense += 4 * c * c * n
        attn += hw * 2 * frames * frames * c
    if cfg.token_dim:
        k = tokens + 1  # the null token
        dense += 2 * c * c * n + 2 * c * c * k  # q, out; k, v of the projected tokens
        attn += 2 * n * k * c
    return dense, attn


def count_macs(
    config: UViTConfig, batch: int = 1, *, frames: int = 1, tokens: int = 0
) -> dict[str, float]:
    """Analytic forward MACs of a backbone, per component.

    Returns a dict with ``conv``, ``dense``, ``attention``, ``total`` and per-level totals
    ``level_0`` … ``level_{L-1}`` (down and up path) and ``mid``, all multiplied by ``batch``.
    ``frames`` applies to frame models, ``tokens`` (K) to token-conditioned ones.

    Example (exact arithmetic): ``count_macs(PRESETS["sid2-256-p2"])["total"] / 1e9`` = 137.44.
    """
    if not isinstance(config, UViTConfig):
        raise TypeError(f"count_macs: config must be a UViTConfig, got {type(config).__name__}")
    if batch < 1 or frames < 1 or tokens < 0:
        raise ValueError(
            f"count_macs: batch and frames must be >= 1 and tokens >= 0, got {batch}, {frames}, "
            f"{tokens}"
        )
    cfg = config
    out: dict[str, float] = {"conv": 0.0, "dense": 0.0, "attention": 0.0}
    for lv in range(cfg.num_levels):
        h, w = cfg.grid(lv)
        n = frames * h * w
        c = cfg.channels[lv]
        level = 0
        for _ in range(cfg.blocks[lv]):
            if cfg.block_types[lv] == "res":
                down = _resblock(c, c, n)
                up = _resblock(2 * c, c, n) if cfg.arch == "uvit" else down
                out["conv"] += down + up
                level += down + up
            else:
                d, a = _transformer(cfg, lv, frames, tokens)
                out["dense"] += 2 * d
                out["attention"] += 2 * a
                level += 2 * (d + a)
        out[f"level_{lv}"] = float(level)
    d, a = _transformer(cfg, cfg.num_levels, frames, tokens)
    out["dense"] += cfg.mid_blocks * d
    out["attention"] += cfg.mid_blocks * a
    out["mid"] = float(cfg.mid_blocks * (d + a))
    out["total"] = out["conv"] + out["dense"] + out["attention"]
    return {k: float(v) * batch for k, v in out.items()}


def _abstract(x: Any) -> Any:
    if x is None:
        return None
    return jax.ShapeDtypeStruct(
        jnp.shape(x), jnp.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype
    )


def xla_macs(
    model: nnx.Module,
    z_shape: tuple[int, ...],
    cond: Cond | None = None,
    *,
    logsnr_shape: tuple[int, ...] | None = None,
) -> float:
    """Half the FLOPs of XLA's cost analysis of the lowered forward pass (XLA attention).

    Lowering only, no compilation: cheap even for multi-GB models, and ``model`` may be abstract
    (:func:`~diff_pixel.models.abstract_model`). The count is for the whole call at ``z_shape``
    (divide by the batch for a per-image figure).

    Args:
      model: a backbone (concrete or abstract) or any NNX module with the denoiser signature.
      z_shape: input shape, e.g. (1, 256, 256, 3).
      cond: conditions (arrays or ``jax.ShapeDtypeStruct``), e.g. ``Cond(label=jnp.zeros(1, int))``.
      logsnr_shape: shape of logsnr (default (B,)).
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"xla_macs: model must be an nnx.Module, got {type(model).__name__}")
    if not (isinstance(z_shape, tuple) and all(isinstance(s, int) and s > 0 for s in z_shape)):
        raise ValueError(f"xla_macs: z_shape must be a tuple of positive ints, got {z_shape!r}")
    graphdef, state = nnx.split(model)
    state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    z = jax.ShapeDtypeStruct(z_shape, jnp.float32)
    lam = jax.ShapeDtypeStruct(logsnr_shape or z_shape[:1], jnp.float32)
    cond = None if cond is None else jax.tree.map(_abstract, cond)

    def forward(state: Any, z: jax.Array, lam: jax.Array, cond: Cond | None) -> jax.Array:
        return nnx.merge(graphdef, state)(z, lam, cond)

    with force_attention_impl("xla"):
        lowered = jax.jit(forward).lower(state, z, lam, cond)
    return lowered_cost(lowered)["flops"] / 2.0


def lowered_cost(lowered: Any) -> dict[str, float]:
    """The numeric entries of XLA's cost analysis of a lowered program (``flops``, ``bytes
    accessed``, ...); nothing is compiled or run. Where jax returns one dict per computation, the
    first (the entry computation) is taken."""
    analysis = lowered.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    return {k: float(v) for k, v in (analysis or {}).items() if isinstance(v, (int, float))}
