"""Parts shared by the two U-ViT backbones: embedders, input validation, stem, head and the
per-level injection of conditioning maps.

Both :class:`~diff_pixel.models.ResidualUViT` and :class:`~diff_pixel.models.UViT` are
diff-protocol denoisers ``model(z, logsnr, cond=None, *, dropout_key=None) -> v_hat``; there is no
train/eval flag and no RNG stream in the forward pass (``dropout_key=None`` is evaluation).
Conditions enter through embedders (:mod:`diff_pixel.models.embedders`): the built-in ones come
from the config, further ones are passed at construction.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from diff_pixel.models.cond import Cond
from diff_pixel.models.config import UViTConfig
from diff_pixel.models.embedders import (
    Contribution,
    EmbedContext,
    Embedder,
    LabelEmbedder,
    SpatialEmbedder,
    TokenEmbedder,
    VectorEmbedder,
)
from diff_pixel.models.registry import describe_embedder, embedder_from_description
from diff_pixel.nn import init as _init
from diff_pixel.nn.conditioning import LogSNREmbedding
from diff_pixel.nn.patch import PatchEmbed, PatchUnembed
from diff_pixel.nn.resblock import ResBlock
from diff_pixel.nn.transformer import TransformerBlock
from diff_pixel.nn.wavelet import dwt53, idwt53

__all__ = ["Backbone", "Prepared"]

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Which config field builds the embedder of a Cond field (for "no embedder" messages).
_BUILT_BY = {
    "label": "num_classes",
    "vector": "vector_dim",
    "tokens": "token_dim",
    "token_lengths": "token_dim",
    "spatial": "spatial_channels",
}


class Prepared(NamedTuple):
    """Validated inputs of a forward pass, frames folded into the batch."""

    x: jax.Array  # (B·F, H, W, C_stem) stem input
    emb_flat: jax.Array  # (B·F, E) for ResBlocks
    emb_tok: jax.Array  # (B, E) or (B, F, E) for transformer blocks
    tokens: jax.Array | None  # (B, K, Dt)
    token_lengths: jax.Array | None  # (B,)
    levels: jax.Array | None  # (B·F, H, W, C_levels) map injected at every level
    batch: int
    frames: int | None


class _AbstractModuleMeta(type(nnx.Module), abc.ABCMeta):
    """NNX's module metaclass with abstract-method enforcement."""


def _avg_pool(x: jax.Array, grid: tuple[int, int]) -> jax.Array:
    """Average-pool (N, H, W, C) to (N, h, w, C); H, W multiples of h, w."""
    n, hh, ww, c = x.shape
    fh, fw = hh // grid[0], ww // grid[1]
    if fh == fw == 1:
        return x
    return x.reshape(n, grid[0], fh, grid[1], fw, c).mean(axis=(2, 4))


