"""Named model presets and the model factory.

MAC counts are forward multiply-accumulates per image at batch 1 (see :func:`count_macs`). The SiD2
base configuration (channels 128/256/512/1024, 3+3 blocks with two ResBlock levels and one
transformer level, 16 middle blocks, MLP ratio 4) is derived so that it reproduces both published
cost figures, 137.44 GMAC at 128/1, 256/2, 512/4 and 652.84 GMAC at 256/1, 512/2
(arXiv 2410.19324 quotes 137 and 653 "GFLOPs", which are MACs); the paper's named sizes and
parameter counts are not confirmed and not claimed. The SiD 2B preset's trunk (36 blocks of width
2048 at 16×16, head_dim 128) and its ResBlock counts are our default (549.2 GMAC vs the paper's
555).

CPU presets for 8×8, 16×16 and 32×32 inputs include one-level ones (``channels`` of length 1: stem,
transformer blocks at the patch grid, head) for the packages that need them (8×8 digits, frame
models over small grids); they are our defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from flax import nnx

from diff_pixel.models.config import UViTConfig
from diff_pixel.models.embedders import Embedder
from diff_pixel.models.residual_uvit import ResidualUViT
from diff_pixel.models.uvit import UViT

__all__ = ["PRESETS", "abstract_model", "build_model", "preset_config"]

_SID2 = dict(
    arch="residual_uvit",
    in_channels=3,
    channels=(128, 256, 512, 1024),
    blocks=(3, 3, 3),
    block_types=("res", "res", "attn"),
    mid_blocks=16,
    head_dim=64,
    dropout=(0.0, 0.0, 0.1, 0.1),
    num_classes=1000,
)
_SID_2B = dict(
    arch="uvit",
    in_channels=3,
    channels=(128, 256, 512, 2048),
    blocks=(2, 2, 2),
    block_types=("res", "res", "res"),
    mid_blocks=36,
    head_dim=128,
    dropout=(0.0, 0.0, 0.0, 0.1),
    num_classes=1000,
)
_TINY = dict(
    arch="residual_uvit",
    in_channels=1,
    channels=(16, 32, 64, 128),
    blocks=(1, 1, 1),
    block_types=("res", "res", "attn"),
    mid_blocks=2,
    head_dim=16,
    dropout=(0.0, 0.0, 0.1, 0.1),
    num_classes=10,
)


def _cfg(base: dict[str, Any], **kw: Any) -> UViTConfig:
    return UViTConfig(**{**base, **kw})


#: Named configurations (``build_model(name, **overrides)`` builds them).
PRESETS: dict[str, UViTConfig] = {
    # SiD2 Residual U-ViT, 137.44 GMAC: grid 128, 64, 32, 16.
    "sid2-128-p1": _cfg(_SID2, image_size=128, patch_size=1),
    "sid2-256-p2": _cfg(_SID2, image_size=256, patch_size=2),
    "sid2-512-p4": _cfg(_SID2, image_size=512, patch_size=4),
    # SiD2 Residual U-ViT, 652.84 GMAC: grid 256, 128, 64, 32.
    "sid2-256-p1": _cfg(_SID2, image_size=256, patch_size=1),
    "sid2-512-p2": _cfg(_SID2, image_size=512, patch_size=2),
    # Development size: grid 64, 32, 16, 8.
    "sid2-dev-128-p2": _cfg(_SID2, image_size=128, patch_size=2),
    # SiD U-ViT 2B: ResBlock levels 128, 64, 32; trunk 16×16 × 2048.
    "sid-2b-256-p2": _cfg(_SID_2B, image_size=256, patch_size=2),
    "sid-2b-512-p4": _cfg(_SID_2B, image_size=512, patch_size=4),
    "sid-2b-256-dwt": _cfg(_SID_2B, image_size=256, patch_size=1, dwt_levels=1),
    "sid-2b-512-dwt": _cfg(_SID_2B, image_size=512, patch_size=1, dwt_levels=2),
    # CPU presets.
    "tiny-16": _cfg(_TINY, image_size=16),
    "small-16": _cfg(_TINY, image_size=16, channels=(32, 64, 128, 256), head_dim=32),
    "sid-tiny-16": _cfg(
        _TINY,
        image_size=16,
        arch="uvit",
        block_types=("res", "res", "res"),
        dropout=(0.0, 0.0, 0.0, 0.1),
    ),
    "tiny-rgb-32": _cfg(
        _TINY,
        image_size=32,
        patch_size=2,
        in_channels=3,
        channels=(32, 64, 128, 256),
        head_dim=32,
        num_classes=0,
    ),
    # 8×8 digits, patch 1: a ResBlock level at 8×8, two transformer blocks at 4×4.
    "tiny-8": _cfg(
        _TINY,
        image_size=8,
        channels=(32, 64),
        blocks=(1,),
        block_types=("res",),
        head_dim=16,
        dropout=(0.0, 0.1),
    ),
    # One level: two transformer blocks on the 8×8 pixels.
    "tiny-8-l1": _cfg(
        _TINY, image_size=8, channels=(64,), blocks=(), block_types=(), head_dim=32, dropout=(0.1,)
    ),
    # One level: four transformer blocks on 8×8 patches of 2×2 (16×16) or 4×4 (32×32) pixels.
    "tiny-16-l1": _cfg(
        _TINY,
        image_size=16,
        patch_size=2,
        channels=(64,),
        blocks=(),
        block_types=(),
        mid_blocks=4,
        dropout=(0.1,),
    ),
    "tiny-32-l1": _cfg(
        _TINY,
        image_size=32,
        patch_size=4,
        channels=(64,),
        blocks=(),
        block_types=(),
        mid_blocks=4,
        dropout=(0.1,),
        num_classes=0,
    ),
}


def preset_config(name: str | UViTConfig, **overrides: Any) -> UViTConfig:
    """The configuration of preset ``name`` (or a given config) with field ``overrides`` applied."""
    if isinstance(name, UViTConfig):
        cfg = name
    elif isinstance(name, str) and name in PRESETS:
        cfg = PRESETS[name]
    else:
        raise ValueError(f"build_model: preset must be one of {sorted(PRESETS)}, got {name!r}")
    return cfg.replace(**overrides) if overrides else cfg


def build_model(
    name: str | UViTConfig,
    *,
    seed: int = 0,
    rngs: nnx.Rngs | None = None,
    embedders: Sequence[Embedder] = (),
    **overrides: Any,
) -> ResidualUViT | UViT:
    """Build the backbone of preset ``name`` (or of a :class:`UViTConfig`) with ``overrides``.

    ``embedders`` are conditioning embedders besides the built-in ones (see
    :mod:`diff_pixel.models.embedders`). Weights are drawn on the host from ``seed`` (or
    ``rngs``): deterministic, and no XLA program is compiled (:mod:`diff_pixel.nn.init`).

    Example:
      >>> model = build_model("tiny-16", dropout=(0.0, 0.0, 0.0, 0.0))
      >>> model.config.num_classes
      10
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"build_model: seed must be an int, got {seed!r:.40}")
    if rngs is not None and not isinstance(rngs, nnx.Rngs):
        raise TypeError(f"build_model: rngs must be an nnx.Rngs or None, got {type(rngs).__name__}")
    if isinstance(embedders, (str, bytes)) or not isinstance(embedders, (list, tuple)):
        raise TypeError(
            f"build_model: embedders must be a sequence of Embedder modules, got "
            f"{type(embedders).__name__}"
        )
    cfg = preset_config(name, **overrides)
    rngs = nnx.Rngs(seed) if rngs is None else rngs
    cls = ResidualUViT if cfg.arch == "residual_uvit" else UViT
    return cls(cfg, rngs, embedders=tuple(embedders))


def abstract_model(
    name: str | UViTConfig, *, embedders: Sequence[Embedder] = (), **overrides: Any
) -> ResidualUViT | UViT:
    """The model with ``jax.ShapeDtypeStruct`` parameters (``nnx.eval_shape``): no memory, no
    init."""
    cfg = preset_config(name, **overrides)
    return nnx.eval_shape(lambda: build_model(cfg, embedders=embedders))
