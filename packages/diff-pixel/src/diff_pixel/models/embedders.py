r"""Conditioning embedders: one small module per kind of condition, plugged into a backbone.

The contract (what a package implements to add a condition without editing diff-pixel):

- An :class:`Embedder` is an ``nnx.Module`` that reads some entries of a :class:`Cond`: Cond
  fields named in ``fields`` and keys of ``cond.extra`` named in ``extra_keys``.
- At construction it declares what it contributes, as static ints (0 = nothing):
  ``emb_dim`` (a term added to the global embedding; must equal the backbone's ``config.emb``),
  ``stem_channels`` (channels concatenated to z before the stem), ``token_dim`` (a token sequence
  for cross-attention; at most one embedder per backbone) and ``level_channels`` (a map injected
  at every level).
- ``embedder(cond, ctx) -> Contribution`` validates its own input (shape, dtype, range; messages
  name ``cond.<field>`` or ``cond.extra[<key>]`` via ``ctx.fail``) and applies the null where
  ``ctx.drop`` is True (``ctx.null_where``), so that a dropped example's output does not depend
  on the entry's contents. Contributions are float32 (lengths int32):

  ======================  ======================================================================
  ``emb``                 (B, E) or per frame (B, F, E), added to the λ embedding
  ``stem``                (B, H, W, C) or (B, F, H, W, C), concatenated to z before the stem
  ``tokens``              (B, K, D) and ``token_lengths`` (B,) int32 (a valid prefix)
  ``levels``              (B, H, W, C) or (B, F, H, W, C) at z's H, W: average-pooled to each
                          level's grid, projected by a zero-initialised 1×1 linear to that level's
                          channels and added at the start of every level (down, middle, up)
  ======================  ======================================================================

- For serialisation it has ``registry_name`` (ClassVar), ``to_config() -> dict`` (JSON-able)
  and ``from_config(config, *, rngs)``; a package registers the class under the ``diff.embedders``
  entry-point group (``[project.entry-points."diff.embedders"]``) so a model description that
  names it can be rebuilt (:func:`diff_pixel.models.registry.from_description`).

The backbone builds the built-in embedders from its :class:`~diff_pixel.models.UViTConfig`
(:class:`LabelEmbedder`, :class:`VectorEmbedder`, :class:`TokenEmbedder`,
:class:`SpatialEmbedder`) and takes further ones at construction
(``build_model(name, embedders=[...])``). The noise level and frame positions stay built in.
Null semantics follow classifier-free guidance (Ho & Salimans, arXiv 2207.12598).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_pixel.models.cond import Cond
from diff_pixel.nn import init as _init

__all__ = [
    "Contribution",
    "EmbedContext",
    "Embedder",
    "LabelEmbedder",
    "SpatialEmbedder",
    "TokenEmbedder",
    "VectorEmbedder",
    "concrete",
]


def concrete(x: Any) -> bool:
    """True when ``x`` holds values (not a tracer), so range checks can run."""
    return not isinstance(x, jax.core.Tracer)


class EmbedContext(NamedTuple):
    """What an embedder knows about the call (all static except ``drop``)."""

    model: str  # class name of the backbone, for messages
    batch: int  # B
    frames: int | None  # F for frame models, else None
    height: int  # H of z (pixels)
    width: int  # W of z
    emb_dim: int  # E of the backbone
    drop: jax.Array | None  # (B,) bool, already validated

    def fail(self, entry: str, expected: str, got: Any) -> ValueError:
        """``ValueError("<model>: <entry> must be <expected>, got <got>")``."""
        return ValueError(f"{self.model}: {entry} must be {expected}, got {got}")

    def null_where(self, value: jax.Array, null: Any) -> jax.Array:
        """``value`` with the examples where ``drop`` is True replaced by ``null`` (broadcast over
        the trailing axes); ``value`` itself when there is no ``drop``."""
        if self.drop is None:
            return value
        d = self.drop.reshape((self.batch,) + (1,) * (value.ndim - 1))
        return jnp.where(d, jnp.asarray(null, value.dtype), value)

    def map_shape(self, channels: int | str) -> str:
        """The expected shape of a pixel map, for messages."""
        lead = f"{self.batch}, " + ("F, " if self.frames is not None else "")
        return f"({lead}{self.height}, {self.width}, {channels})"


class Contribution(NamedTuple):
    """What an embedder adds to the forward pass; None = nothing of that kind."""

    emb: jax.Array | None = None
    stem: jax.Array | None = None
    tokens: jax.Array | None = None
    token_lengths: jax.Array | None = None
    levels: jax.Array | None = None


class _EmbedderMeta(type(nnx.Module), abc.ABCMeta):
    """NNX's module metaclass with abstract-method enforcement."""


