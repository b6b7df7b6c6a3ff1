"""Parts shared by the two U-ViT backbones: conditioning, input validation, stem and head.

Both :class:`~diff_pixel.models.ResidualUViT` and :class:`~diff_pixel.models.UViT` are
diff-protocol denoisers ``model(z, logsnr, cond=None, *, dropout_key=None) -> v_hat``; there is no
train/eval flag and no RNG stream in the forward pass (``dropout_key=None`` is evaluation).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_pixel.models.cond import Cond
from diff_pixel.models.config import UViTConfig
from diff_pixel.nn.conditioning import LogSNREmbedding
from diff_pixel.nn.patch import PatchEmbed, PatchUnembed
from diff_pixel.nn.resblock import ResBlock
from diff_pixel.nn.transformer import TransformerBlock
from diff_pixel.nn.wavelet import dwt53, idwt53

__all__ = ["Backbone", "Prepared"]

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


class Prepared(NamedTuple):
    """Validated inputs of a forward pass, frames folded into the batch."""

    x: jax.Array  # (B·F, H, W, C_stem) stem input
    emb_flat: jax.Array  # (B·F, E) for ResBlocks
    emb_tok: jax.Array  # (B, E) or (B, F, E) for transformer blocks
    tokens: jax.Array | None  # (B, K, Dt)
    token_lengths: jax.Array | None  # (B,)
    batch: int
    frames: int | None


class _AbstractModuleMeta(type(nnx.Module), abc.ABCMeta):
    """NNX's module metaclass with abstract-method enforcement."""


