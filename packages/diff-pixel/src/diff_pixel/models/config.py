"""Configuration of the U-ViT backbones (SiD U-ViT and SiD2 Residual U-ViT)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["UViTConfig"]

_ARCHS = ("residual_uvit", "uvit")
_BLOCK_TYPES = ("res", "attn")
_FRAME_ATTENTION = ("none", "joint", "factorized")
_DTYPES = ("float32", "bfloat16")
_IMPLS = ("auto", "xla", "cudnn")
_TUPLE_FIELDS = ("channels", "blocks", "block_types", "dropout")


def _err(name: str, expected: str, got: Any) -> ValueError:
    return ValueError(f"UViTConfig: {name} must be {expected}, got {got!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class UViTConfig:
    """Architecture of a U-ViT backbone; serialisable to JSON (``to_dict`` / ``from_dict``).

    Level l of the outer levels (l < L = len(channels) − 1) runs ``blocks[l]`` blocks of
    ``block_types[l]`` at grid ``G / 2^l`` with ``channels[l]`` channels, on the down and on the up
    path; the middle level runs ``mid_blocks`` transformer blocks at ``G / 2^L`` with
    ``channels[-1]`` channels. G = image_size / (patch_size · 2^dwt_levels). With one entry in
    ``channels`` (``blocks=()``, ``block_types=()``, one dropout rate) there are no outer levels:
    stem, ``mid_blocks`` transformer blocks at G, head.

    ``num_classes``, ``vector_dim``, ``token_dim`` and ``spatial_channels`` ask for the built-in
    embedders of the label, vector, tokens and spatial conditions (0 = none);
    ``spatial_levels=True`` also injects the spatial map at every level (average-pooled to the
    level's grid, through a zero-initialised 1×1 linear, at the start of each level).

    Our defaults where the papers are not confirmed: embedding width 4 × channels[0], AdaLN-zero /
    FiLM conditioning, 2-D RoPE, head_dim 64, dropout per level, ``max_frames`` for the learned
    frame-index embedding.
    """

    image_size: int | tuple[int, int]
    in_channels: int = 3
    out_channels: int | None = None
    arch: Literal["residual_uvit", "uvit"] = "residual_uvit"
    patch_size: int = 1
    dwt_levels: int = 0
    channels: tuple[int, ...] = (128, 256, 512, 1024)
    blocks: tuple[int, ...] = (3, 3, 3)
    block_types: tuple[str, ...] = ("res", "res", "attn")
    mid_blocks: int = 16
    head_dim: int = 64
    mlp_ratio: int = 4
    emb_dim: int | None = None
    dropout: tuple[float, ...] = (0.0, 0.0, 0.1, 0.1)
    pos_emb: Literal["rope", "none"] = "rope"
    num_classes: int = 0
    vector_dim: int = 0
    token_dim: int = 0
    spatial_channels: int = 0
    spatial_levels: bool = False
    frame_axis: bool = False
    frame_attention: Literal["none", "joint", "factorized"] = "factorized"
    frame_positions: bool = True
    max_frames: int = 16
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    attention_impl: Literal["auto", "xla", "cudnn"] = "auto"
    remat: bool = False

    def __post_init__(self) -> None:
        for name in _TUPLE_FIELDS:
            v = getattr(self, name)
            if isinstance(v, list):
                object.__setattr__(self, name, tuple(v))
        if isinstance(self.image_size, list):
            object.__setattr__(self, "image_size", tuple(self.image_size))
        self.validate()

    # ---------------------------------------------------------------- derived quantities
    @property
    def height(self) -> int:
        return self.image_size if _is_int(self.image_size) else self.image_size[0]

    @property
    def width(self) -> int:
        return self.image_size if _is_int(self.image_size) else self.image_size[1]

    @property
    def out_ch(self) -> int:
        """Output channels (``out_channels`` or ``in_channels``)."""
        return self.in_channels if self.out_channels is None else self.out_channels

    @property
    def emb(self) -> int:
        """Embedding width (``emb_dim`` or 4 × channels[0])."""
        return 4 * self.channels[0] if self.emb_dim is None else self.emb_dim

    @property
    def num_levels(self) -> int:
        """Number of outer levels L = len(channels) − 1."""
        return len(self.channels) - 1

    @property
    def stem_in_channels(self) -> int:
        """Channels entering the stem from the built-in embedders: z, the spatial condition and its
        mask channel (extra embedders may add more: ``Backbone.stem_channels``)."""
        return self.in_channels + (self.spatial_channels + 1 if self.spatial_channels else 0)

    @property
    def downsampling(self) -> int:
        """Total downsampling factor from pixels to the middle level."""
        return self.patch_size * 2**self.dwt_levels * 2**self.num_levels

    def grid(self, level: int) -> tuple[int, int]:
        """Token grid (h, w) at ``level`` (0 = after the stem, L = middle)."""
        f = self.patch_size * 2**self.dwt_levels * 2**level
        return self.height // f, self.width // f

    def attention_levels(self) -> tuple[int, ...]:
        """Levels running transformer blocks (the middle level L always does)."""
        return tuple(i for i, t in enumerate(self.block_types) if t == "attn") + (self.num_levels,)

    # ---------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        size = self.image_size
        if _is_int(size):
            if size <= 0:
                raise _err("image_size", "a positive int or (H, W)", size)
        elif not (
            isinstance(size, tuple) and len(size) == 2 and all(_is_int(s) and s > 0 for s in size)
        ):
            raise _err("image_size", "a positive int or (H, W)", size)
        for name in (
            "in_channels",
            "patch_size",
            "mid_blocks",
            "head_dim",
            "mlp_ratio",
            "max_frames",
        ):
            v = getattr(self, name)
            if not _is_int(v) or v <= 0:
                raise _err(name, "a positive int", v)
        for name in ("dwt_levels", "num_classes", "vector_dim", "token_dim", "spatial_channels"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise _err(name, "a non-negative int", v)
        if self.out_channels is not None and (
            not _is_int(self.out_channels) or self.out_channels <= 0
        ):
            raise _err("out_channels", "None or a positive int", self.out_channels)
        if self.emb_dim is not None and (not _is_int(self.emb_dim) or self.emb_dim <= 0):
            raise _err("emb_dim", "None or a positive int", self.emb_dim)
        if self.arch not in _ARCHS:
            raise _err("arch", f"one of {_ARCHS}", self.arch)
        if not (isinstance(self.channels, tuple) and len(self.channels) >= 1):
            raise _err("channels", "a tuple of at least 1 positive int", self.channels)
        if not all(_is_int(c) and c > 0 for c in self.channels):
            raise _err("channels", "a tuple of positive ints", self.channels)
        n = len(self.channels) - 1
        if not (isinstance(self.blocks, tuple) and len(self.blocks) == n):
            raise _err("blocks", f"a tuple of len(channels) - 1 = {n} ints", self.blocks)
        if not all(_is_int(b) and b >= 0 for b in self.blocks):
            raise _err("blocks", "a tuple of non-negative ints", self.blocks)
        if not (isinstance(self.block_types, tuple) and len(self.block_types) == n):
            raise _err("block_types", f"a tuple of len(channels) - 1 = {n} names", self.block_types)
        if not all(t in _BLOCK_TYPES for t in self.block_types):
            raise _err("block_types", f"a tuple of names in {_BLOCK_TYPES}", self.block_types)
        if self.arch == "uvit" and any(t != "res" for t in self.block_types):
            raise _err("block_types", "all 'res' for arch='uvit' (SiD)", self.block_types)
        if not (isinstance(self.dropout, tuple) and len(self.dropout) == n + 1):
            raise _err("dropout", f"a tuple of len(channels) = {n + 1} rates", self.dropout)
        if not all(isinstance(r, (int, float)) and 0.0 <= r < 1.0 for r in self.dropout):
            raise _err("dropout", "a tuple of rates in [0, 1)", self.dropout)
        if self.pos_emb not in ("rope", "none"):
            raise _err("pos_emb", "'rope' or 'none'", self.pos_emb)
        if self.frame_attention not in _FRAME_ATTENTION:
            raise _err("frame_attention", f"one of {_FRAME_ATTENTION}", self.frame_attention)
        if self.compute_dtype not in _DTYPES:
            raise _err("compute_dtype", f"one of {_DTYPES}", self.compute_dtype)
        if self.attention_impl not in _IMPLS:
            raise _err("attention_impl", f"one of {_IMPLS}", self.attention_impl)
        for name in ("frame_axis", "frame_positions", "remat", "spatial_levels"):
            if not isinstance(getattr(self, name), bool):
                raise _err(name, "a bool", getattr(self, name))
        if self.spatial_levels and not self.spatial_channels:
            raise _err("spatial_levels", "False when spatial_channels=0 (no map to inject)", True)
        if self.head_dim % 2:
            raise _err("head_dim", "even (rotary pairs)", self.head_dim)
        for level in self.attention_levels():
            if self.channels[level] % self.head_dim:
                raise _err(
                    "channels",
                    f"divisible by head_dim={self.head_dim} on attention level {level}",
                    self.channels,
                )
        f = self.downsampling
        if self.height % f or self.width % f:
            raise _err(
                "image_size",
                f"divisible by patch_size * 2**dwt_levels * 2**(len(channels) - 1) = {f}",
                self.image_size,
            )

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name.startswith("_"):
                continue
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UViTConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a ``TypeError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        unknown = sorted(set(d) - names)
        if unknown:
            raise TypeError(
                f"UViTConfig.from_dict: keys must be config fields, got unknown {unknown}"
            )
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UViTConfig:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> UViTConfig:
        """A validated copy with ``changes`` applied."""
        names = {f.name for f in dataclasses.fields(self) if not f.name.startswith("_")}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"UViTConfig.replace: fields must be config fields, got {unknown}")
        return dataclasses.replace(self, **changes)