class Embedder(nnx.Module, metaclass=_EmbedderMeta):
    """Base class of conditioning embedders (the contract is in the module docstring).

    Subclasses set ``registry_name``, the instance attributes ``fields`` / ``extra_keys`` (what
    they read) and the contribution sizes they use, and implement ``__call__``, ``to_config`` and
    ``from_config``.
    """

    registry_name: ClassVar[str] = ""
    fields: tuple[str, ...] = ()
    extra_keys: tuple[str, ...] = ()
    emb_dim: int = 0
    stem_channels: int = 0
    token_dim: int = 0
    level_channels: int = 0

    @abc.abstractmethod
    def __call__(self, cond: Cond, ctx: EmbedContext) -> Contribution:
        """Validate this embedder's entries of ``cond``, apply the null where ``ctx.drop``, and
        return the contribution."""

    @abc.abstractmethod
    def to_config(self) -> dict[str, Any]:
        """Constructor arguments as a JSON-able dict (no weights)."""

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: Mapping[str, Any], *, rngs: nnx.Rngs) -> Embedder:
        """Inverse of :meth:`to_config` (fresh weights from ``rngs``)."""

    def entries(self) -> tuple[str, ...]:
        """The Cond entries this embedder reads, named as in messages."""
        return tuple(self.fields) + tuple(f"extra[{k}]" for k in self.extra_keys)


def _positive(cls: str, name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{cls}: {name} must be a positive int, got {value!r}")
    return value


def _required(ctx: EmbedContext, entry: str, value: Any, built: str) -> Any:
    if value is None:
        raise ctx.fail(entry, f"given: the model was built with {built}", "None")
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise TypeError(f"{ctx.model}: {entry} must be an array, got {type(value).__name__}")
    return value


class LabelEmbedder(Embedder):
    """Class label → a learned embedding added to the global embedding.

    ``Embed(num_classes + 1, E)``; the null of a dropped example is label ``num_classes``.
    """

    registry_name: ClassVar[str] = "label"

    def __init__(self, num_classes: int, emb_dim: int, *, rngs: nnx.Rngs) -> None:
        self.num_classes = _positive("LabelEmbedder", "num_classes", num_classes)
        self.emb_dim = _positive("LabelEmbedder", "emb_dim", emb_dim)
        self.fields = ("label",)
        init = _init.variance_scaling(1.0, "fan_in", "normal", out_axis=0)
        self.embed = nnx.Embed(num_classes + 1, emb_dim, embedding_init=init, rngs=rngs)

    def __call__(self, cond: Cond, ctx: EmbedContext) -> Contribution:
        built = f"num_classes={self.num_classes}"
        label = _required(ctx, "cond.label", cond.label, built)
        if tuple(label.shape) != (ctx.batch,):
            raise ctx.fail("cond.label", f"an int array of shape ({ctx.batch},)", label.shape)
        label = jnp.asarray(label)
        if not jnp.issubdtype(label.dtype, jnp.integer):
            raise TypeError(
                f"{ctx.model}: cond.label must be an integer array, got dtype {label.dtype}"
            )
        if concrete(label) and label.size:
            arr = np.asarray(label)
            if arr.min() < 0 or arr.max() > self.num_classes:
                raise ctx.fail(
                    "cond.label",
                    f"in [0, num_classes={self.num_classes}] (num_classes = null label)",
                    f"values in [{arr.min()}, {arr.max()}]",
                )
        label = ctx.null_where(label, self.num_classes)
        return Contribution(emb=self.embed(label).astype(jnp.float32))

    def to_config(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "emb_dim": self.emb_dim}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, rngs: nnx.Rngs) -> LabelEmbedder:
        return cls(**config, rngs=rngs)


class VectorEmbedder(Embedder):
    """A vector per example (B, Dv) or per frame (B, F, Dv) → Linear(Dv → E) added to the
    global embedding; a dropped example gets a learned null embedding instead."""

    registry_name: ClassVar[str] = "vector"

    def __init__(
        self, vector_dim: int, emb_dim: int, *, per_frame: bool = False, rngs: nnx.Rngs
    ) -> None:
        self.vector_dim = _positive("VectorEmbedder", "vector_dim", vector_dim)
        self.emb_dim = _positive("VectorEmbedder", "emb_dim", emb_dim)
        self.per_frame = bool(per_frame)
        self.fields = ("vector",)
        self.proj = nnx.Linear(vector_dim, emb_dim, **_init.dense_inits(), rngs=rngs)
        self.null = nnx.Param(_init.normal(0.02)(rngs.params(), (emb_dim,)))

    def __call__(self, cond: Cond, ctx: EmbedContext) -> Contribution:
        v = _required(ctx, "cond.vector", cond.vector, f"vector_dim={self.vector_dim}")
        b, d = ctx.batch, self.vector_dim
        frames = self.per_frame and ctx.frames is not None
        ok = tuple(v.shape) == (b, d) or (
            frames and v.ndim == 3 and v.shape[0] == b and v.shape[2] == d
        )
        if not ok:
            exp = f"of shape ({b}, {d})" + (f" or ({b}, F, {d})" if frames else "")
            raise ctx.fail("cond.vector", exp, tuple(v.shape))
        if v.ndim == 3 and v.shape[1] != ctx.frames:
            raise ctx.fail("cond.vector", f"of shape ({b}, {ctx.frames}, {d})", tuple(v.shape))
        p = self.proj(jnp.asarray(v, jnp.float32))
        return Contribution(emb=ctx.null_where(p, self.null[...]))

    def to_config(self) -> dict[str, Any]:
        return {"vector_dim": self.vector_dim, "emb_dim": self.emb_dim, "per_frame": self.per_frame}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, rngs: nnx.Rngs) -> VectorEmbedder:
        return cls(**config, rngs=rngs)