class Backbone(nnx.Module, metaclass=_AbstractModuleMeta):
    """Base class: embeddings, conditioning, stem, head; subclasses implement :meth:`_body`."""

    prediction = "v"

    def __init__(self, config: UViTConfig, rngs: nnx.Rngs) -> None:
        if not isinstance(config, UViTConfig):
            raise TypeError(
                f"{type(self).__name__}: config must be a UViTConfig, got {type(config).__name__}"
            )
        self.config = config
        self.dtype = _DTYPES[config.compute_dtype]
        cfg, e = config, config.emb
        self.logsnr_emb = LogSNREmbedding(e, rngs=rngs)
        self.label_emb = nnx.Embed(cfg.num_classes + 1, e, rngs=rngs) if cfg.num_classes else None
        if cfg.vector_dim:
            self.vector_proj = nnx.Linear(cfg.vector_dim, e, rngs=rngs)
            self.vector_null = nnx.Param(0.02 * jax.random.normal(rngs.params(), (e,)))
        else:
            self.vector_proj, self.vector_null = None, None
        self.frame_emb = (
            nnx.Embed(cfg.max_frames, e, rngs=rngs)
            if cfg.frame_axis and cfg.frame_positions
            else None
        )
        levels = cfg.attention_levels() if cfg.token_dim else ()
        self.token_levels = tuple(levels)
        self.token_proj = nnx.List(
            [
                nnx.Linear(cfg.token_dim, cfg.channels[lv], dtype=self.dtype, rngs=rngs)
                for lv in levels
            ]
        )
        k = 4**cfg.dwt_levels
        kw = dict(dtype=self.dtype, rngs=rngs)
        self.embed = PatchEmbed(cfg.stem_in_channels * k, cfg.channels[0], cfg.patch_size, **kw)
        self.unembed = PatchUnembed(cfg.channels[0], cfg.out_ch * k, cfg.patch_size, **kw)
        self._site = 0

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
            context_dim=c if cfg.token_dim else 0,
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
        block = ResBlock(
            dim_in,
            cfg.channels[level],
            cfg.emb,
            dropout=float(cfg.dropout[level]),
            site=self._next_site(1),
            dtype=self.dtype,
            rngs=rngs,
        )
        return block

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

    def _prepare(self, z: Any, logsnr: Any, cond: Cond | None) -> Prepared:
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

        if cond is None:
            cond = Cond()
        if not isinstance(cond, Cond):
            raise TypeError(
                f"{name}: cond must be a diff_pixel.Cond or None, got {type(cond).__name__}"
            )
        self._check_fields(cond, b)

        drop = None
        if cond.drop is not None:
            drop = jnp.asarray(cond.drop)
            if drop.shape != (b,) or drop.dtype != jnp.bool_:
                raise self._fail(
                    "cond.drop", f"a bool array of shape ({b},)", f"{drop.dtype}{tuple(drop.shape)}"
                )

        emb = self.logsnr_emb(lam)  # (B, E) or (B, F, E)
        lead = (b,) if f is None else (b, f)

        def add(e: jax.Array, term: jax.Array) -> jax.Array:
            return e + (term if term.ndim == e.ndim else term[:, None, :])

        if self.label_emb is not None:
            label = jnp.asarray(cond.label)
            if drop is not None:
                label = jnp.where(drop, cfg.num_classes, label)
            emb = add(emb, self.label_emb(label).astype(jnp.float32))
        if self.vector_proj is not None:
            vec = jnp.asarray(cond.vector, jnp.float32)
            p = self.vector_proj(vec)
            if drop is not None:
                d = drop.reshape((b,) + (1,) * (p.ndim - 1))
                p = jnp.where(d, self.vector_null[...], p)
            if p.ndim == 3 and emb.ndim == 2:
                emb = jnp.broadcast_to(emb[:, None, :], p.shape)
            emb = add(emb, p)
        if f is not None:
            if emb.ndim == 2:
                emb = jnp.broadcast_to(emb[:, None, :], (b, f, emb.shape[-1]))
            if self.frame_emb is not None:
                emb = emb + self.frame_emb(jnp.arange(f))[None].astype(jnp.float32)
        emb_flat = emb.reshape(-1, emb.shape[-1])

        x = z.astype(jnp.float32)
        if cfg.spatial_channels:
            s = jnp.asarray(cond.spatial, jnp.float32)
            mask = jnp.ones(s.shape[:-1] + (1,), jnp.float32)
            if drop is not None:
                d = drop.reshape((b,) + (1,) * (s.ndim - 1))
                s = jnp.where(d, 0.0, s)
                mask = jnp.where(d, 0.0, mask)
            x = jnp.concatenate([x, s, mask], axis=-1)
        x = x.reshape((-1,) + x.shape[-3:])

        tokens = lengths = None
        if cfg.token_dim:
            tokens = jnp.asarray(cond.tokens)
            k = tokens.shape[1]
            lengths = (
                jnp.full((b,), k, jnp.int32)
                if cond.token_lengths is None
                else jnp.asarray(cond.token_lengths, jnp.int32)
            )
            if drop is not None:
                lengths = jnp.where(drop, 0, lengths)
        del lead
        return Prepared(x, emb_flat, emb, tokens, lengths, b, f)

    def _check_fields(self, cond: Cond, b: int) -> None:
        cfg = self.config
        h, w = cfg.height, cfg.width
        need = {
            "label": cfg.num_classes > 0,
            "vector": cfg.vector_dim > 0,
            "tokens": cfg.token_dim > 0,
            "token_lengths": None,  # optional when tokens are used
            "spatial": cfg.spatial_channels > 0,
        }
        built = {
            "label": "num_classes",
            "vector": "vector_dim",
            "tokens": "token_dim",
            "token_lengths": "token_dim",
            "spatial": "spatial_channels",
        }
        for field, needed in need.items():
            v = getattr(cond, field)
            if field == "token_lengths":
                needed_here = cfg.token_dim > 0
                if v is not None and not needed_here:
                    raise self._fail(
                        f"cond.{field}",
                        f"None: the model was built with {built[field]}=0",
                        "an array",
                    )
                continue
            if v is not None and not needed:
                raise self._fail(
                    f"cond.{field}", f"None: the model was built with {built[field]}=0", "an array"
                )
            if v is None and needed:
                raise self._fail(
                    f"cond.{field}",
                    f"given: the model was built with {built[field]}={getattr(cfg, built[field])}",
                    "None",
                )
        if cfg.num_classes:
            label = cond.label
            if not hasattr(label, "shape") or tuple(label.shape) != (b,):
                raise self._fail(
                    "cond.label", f"an int array of shape ({b},)", getattr(label, "shape", label)
                )
            if not jnp.issubdtype(jnp.asarray(label).dtype, jnp.integer):
                raise TypeError(
                    f"{type(self).__name__}: cond.label must be an integer array, got dtype "
                    f"{jnp.asarray(label).dtype}"
                )
            if _concrete(label):
                arr = np.asarray(label)
                if arr.size and (arr.min() < 0 or arr.max() > cfg.num_classes):
                    raise self._fail(
                        "cond.label",
                        f"in [0, num_classes={cfg.num_classes}] (num_classes = null label)",
                        f"values in [{arr.min()}, {arr.max()}]",
                    )
        if cfg.vector_dim:
            shapes = [(b, cfg.vector_dim)]
            if cfg.frame_axis:
                shapes.append(("B", "F", cfg.vector_dim))
            v = cond.vector
            ok = tuple(v.shape) == (b, cfg.vector_dim) or (
                cfg.frame_axis and v.ndim == 3 and v.shape[0] == b and v.shape[2] == cfg.vector_dim
            )
            if not ok:
                exp = f"of shape ({b}, {cfg.vector_dim})" + (
                    f" or ({b}, F, {cfg.vector_dim})" if cfg.frame_axis else ""
                )
                raise self._fail("cond.vector", exp, tuple(v.shape))
        if cfg.token_dim:
            t = cond.tokens
            if t.ndim != 3 or t.shape[0] != b or t.shape[2] != cfg.token_dim:
                raise self._fail(
                    "cond.tokens", f"of shape ({b}, K, {cfg.token_dim})", tuple(t.shape)
                )
            if cond.token_lengths is not None:
                tl = cond.token_lengths
                if tuple(tl.shape) != (b,):
                    raise self._fail("cond.token_lengths", f"of shape ({b},)", tuple(tl.shape))
                if _concrete(tl):
                    arr = np.asarray(tl)
                    if arr.min() < 0 or arr.max() > t.shape[1]:
                        raise self._fail(
                            "cond.token_lengths",
                            f"in [0, K={t.shape[1]}]",
                            f"[{arr.min()}, {arr.max()}]",
                        )
        if cfg.spatial_channels:
            s = cond.spatial
            if cfg.frame_axis:
                ok = s.ndim == 5 and s.shape[0] == b and s.shape[2:] == (h, w, cfg.spatial_channels)
                exp = f"of shape ({b}, F, {h}, {w}, {cfg.spatial_channels}) matching z"
            else:
                ok = tuple(s.shape) == (b, h, w, cfg.spatial_channels)
                exp = f"of shape ({b}, {h}, {w}, {cfg.spatial_channels}) matching z"
            if not ok:
                raise self._fail("cond.spatial", exp, tuple(s.shape))

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
