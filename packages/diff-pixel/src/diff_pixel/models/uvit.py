"""SiD's U-ViT (Hoogeboom, Heek, Salimans, *simple diffusion*, arXiv 2301.11093)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from diff_pixel.models.backbone import Backbone, Prepared
from diff_pixel.models.config import UViTConfig
from diff_pixel.models.embedders import Embedder
from diff_pixel.nn.resample import Downsample, Upsample

__all__ = ["UViT"]


class UViT(Backbone):
    r"""U-ViT: convolutional U-Net levels with concatenated skips around a transformer trunk.

    1–3. as :class:`~diff_pixel.models.ResidualUViT` (validation, embedding, stem: patching or the
       5/3 wavelet, SiD's "downsample immediately");
    4. down path: ResBlocks, each output pushed on a skip stack; Downsample between levels;
    5. trunk: ``mid_blocks`` transformer blocks at the lowest level (16×16 tokens for the paper's
       models);
    6. up path: Upsample, then ResBlocks on ``concat(h, skip.pop())`` (2C → C with a 1×1 skip
       projection);
    7. output as in the Residual U-ViT.

    Level maps are injected at the start of every level as in the Residual U-ViT.
    """

    registry_name: ClassVar[str] = "uvit"

    def __init__(
        self, config: UViTConfig, rngs: nnx.Rngs, *, embedders: Sequence[Embedder] = ()
    ) -> None:
        super().__init__(config, rngs, embedders=embedders)
        if config.arch != "uvit":
            raise ValueError(f"UViT: config.arch must be 'uvit', got {config.arch!r}")
        cfg, kw = config, dict(dtype=self.dtype, rngs=rngs)
        down, downsample = [], []
        for lv in range(cfg.num_levels):
            c = cfg.channels[lv]
            down.append(nnx.List([self._resblock(lv, c, rngs) for _ in range(cfg.blocks[lv])]))
            downsample.append(Downsample(c, cfg.channels[lv + 1], **kw))
        self.down = nnx.List(down)
        self.downsample = nnx.List(downsample)
        self.mid = nnx.List(
            [self._transformer(cfg.num_levels, rngs) for _ in range(cfg.mid_blocks)]
        )
        up, upsample = [], []
        for lv in reversed(range(cfg.num_levels)):
            c = cfg.channels[lv]
            upsample.append(Upsample(cfg.channels[lv + 1], c, **kw))
            up.append(nnx.List([self._resblock(lv, 2 * c, rngs) for _ in range(cfg.blocks[lv])]))
        self.up = nnx.List(up)
        self.upsample = nnx.List(upsample)

    def blocks(self) -> list[nnx.Module]:
        out = [b for level in self.down for b in level]
        out += list(self.mid)
        out += [b for level in self.up for b in level]
        return out

    def _body(
        self,
        h: jax.Array,
        p: Prepared,
        dropout_key: jax.Array | None,
        feats: dict[str, jax.Array],
    ) -> tuple[jax.Array, int]:
        cfg = self.config
        skips: list[jax.Array] = []
        pooled: dict[int, jax.Array] = {}
        for lv in range(cfg.num_levels):
            h = self._inject(h, f"down_{lv}", lv, p, pooled)
            for block in self.down[lv]:
                h = self._run(block, h, p, None, dropout_key)
                skips.append(h)
            feats[f"down_{lv}"] = h
            h = self.downsample[lv](h)
        h = self._inject(h, "mid", cfg.num_levels, p, pooled)
        ctx = self._context(cfg.num_levels, p)
        for block in self.mid:
            h = self._run(block, h, p, ctx, dropout_key)
        feats["mid"] = h
        for i, lv in enumerate(reversed(range(cfg.num_levels))):
            h = self.upsample[i](h)
            h = self._inject(h, f"up_{lv}", lv, p, pooled)
            for block in self.up[i]:
                h = self._run(
                    block, jnp.concatenate([h, skips.pop()], axis=-1), p, None, dropout_key
                )
            feats[f"up_{lv}"] = h
        return h, len(skips)