class TokenEmbedder(Embedder):
    """A token sequence (B, K, Dt) with valid-prefix lengths (B,) for cross-attention.

    No parameters: the backbone projects the tokens to each attention level's width and every
    cross-attention prepends its learned null token. A dropped example gets length 0, so it
    attends to the null token only.
    """

    registry_name: ClassVar[str] = "tokens"

    def __init__(self, token_dim: int) -> None:
        self.token_dim = _positive("TokenEmbedder", "token_dim", token_dim)
        self.fields = ("tokens", "token_lengths")

    def __call__(self, cond: Cond, ctx: EmbedContext) -> Contribution:
        t = _required(ctx, "cond.tokens", cond.tokens, f"token_dim={self.token_dim}")
        b = ctx.batch
        if t.ndim != 3 or t.shape[0] != b or t.shape[2] != self.token_dim:
            raise ctx.fail("cond.tokens", f"of shape ({b}, K, {self.token_dim})", tuple(t.shape))
        k = t.shape[1]
        if cond.token_lengths is None:
            lengths = jnp.full((b,), k, jnp.int32)
        else:
            tl = cond.token_lengths
            if tuple(tl.shape) != (b,):
                raise ctx.fail("cond.token_lengths", f"of shape ({b},)", tuple(tl.shape))
            if concrete(tl):
                arr = np.asarray(tl)
                if arr.size and (arr.min() < 0 or arr.max() > k):
                    raise ctx.fail(
                        "cond.token_lengths", f"in [0, K={k}]", f"[{arr.min()}, {arr.max()}]"
                    )
            lengths = jnp.asarray(tl, jnp.int32)
        return Contribution(tokens=jnp.asarray(t), token_lengths=ctx.null_where(lengths, 0))

    def to_config(self) -> dict[str, Any]:
        return {"token_dim": self.token_dim}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, rngs: nnx.Rngs) -> TokenEmbedder:
        del rngs
        return cls(**config)


class SpatialEmbedder(Embedder):
    """A map with z's H, W → its channels plus a mask channel (1 = present), concatenated to z
    before the stem and, with ``levels=True``, injected at every level.

    A dropped example gets the map 0 and the mask 0.
    """

    registry_name: ClassVar[str] = "spatial"

    def __init__(self, channels: int, *, levels: bool = False) -> None:
        self.channels = _positive("SpatialEmbedder", "channels", channels)
        self.levels = bool(levels)
        self.fields = ("spatial",)
        self.stem_channels = channels + 1
        self.level_channels = channels + 1 if levels else 0

    def __call__(self, cond: Cond, ctx: EmbedContext) -> Contribution:
        s = _required(ctx, "cond.spatial", cond.spatial, f"spatial_channels={self.channels}")
        tail = (ctx.height, ctx.width, self.channels)
        if ctx.frames is None:
            ok = tuple(s.shape) == (ctx.batch,) + tail
        else:
            ok = s.ndim == 5 and s.shape[0] == ctx.batch and tuple(s.shape[2:]) == tail
            ok = ok and s.shape[1] == ctx.frames
        if not ok:
            raise ctx.fail(
                "cond.spatial", f"of shape {ctx.map_shape(self.channels)} matching z", s.shape
            )
        s = jnp.asarray(s, jnp.float32)
        x = jnp.concatenate([s, jnp.ones(s.shape[:-1] + (1,), jnp.float32)], axis=-1)
        x = ctx.null_where(x, 0.0)
        return Contribution(stem=x, levels=x if self.levels else None)

    def to_config(self) -> dict[str, Any]:
        return {"channels": self.channels, "levels": self.levels}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, rngs: nnx.Rngs) -> SpatialEmbedder:
        del rngs
        return cls(**config)
