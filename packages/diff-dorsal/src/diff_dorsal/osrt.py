"""OSRT-lite: the slot encoder with OSRT's slot-mixer decoder (Sajjadi et al., arXiv 2206.06922).

The slot-mixer decoder renders one ray at a time from a set of slots:

1. query ``q = MLP(ray_features(o, d))``;
2. ``decoder_layers`` pre-norm residual cross-attention layers of the queries to the slots (the
   "allocation transformer"; OSRT uses 2, ``lite`` 1);
3. slot weights ``w = softmax_slots(W_q q · W_k s / √d)`` — also the unsupervised segmentation;
4. mixed slot ``Σ_k w_k s_k``;
5. a LeakyReLU MLP on ``[q, mix]`` → sigmoid RGB.

Nothing in it depends on the order of the slots (no slot position), so permuting the slots leaves
the RGB unchanged and permutes the weights.

Why a plain cross-attention here and not ``diff_pixel.nn.CrossAttention``: that layer is built for
diffusion conditioning — it prepends a learned null token to the context (an always-present extra
"slot" that could absorb the attention and would break "the queries attend to the slots only"),
and zero-initialises its output (the layer starts as the identity, which suits a residual branch
of a denoiser but not the decoder's only route from slots to rays). The layer here
(:class:`SlotCrossAttention`) is multi-head ``softmax(QKᵀ/√d)V`` over the slots only, with
pre-LayerNorm on queries and slots as in OSRT's transformer; it goes through
``jax.nn.dot_product_attention`` like diff-pixel's layers.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from diff_dorsal.encoder import EncoderConfig, SlotEncoder, _layer_norm, _linear
from diff_dorsal.rays import ray_features

__all__ = ["OSRTLite", "SlotCrossAttention", "SlotMixerDecoder"]


class SlotCrossAttention(nnx.Module):
    """Multi-head cross-attention of queries ``(B, N, dim)`` to slots ``(B, S, slot_dim)`` (no null
    token, no mask, standard init): ``Linear_o(softmax(Q Kᵀ/√d_h) V)``."""

    def __init__(self, dim: int, slot_dim: int, heads: int, *, rngs: nnx.Rngs) -> None:
        if dim % heads:
            raise ValueError(
                f"SlotCrossAttention: dim must be a multiple of heads={heads}, got {dim}"
            )
        self.dim, self.heads = dim, heads
        self.q = _linear(dim, dim, rngs)
        self.kv = _linear(slot_dim, 2 * dim, rngs)
        self.out = _linear(dim, dim, rngs)

    def __call__(self, x: jax.Array, slots: jax.Array) -> jax.Array:
        b, n, _ = x.shape
        s = slots.shape[1]
        hd = self.dim // self.heads
        q = self.q(x).reshape(b, n, self.heads, hd)
        kv = self.kv(slots).reshape(b, s, 2, self.heads, hd)
        o = jax.nn.dot_product_attention(q, kv[:, :, 0], kv[:, :, 1], implementation="xla")
        return self.out(o.reshape(b, n, self.dim))


class _CrossLayer(nnx.Module):
    """``x + CrossAttention(LN(x), LN(slots))`` (pre-norm residual, OSRT's allocation layer
    without its feed-forward block)."""

    def __init__(self, dim: int, slot_dim: int, heads: int, *, rngs: nnx.Rngs) -> None:
        self.norm_q = _layer_norm(dim, rngs)
        self.norm_s = _layer_norm(slot_dim, rngs)
        self.attn = SlotCrossAttention(dim, slot_dim, heads, rngs=rngs)

    def __call__(self, x: jax.Array, slots: jax.Array) -> jax.Array:
        return x + self.attn(self.norm_q(x), self.norm_s(slots))


class SlotMixerDecoder(nnx.Module):
    """OSRT's slot-mixer decoder (arXiv 2206.06922, §3): rays + slots → RGB and slot weights.

    ``__call__(slots (B, S, slot_dim), origins (B, N, 3), directions (B, N, 3))`` → ``rgb (B, N,
    3)`` in (0, 1) and ``weights (B, N, S)`` (softmax over slots: the segmentation).
    """

    def __init__(self, config: EncoderConfig | None = None, *, rngs: nnx.Rngs) -> None:
        config = EncoderConfig() if config is None else config
        if not isinstance(config, EncoderConfig):
            raise ValueError(
                f"SlotMixerDecoder: config must be an EncoderConfig, got {type(config).__name__}"
            )
        self.config = config
        self.encoding = config.ray_encoding
        d, sd = config.decoder_dim, config.slot_dim
        self.slot_dim = sd
        self.query1 = _linear(self.encoding.channels, d, rngs)
        self.query2 = _linear(d, d, rngs)
        self.layers = nnx.List(
            [
                _CrossLayer(d, sd, config.decoder_heads, rngs=rngs)
                for _ in range(config.decoder_layers)
            ]
        )
        self.mix_q = _linear(d, d, rngs, bias=False)
        self.mix_k = _linear(sd, d, rngs, bias=False)
        widths = (d + sd, *config.decoder_hidden, 3)
        self.render = nnx.List(
            [_linear(widths[i], widths[i + 1], rngs) for i in range(len(widths) - 1)]
        )

    def queries(self, origins: jax.Array, directions: jax.Array) -> jax.Array:
        """``MLP(ray_features)``: ``(B, N, 3)`` rays → ``(B, N, decoder_dim)`` queries."""
        f = ray_features(origins, directions, self.encoding)
        return self.query2(jax.nn.relu(self.query1(f)))

    def __call__(self, slots: Any, origins: Any, directions: Any) -> tuple[jax.Array, jax.Array]:
        slots = jnp.asarray(slots, jnp.float32)
        origins = jnp.asarray(origins, jnp.float32)
        directions = jnp.asarray(directions, jnp.float32)
        if slots.ndim != 3 or slots.shape[-1] != self.slot_dim or slots.shape[1] < 1:
            raise ValueError(
                f"SlotMixerDecoder: slots must have shape (B, S, {self.slot_dim}) with S >= 1, "
                f"got {slots.shape}"
            )
        b = slots.shape[0]
        for name, a in (("origins", origins), ("directions", directions)):
            if a.ndim != 3 or a.shape[0] != b or a.shape[-1] != 3:
                raise ValueError(
                    f"SlotMixerDecoder: {name} must have shape ({b}, N, 3), got {a.shape}"
                )
        if origins.shape != directions.shape:
            raise ValueError(
                "SlotMixerDecoder: origins and directions must share a shape, got "
                f"{origins.shape} and {directions.shape}"
            )
        x = self.queries(origins, directions)
        for layer in self.layers:
            x = layer(x, slots)
        logits = jnp.einsum("bnd,bsd->bns", self.mix_q(x), self.mix_k(slots))
        weights = jax.nn.softmax(logits / math.sqrt(x.shape[-1]), axis=-1)
        mix = jnp.einsum("bns,bsd->bnd", weights, slots)
        h = jnp.concatenate([x, mix], axis=-1)
        for i, lin in enumerate(self.render):
            h = lin(h)
            if i < len(self.render) - 1:
                h = jax.nn.leaky_relu(h, 0.01)
        return jax.nn.sigmoid(h), weights


class OSRTLite(nnx.Module):
    """OSRT-lite = :class:`~diff_dorsal.encoder.SlotEncoder` + :class:`SlotMixerDecoder`.

    ``encode(images, origins, directions)`` ``(B, V_in, h, w, 3)`` each → slots ``(B, S, D)``;
    ``render(slots, origins, directions)`` with rays of any leading shape ``(B, ..., 3)`` →
    ``rgb (B, ..., 3)``, ``weights (B, ..., S)``; ``__call__`` does both.
    """

    def __init__(self, config: EncoderConfig | None = None, *, rngs: nnx.Rngs) -> None:
        config = EncoderConfig() if config is None else config
        if not isinstance(config, EncoderConfig):
            raise ValueError(
                f"OSRTLite: config must be an EncoderConfig, got {type(config).__name__}"
            )
        self.config = config
        self.encoder = SlotEncoder(config, rngs=rngs)
        self.decoder = SlotMixerDecoder(config, rngs=rngs)

    def encode(
        self, images: Any, origins: Any, directions: Any, *, key: jax.Array | None = None
    ) -> jax.Array:
        return self.encoder(images, origins, directions, key=key)

    def render(self, slots: Any, origins: Any, directions: Any) -> tuple[jax.Array, jax.Array]:
        origins = jnp.asarray(origins, jnp.float32)
        directions = jnp.asarray(directions, jnp.float32)
        if origins.ndim < 2 or origins.shape[-1] != 3 or origins.shape != directions.shape:
            raise ValueError(
                "OSRTLite.render: origins and directions must share a shape (B, ..., 3), got "
                f"{origins.shape} and {directions.shape}"
            )
        b, mid = origins.shape[0], origins.shape[1:-1]
        rgb, w = self.decoder(slots, origins.reshape(b, -1, 3), directions.reshape(b, -1, 3))
        return rgb.reshape(b, *mid, 3), w.reshape(b, *mid, w.shape[-1])

    def __call__(
        self,
        images: Any,
        origins: Any,
        directions: Any,
        target_origins: Any,
        target_directions: Any,
        *,
        key: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        slots = self.encode(images, origins, directions, key=key)
        return self.render(slots, target_origins, target_directions)