class Backbone(nnx.Module, metaclass=_AbstractModuleMeta):
    """Base class: embedders, stem, head, per-level injection; subclasses implement :meth:`_body`.

    Args:
      config: the architecture.
      rngs: parameter initialisation.
      embedders: further :class:`~diff_pixel.models.embedders.Embedder` instances (built by the
        caller) besides the built-in ones the config asks for (label, vector, tokens, spatial).

    Attributes (derived from the embedders): ``stem_channels`` (z's channels plus every stem
    map's), ``token_dim`` (width of the cross-attention tokens, 0 = no cross-attention),
    ``level_channels`` (channels of the map injected at every level, 0 = no injection) and
    ``level_proj`` (the zero-initialised 1×1 projections by site, see :meth:`injection_sites`).
    """

    prediction = "v"
    registry_name: ClassVar[str] = ""

    def __init__(
        self, config: UViTConfig, rngs: nnx.Rngs, *, embedders: Sequence[Embedder] = ()
    ) -> None:
        name = type(self).__name__
        if not isinstance(config, UViTConfig):
            raise TypeError(f"{name}: config must be a UViTConfig, got {type(config).__name__}")
        if isinstance(embedders, Embedder) or not isinstance(embedders, Sequence):
            raise TypeError(
                f"{name}: embedders must be a sequence of Embedder, got {type(embedders).__name__}"
            )
        for i, e in enumerate(embedders):
            if not isinstance(e, Embedder):
                raise TypeError(
                    f"{name}: embedders[{i}] must be a diff_pixel.models.embedders.Embedder, got "
                    f"{type(e).__name__}"
                )
        self.config = config
        self.dtype = _DTYPES[config.compute_dtype]
        cfg, e = config, config.emb
        self.logsnr_emb = LogSNREmbedding(e, rngs=rngs)
        self.label_emb = LabelEmbedder(cfg.num_classes, e, rngs=rngs) if cfg.num_classes else None
        self.vector_emb = (
            VectorEmbedder(cfg.vector_dim, e, per_frame=cfg.frame_axis, rngs=rngs)
            if cfg.vector_dim
            else None
        )
        self.token_emb = TokenEmbedder(cfg.token_dim) if cfg.token_dim else None
        self.spatial_emb = (
            SpatialEmbedder(cfg.spatial_channels, levels=cfg.spatial_levels)
            if cfg.spatial_channels
            else None
        )
        self.extra_embedders = nnx.List(list(embedders))
        self.frame_emb = (
            nnx.Embed(
                cfg.max_frames,
                e,
                embedding_init=_init.variance_scaling(1.0, "fan_in", "normal", out_axis=0),
                rngs=rngs,
            )
            if cfg.frame_axis and cfg.frame_positions
            else None
        )
        all_embedders = self.embedders()
        for emb in all_embedders:
            if emb.emb_dim not in (0, e):
                raise ValueError(
                    f"{name}: embedder {type(emb).__name__}.emb_dim must be 0 or the model's "
                    f"embedding width config.emb={e}, got {emb.emb_dim}"
                )
        token_sources = [emb for emb in all_embedders if emb.token_dim]
        if len(token_sources) > 1:
            raise ValueError(
                f"{name}: embedders must contribute tokens from at most one embedder, got "
                f"{[type(t).__name__ for t in token_sources]}"
            )
        self.token_dim = token_sources[0].token_dim if token_sources else 0
        self.stem_channels = cfg.in_channels + sum(emb.stem_channels for emb in all_embedders)
        self.level_channels = sum(emb.level_channels for emb in all_embedders)

        levels = cfg.attention_levels() if self.token_dim else ()
        self.token_levels = tuple(levels)
        self.token_proj = nnx.List(
            [
                nnx.Linear(
                    self.token_dim,
                    cfg.channels[lv],
                    **_init.dense_inits(),
                    dtype=self.dtype,
                    rngs=rngs,
                )
                for lv in levels
            ]
        )
        k = 4**cfg.dwt_levels
        kw = dict(dtype=self.dtype, rngs=rngs)
        self.embed = PatchEmbed(self.stem_channels * k, cfg.channels[0], cfg.patch_size, **kw)
        self.unembed = PatchUnembed(cfg.channels[0], cfg.out_ch * k, cfg.patch_size, **kw)
        self.level_proj = (
            nnx.Dict(
                {
                    site: nnx.Linear(
                        self.level_channels,
                        cfg.channels[lv],
                        **_init.dense_inits(zero=True),
                        **kw,
                    )
                    for site, lv in self.injection_sites()
                }
            )
            if self.level_channels
            else None
        )
        self._site = 0

    # ------------------------------------------------------------------ embedders
    def embedders(self) -> tuple[Embedder, ...]:
        """Every embedder in the order their contributions are applied: the built-in ones
        (label, vector, tokens, spatial) then the extra ones."""
        built = (self.label_emb, self.vector_emb, self.token_emb, self.spatial_emb)
        return tuple(e for e in built if e is not None) + tuple(self.extra_embedders)

    def injection_sites(self) -> tuple[tuple[str, int], ...]:
        """(site name, level) where level maps are added: ``down_0`` … ``down_{L-1}``, ``mid``,
        ``up_{L-1}`` … ``up_0``, each at the start of its level."""
        n = self.config.num_levels
        return (
            tuple((f"down_{lv}", lv) for lv in range(n))
            + (("mid", n),)
            + tuple((f"up_{lv}", lv) for lv in reversed(range(n)))
        )

    # ------------------------------------------------------------------ serialisation
    def to_config(self) -> dict[str, Any]:
        """The config as a JSON-able dict; extra embedders are described under ``"embedders"``."""
        out = self.config.to_dict()
        if len(self.extra_embedders):
            out["embedders"] = [describe_embedder(e) for e in self.extra_embedders]
        return out

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, seed: int = 0) -> Backbone:
        """Build from :meth:`to_config`'s dict (fresh weights from ``seed``); extra embedders are
        loaded through the ``diff.embedders`` entry-point group."""
        if not isinstance(config, Mapping):
            raise TypeError(
                f"{cls.__name__}.from_config: config must be a dict, got {type(config).__name__}"
            )
        fields = dict(config)
        descriptions = fields.pop("embedders", None) or []
        rngs = nnx.Rngs(seed)
        extra = [embedder_from_description(d, rngs=rngs) for d in descriptions]
        return cls(UViTConfig.from_dict(fields), rngs, embedders=extra)

    # ------------------------------------------------------------------ construction helpers
    def _next_site(self, n: int) -> int:
        site = self._site
        self._site += n
        return site

    def _transformer(self, level: int, rngs: nnx.Rngs) -> TransformerBlock:
        cfg = self.config
        c = cfg.channels[level]
        block = TransformerBlock(
            c,
            cfg.emb,
            cfg.head_dim,
            cfg.mlp_ratio,
            context_dim=c if self.token_dim else 0,
            frame_attention=cfg.frame_attention if cfg.frame_axis else "none",
            dropout=float(cfg.dropout[level]),
            pos_emb=cfg.pos_emb,
            frame_positions=cfg.frame_positions,
            impl=cfg.attention_impl,
            site=self._site,
            dtype=self.dtype,
            rngs=rngs,
        )
        self._next_site(block.num_dropout_sites)
        return block

    def _resblock(self, level: int, dim_in: int, rngs: nnx.Rngs) -> ResBlock:
        cfg = self.config
        return ResBlock(
            dim_in,
            cfg.channels[level],
            cfg.emb,
            dropout=float(cfg.dropout[level]),
            site=self._next_site(1),
            dtype=self.dtype,
            rngs=rngs,
        )

    @abc.abstractmethod
    def blocks(self) -> list[nnx.Module]:
        """All residual and transformer blocks in traversal (dropout-site) order."""

    def dropout_sites(self) -> list[tuple[int, float]]:
        """(site number, rate) of every dropout site, in traversal order; active sites have rate >
        0."""
        out = []
        for b in self.blocks():
            out.extend((b.site + j, b.rate) for j in range(b.num_dropout_sites))
        return out

    def active_dropout_sites(self) -> int:
        """Number of dropout sites with a non-zero rate."""
        return sum(1 for _, r in self.dropout_sites() if r > 0)

    # ------------------------------------------------------------------ validation
    def _fail(self, arg: str, expected: str, got: Any) -> ValueError:
        return ValueError(f"{type(self).__name__}: {arg} must be {expected}, got {got}")

    def _inputs(self, z: Any, logsnr: Any) -> tuple[jax.Array, jax.Array, int, int | None]:
        cfg = self.config
        name = type(self).__name__
        if not hasattr(z, "shape") or not hasattr(z, "dtype"):
            raise TypeError(f"{name}: z must be an array, got {type(z).__name__}")
        z = jnp.asarray(z)
        if not jnp.issubdtype(z.dtype, jnp.floating):
            raise TypeError(f"{name}: z must be a floating-point array, got dtype {z.dtype}")
        h, w, c = cfg.height, cfg.width, cfg.in_channels
        if cfg.frame_axis:
            if z.ndim != 5 or z.shape[2:] != (h, w, c):
                raise self._fail("z", f"of shape (B, F, {h}, {w}, {c})", tuple(z.shape))
            if z.shape[1] > cfg.max_frames and self.frame_emb is not None:
                raise self._fail("z", f"at most max_frames={cfg.max_frames} frames", z.shape[1])
            b, f = z.shape[0], z.shape[1]
        else:
            if z.ndim != 4 or z.shape[1:] != (h, w, c):
                raise self._fail("z", f"of shape (B, {h}, {w}, {c})", tuple(z.shape))
            b, f = z.shape[0], None
        lam = jnp.asarray(logsnr, jnp.float32)
        if lam.ndim == 0:
            lam = jnp.full((b,), lam)
        allowed = [(b,)] + ([(b, f)] if f is not None else [])
        if lam.shape not in allowed:
            exp = " or ".join(str(s) for s in allowed)
            raise self._fail("logsnr", f"a scalar or of shape {exp}", tuple(lam.shape))
        return z, lam, b, f

    def _check_entries(self, cond: Cond) -> None:
        """Every entry set in ``cond`` must be read by some embedder."""
        read = {entry for e in self.embedders() for entry in e.entries()}
        for entry in cond.entries():
            if entry in read:
                continue
            if entry.startswith("extra["):
                raise self._fail(
                    f"cond.{entry}", "absent: the model has no embedder for it", "an array"
                )
            built = _BUILT_BY[entry]
            raise self._fail(
                f"cond.{entry}",
                f"None: the model has no embedder for it (built with {built}=0)",
                "an array",
            )

    def _check_contribution(self, emb: Embedder, c: Contribution, ctx: EmbedContext) -> None:
        """An embedder's output must have the shapes it declared (a bug in the embedder
        otherwise)."""
        who = f"embedder {type(emb).__name__}"
        if not isinstance(c, Contribution):
            raise TypeError(
                f"{ctx.model}: {who} must return a Contribution, got {type(c).__name__}"
            )
        b, f = ctx.batch, ctx.frames

        def bad(kind: str, expected: str, got: Any) -> ValueError:
            return ValueError(f"{ctx.model}: {who}'s {kind} must be {expected}, got {got}")

        if c.emb is not None:
            shapes = [(b, ctx.emb_dim)] + ([(b, f, ctx.emb_dim)] if f is not None else [])
            if emb.emb_dim == 0 or tuple(c.emb.shape) not in shapes:
                raise bad("emb", f"of shape {' or '.join(map(str, shapes))}", c.emb.shape)
        for kind, channels in (("stem", emb.stem_channels), ("levels", emb.level_channels)):
            m = getattr(c, kind)
            if m is None:
                if channels:
                    raise bad(kind, f"a map with {channels} channels (declared)", None)
                continue
            tail = (ctx.height, ctx.width, channels)
            shapes = [(b,) + tail] + ([(b, f) + tail] if f is not None else [])
            if not channels or tuple(m.shape) not in shapes:
                raise bad(kind, f"of shape {' or '.join(map(str, shapes))}", m.shape)
        if (c.tokens is None) != (emb.token_dim == 0) or (c.tokens is None) != (
            c.token_lengths is None
        ):
            raise bad("tokens", f"given with token_lengths (token_dim={emb.token_dim})", c.tokens)
        if c.tokens is not None:
            t, tl = c.tokens, c.token_lengths
            if t.ndim != 3 or t.shape[0] != b or t.shape[2] != emb.token_dim:
                raise bad("tokens", f"of shape ({b}, K, {emb.token_dim})", t.shape)
            if tuple(tl.shape) != (b,):
                raise bad("token_lengths", f"of shape ({b},)", tl.shape)

    # ------------------------------------------------------------------ conditioning
    def _prepare(self, z: Any, logsnr: Any, cond: Cond | None) -> Prepared:
        cfg = self.config
        name = type(self).__name__
        z, lam, b, f = self._inputs(z, logsnr)
        if cond is None:
            cond = Cond()
        if not isinstance(cond, Cond):
            raise TypeError(
                f"{name}: cond must be a diff_pixel.Cond or None, got {type(cond).__name__}"
            )
        drop = None
        if cond.drop is not None:
            drop = jnp.asarray(cond.drop)
            if drop.shape != (b,) or drop.dtype != jnp.bool_:
                raise self._fail(
                    "cond.drop", f"a bool array of shape ({b},)", f"{drop.dtype}{tuple(drop.shape)}"
                )
        if cond.extra is not None:
            for key, v in cond.extra.items():
                if not hasattr(v, "shape") or not v.shape or v.shape[0] != b:
                    raise self._fail(
                        f"cond.extra[{key}]",
                        f"a batch-first array with B={b}",
                        getattr(v, "shape", type(v).__name__),
                    )
        self._check_entries(cond)
        ctx = EmbedContext(name, b, f, cfg.height, cfg.width, cfg.emb, drop)

        emb = self.logsnr_emb(lam)  # (B, E) or (B, F, E)
        stems: list[jax.Array] = []
        levels: list[jax.Array] = []
        tokens = lengths = None
        for embedder in self.embedders():
            c = embedder(cond, ctx)
            self._check_contribution(embedder, c, ctx)
            if c.emb is not None:
                term = c.emb.astype(jnp.float32)
                if term.ndim > emb.ndim:
                    emb = jnp.broadcast_to(emb[:, None, :], term.shape)
                emb = emb + (term if term.ndim == emb.ndim else term[:, None, :])
            if c.stem is not None:
                stems.append(c.stem.astype(jnp.float32))
            if c.levels is not None:
                levels.append(c.levels.astype(jnp.float32))
            if c.tokens is not None:
                tokens, lengths = c.tokens, c.token_lengths.astype(jnp.int32)
        if f is not None:
            if emb.ndim == 2:
                emb = jnp.broadcast_to(emb[:, None, :], (b, f, emb.shape[-1]))
            if self.frame_emb is not None:
                emb = emb + self.frame_emb(jnp.arange(f))[None].astype(jnp.float32)
        emb_flat = emb.reshape(-1, emb.shape[-1])

        def folded(maps: list[jax.Array]) -> jax.Array:
            if f is not None:  # per-example maps are shared by every frame
                maps = [
                    m if m.ndim == 5 else jnp.broadcast_to(m[:, None], (b, f) + m.shape[1:])
                    for m in maps
                ]
            x = jnp.concatenate(maps, axis=-1) if len(maps) > 1 else maps[0]
            return x.reshape((-1,) + x.shape[-3:])

        x = folded([z.astype(jnp.float32)] + stems)
        level_map = folded(levels) if levels else None
        return Prepared(x, emb_flat, emb, tokens, lengths, level_map, b, f)

    # ------------------------------------------------------------------ forward
    def _stem(self, x: jax.Array) -> jax.Array:
        if self.config.dwt_levels:
            x = dwt53(x, self.config.dwt_levels)
        return self.embed(x.astype(self.dtype))

    def _head(self, h: jax.Array, p: Prepared) -> jax.Array:
        out = self.unembed(h).astype(jnp.float32)
        if self.config.dwt_levels:
            out = idwt53(out, self.config.dwt_levels)
        if p.frames is not None:
            out = out.reshape((p.batch, p.frames) + out.shape[1:])
        return out

    def _context(self, level: int, p: Prepared) -> jax.Array | None:
        if p.tokens is None:
            return None
        return self.token_proj[self.token_levels.index(level)](p.tokens.astype(self.dtype))

    def _inject(
        self, h: jax.Array, site: str, level: int, p: Prepared, pooled: dict[int, jax.Array]
    ) -> jax.Array:
        """Add the level map, pooled to this level's grid and projected by the site's
        zero-initialised 1×1 linear, to ``h`` (the identity without level maps)."""
        if self.level_proj is None or p.levels is None:
            return h
        if level not in pooled:
            pooled[level] = _avg_pool(p.levels, self.config.grid(level)).astype(self.dtype)
        return h + self.level_proj[site](pooled[level]).astype(h.dtype)

    def _run(
        self,
        block: nnx.Module,
        h: jax.Array,
        p: Prepared,
        context: jax.Array | None,
        dropout_key: jax.Array | None,
    ) -> jax.Array:
        """Apply a block to folded activations (B·F, h, w, C)."""
        remat: Callable[..., Any] = nnx.remat(_apply) if self.config.remat else _apply
        if isinstance(block, ResBlock):
            return remat(block, h, p.emb_flat, None, None, dropout_key)
        x = h if p.frames is None else h.reshape((p.batch, p.frames) + h.shape[1:])
        out = remat(block, x, p.emb_tok, context, p.token_lengths, dropout_key)
        return out.reshape(h.shape)

    @abc.abstractmethod
    def _body(
        self,
        h: jax.Array,
        p: Prepared,
        dropout_key: jax.Array | None,
        feats: dict[str, jax.Array],
    ) -> tuple[jax.Array, int]:
        """Run the levels; return the activations before PatchUnembed and the number of skip
        tensors left on the stack (0 for a well-formed network)."""

    def _forward(
        self, z: Any, logsnr: Any, cond: Cond | None, dropout_key: jax.Array | None
    ) -> tuple[jax.Array, dict[str, jax.Array], int]:
        p = self._prepare(z, logsnr, cond)
        feats: dict[str, jax.Array] = {}
        h = self._stem(p.x)
        feats["embed"] = h
        h, left = self._body(h, p, dropout_key, feats)
        if left:
            raise RuntimeError(f"{type(self).__name__}: {left} skip tensors left on the stack")
        feats["pre_unembed"] = h
        return self._head(h, p), feats, left

    def __call__(
        self,
        z: jax.Array,
        logsnr: jax.Array | float,
        cond: Cond | None = None,
        *,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        """v̂ = model(z, λ, cond): float32, the shape of z (output channels ``out_channels``)."""
        return self._forward(z, logsnr, cond, dropout_key)[0]

    def features(
        self,
        z: jax.Array,
        logsnr: jax.Array | float,
        cond: Cond | None = None,
        *,
        dropout_key: jax.Array | None = None,
    ) -> dict[str, jax.Array]:
        """Intermediate activations by name: ``embed``, ``down_0`` … ``down_{L-1}`` (after each down
        level's blocks), ``mid``, ``up_{L-1}`` … ``up_0``, ``pre_unembed``; frames folded into the
        batch."""
        return self._forward(z, logsnr, cond, dropout_key)[1]


def _apply(
    block: nnx.Module,
    x: jax.Array,
    emb: jax.Array,
    context: jax.Array | None,
    lengths: jax.Array | None,
    dropout_key: jax.Array | None,
) -> jax.Array:
    if isinstance(block, ResBlock):
        return block(x, emb, dropout_key=dropout_key)
    return block(x, emb, context=context, context_lengths=lengths, dropout_key=dropout_key)
