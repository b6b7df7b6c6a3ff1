"""SiD2's Residual U-ViT (Hoogeboom et al., arXiv 2410.19324)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import jax
from flax import nnx

from diff_pixel.models.backbone import Backbone, Prepared
from diff_pixel.models.config import UViTConfig
from diff_pixel.models.embedders import Embedder
from diff_pixel.nn.resample import Downsample, Upsample

__all__ = ["ResidualUViT"]


class ResidualUViT(Backbone):
    r"""Residual U-ViT: a U-Net whose levels pass only a residual across the resolution change.

    Forward pass (v-prediction), with L outer levels:

    1. validate; append the embedders' stem maps (``cond.spatial`` and its mask channel, ...) to z;
    2. emb = LogSNREmbedding(λ) + the embedders' terms (Embed(label), Proj(vector), ...);
    3. stem: ``dwt53`` (if ``dwt_levels``) then PatchEmbed;
    4. down path, level l: ``blocks[l]`` blocks; :math:`h_{hi} = h`; :math:`h = \mathrm{Down}_l(h)`;
       :math:`h_{lo0} = h`; push :math:`(h_{hi}, h_{lo0})`;
    5. middle: ``mid_blocks`` transformer blocks;
    6. up path, from the deepest level: pop; :math:`h = \mathrm{Up}_l(h - h_{lo0}) + h_{hi}`;
       ``blocks[l]`` blocks;
    7. PatchUnembed, ``idwt53``; float32 output.

    With level maps (``spatial_levels`` or an embedder with ``level_channels``), each level
    (down, middle, up) starts by adding the map pooled to its grid through a zero-initialised 1×1
    linear. With one entry in ``channels`` there are no outer levels (steps 4 and 6 are empty).

    Every residual branch ends in a zero gate or zero-initialised layer and Upsample has no bias,
    so at initialisation the input of PatchUnembed equals the output of PatchEmbed exactly.

    Example:
      >>> from flax import nnx
      >>> from diff_pixel.models import ResidualUViT, UViTConfig
      >>> cfg = UViTConfig(
      ...     16,
      ...     1,
      ...     channels=(16, 32, 64, 128),
      ...     blocks=(1, 1, 1),
      ...     mid_blocks=2,
      ...     head_dim=16,
      ...     num_classes=10,
      ... )
      >>> model = ResidualUViT(cfg, nnx.Rngs(0))
    """

    registry_name: ClassVar[str] = "residual_uvit"

    def __init__(
        self, config: UViTConfig, rngs: nnx.Rngs, *, embedders: Sequence[Embedder] = ()
    ) -> None:
        super().__init__(config, rngs, embedders=embedders)
        if config.arch != "residual_uvit":
            raise ValueError(
                f"ResidualUViT: config.arch must be 'residual_uvit', got {config.arch!r}"
            )
        cfg, kw = config, dict(dtype=self.dtype, rngs=rngs)
        down, downsample = [], []
        for lv in range(cfg.num_levels):
            c = cfg.channels[lv]
            level = [
                self._transformer(lv, rngs)
                if cfg.block_types[lv] == "attn"
                else self._resblock(lv, c, rngs)
                for _ in range(cfg.blocks[lv])
            ]
            down.append(nnx.List(level))
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
            up.append(
                nnx.List(
                    [
                        self._transformer(lv, rngs)
                        if cfg.block_types[lv] == "attn"
                        else self._resblock(lv, c, rngs)
                        for _ in range(cfg.blocks[lv])
                    ]
                )
            )
        self.up = nnx.List(up)  # deepest level first
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
        stack: list[tuple[jax.Array, jax.Array]] = []
        pooled: dict[int, jax.Array] = {}
        for lv in range(cfg.num_levels):
            h = self._inject(h, f"down_{lv}", lv, p, pooled)
            ctx = self._context(lv, p) if cfg.block_types[lv] == "attn" else None
            for block in self.down[lv]:
                h = self._run(block, h, p, ctx, dropout_key)
            feats[f"down_{lv}"] = h
            h_hi = h
            h = self.downsample[lv](h)
            stack.append((h_hi, h))
        h = self._inject(h, "mid", cfg.num_levels, p, pooled)
        ctx = self._context(cfg.num_levels, p)
        for block in self.mid:
            h = self._run(block, h, p, ctx, dropout_key)
        feats["mid"] = h
        for i, lv in enumerate(reversed(range(cfg.num_levels))):
            h_hi, h_lo0 = stack.pop()
            h = self.upsample[i](h - h_lo0) + h_hi
            h = self._inject(h, f"up_{lv}", lv, p, pooled)
            ctx = self._context(lv, p) if cfg.block_types[lv] == "attn" else None
            for block in self.up[i]:
                h = self._run(block, h, p, ctx, dropout_key)
            feats[f"up_{lv}"] = h
        return h, len(stack)
