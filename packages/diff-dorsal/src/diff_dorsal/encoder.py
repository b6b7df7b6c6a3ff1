"""Stage 1 of DORSal: the object-slot encoder, and the oracle slots of procedural scenes.

DORSal (Jabri et al., arXiv 2306.08068) conditions its multi-view decoder on the object slots of a
frozen OSRT encoder (Sajjadi et al., arXiv 2206.06922). The encoder is the SRT encoder (Sajjadi et
al., arXiv 2111.13152): a small CNN per input view on ``rgb ++ ray features``, the tokens of all
input views pooled into one set, then a plain pre-norm transformer; slot attention (Locatello et
al., arXiv 2006.15055) turns the set into ``num_slots`` slots.

- :class:`SRTEncoder`: ``(B, V, h, w, 3)`` images + rays → ``(B, V·h/4·w/4, D)`` tokens. There is
  no view-index embedding, so the token set (hence the slots) does not depend on the order of the
  input views: the ray features carry the geometry.
- :class:`SlotAttention`: LayerNorm on the inputs; k, v, q maps; softmax over the *slots*, +1e-8,
  renormalised over the inputs (a weighted mean); GRU update; residual MLP. Initial slots are
  learned (``"learned"``, OSRT's choice, the default) or drawn from a Gaussian with learned mean
  and scale (``"sampled"``, Locatello et al.).
- :class:`SlotEncoder`: the two together.
- :class:`ObjectSlots` / :func:`object_slots`: the oracle slot set of a procedural scene (11
  numbers per object with a validity mask), for testing the decoder without a learned encoder.

Presets (:data:`ENCODER_PRESETS`) are this project's choices: ``"lite"`` for 32² CPU work and
``"msn"`` after the ``stelzner/osrt`` MultiShapeNet configuration (it only needs to build here).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_dorsal.rays import RayEncoding, ray_features
from diff_pixel.nn import MLP, Attention
from diff_pixel.nn.init import dense_inits, norm_inits, normal, zeros
from diff_protocol import jax_normal

__all__ = [
    "ENCODER_PRESETS",
    "ORACLE_SLOT_DIM",
    "EncoderConfig",
    "ObjectSlots",
    "SRTEncoder",
    "SlotAttention",
    "SlotEncoder",
    "TransformerLayer",
    "object_slots",
]

#: Per-preset defaults of :class:`EncoderConfig` (our defaults; ``msn`` follows stelzner/osrt).
ENCODER_PRESETS: dict[str, dict[str, Any]] = {
    "lite": dict(
        resolution=32,
        conv_channels=(64, 96),
        conv_strides=(1, 2, 2),
        dim=128,
        n_layers=2,
        heads=4,
        mlp_ratio=4,
        num_slots=6,
        slot_dim=128,
        slot_iters=3,
        slot_mlp_hidden=256,
        slot_init="learned",
        decoder_dim=128,
        decoder_layers=1,
        decoder_heads=4,
        decoder_hidden=(128, 128),
        pos_octaves=6,
        dir_octaves=4,
        pos_scale=6.0,
        pos_start_octave=0,
    ),
    "msn": dict(
        resolution=64,
        conv_channels=(96, 192, 384),
        conv_strides=(1, 2, 2, 2),
        dim=768,
        n_layers=5,
        heads=12,
        mlp_ratio=2,
        num_slots=32,
        slot_dim=1536,
        slot_iters=1,
        slot_mlp_hidden=3072,
        slot_init="learned",
        decoder_dim=768,
        decoder_layers=2,
        decoder_heads=12,
        decoder_hidden=(1536, 1536, 1536),
        pos_octaves=15,
        dir_octaves=15,
        pos_scale=1.0,
        pos_start_octave=-5,
    ),
}

_INT_FIELDS = (
    "resolution",
    "dim",
    "n_layers",
    "heads",
    "mlp_ratio",
    "num_slots",
    "slot_dim",
    "slot_iters",
    "slot_mlp_hidden",
    "decoder_dim",
    "decoder_layers",
    "decoder_heads",
    "pos_octaves",
    "dir_octaves",
)
_TUPLE_FIELDS = ("conv_channels", "conv_strides", "decoder_hidden")


@dataclass(frozen=True)
class EncoderConfig:
    """OSRT-lite configuration: ``EncoderConfig("lite")``, ``EncoderConfig("msn", num_slots=16)``.

    Every field left ``None`` takes the preset's value (:data:`ENCODER_PRESETS`).

    Attributes:
      preset: ``"lite"`` (32², 0.81 M encoder + 0.17 M decoder) or ``"msn"``.
      resolution: image side the encoder is built for (informational; convs accept any size).
      conv_channels: hidden conv widths; conv_strides: one stride per conv (``len(conv_channels)
        + 1`` convs, the last one to ``dim`` without ReLU).
      dim, n_layers, heads, mlp_ratio: the token transformer.
      num_slots, slot_dim, slot_iters, slot_mlp_hidden, slot_init: slot attention.
      decoder_dim, decoder_layers, decoder_heads, decoder_hidden: the slot-mixer decoder (query
        width, cross-attention layers, heads, render-MLP hidden widths).
      pos_octaves, dir_octaves, pos_scale, pos_start_octave: the ray encoding
        (:class:`~diff_dorsal.rays.RayEncoding`).
    """

    preset: str = "lite"
    resolution: int | None = None
    conv_channels: tuple[int, ...] | None = None
    conv_strides: tuple[int, ...] | None = None
    dim: int | None = None
    n_layers: int | None = None
    heads: int | None = None
    mlp_ratio: int | None = None
    num_slots: int | None = None
    slot_dim: int | None = None
    slot_iters: int | None = None
    slot_mlp_hidden: int | None = None
    slot_init: str | None = None
    decoder_dim: int | None = None
    decoder_layers: int | None = None
    decoder_heads: int | None = None
    decoder_hidden: tuple[int, ...] | None = None
    pos_octaves: int | None = None
    dir_octaves: int | None = None
    pos_scale: float | None = None
    pos_start_octave: int | None = None

    def __post_init__(self) -> None:
        if self.preset not in ENCODER_PRESETS:
            raise ValueError(
                f"EncoderConfig: preset must be one of {sorted(ENCODER_PRESETS)}, "
                f"got {self.preset!r}"
            )
        base = ENCODER_PRESETS[self.preset]
        for name, value in base.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for name in _TUPLE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise ValueError(
                    f"EncoderConfig: {name} must be a tuple of positive ints, got {value!r}"
                )
            value = tuple(value)
            if not value or not all(_is_pos_int(v) for v in value):
                raise ValueError(
                    f"EncoderConfig: {name} must be a non-empty tuple of positive ints, "
                    f"got {value!r}"
                )
            object.__setattr__(self, name, value)
        for name in _INT_FIELDS:
            if not _is_pos_int(getattr(self, name)):
                raise ValueError(
                    f"EncoderConfig: {name} must be a positive int, got {getattr(self, name)!r}"
                )
        if len(self.conv_strides) != len(self.conv_channels) + 1:
            raise ValueError(
                "EncoderConfig: conv_strides must have len(conv_channels) + 1 = "
                f"{len(self.conv_channels) + 1} entries, got {self.conv_strides!r}"
            )
        if self.dim % self.heads:
            raise ValueError(
                f"EncoderConfig: dim must be a multiple of heads={self.heads}, got {self.dim}"
            )
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(
                "EncoderConfig: decoder_dim must be a multiple of decoder_heads="
                f"{self.decoder_heads}, got {self.decoder_dim}"
            )
        if self.slot_init not in ("learned", "sampled"):
            raise ValueError(
                f"EncoderConfig: slot_init must be 'learned' or 'sampled', got {self.slot_init!r}"
            )
        if isinstance(self.pos_start_octave, bool) or not isinstance(self.pos_start_octave, int):
            raise ValueError(
                f"EncoderConfig: pos_start_octave must be an int, got {self.pos_start_octave!r}"
            )
        self.ray_encoding  # validates the octaves and scale  # noqa: B018

    @property
    def ray_encoding(self) -> RayEncoding:
        """The :class:`~diff_dorsal.rays.RayEncoding` of the encoder and decoder."""
        return RayEncoding(
            pos_octaves=self.pos_octaves,
            dir_octaves=self.dir_octaves,
            pos_scale=float(self.pos_scale),
            pos_start_octave=self.pos_start_octave,
        )

    @property
    def downsample(self) -> int:
        """Total stride of the conv stem (4 for ``lite``)."""
        return int(np.prod(self.conv_strides))

    def replace(self, **changes: Any) -> EncoderConfig:
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every (resolved) field."""
        d = dataclasses.asdict(self)
        for name in _TUPLE_FIELDS:
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EncoderConfig:
        """Inverse of :meth:`to_dict`; an unknown key is a ``ValueError`` naming it."""
        if not isinstance(d, Mapping):
            raise ValueError(
                f"EncoderConfig.from_dict: d must be a mapping, got {type(d).__name__}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(
                f"EncoderConfig.from_dict: d must hold only EncoderConfig fields, got {unknown}"
            )
        d = dict(d)
        for name in _TUPLE_FIELDS:
            if d.get(name) is not None:
                d[name] = tuple(d[name])
        return cls(**d)


def _is_pos_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0


def _layer_norm(dim: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(dim, epsilon=1e-5, **norm_inits(), rngs=rngs)


def _linear(n_in: int, n_out: int, rngs: nnx.Rngs, *, bias: bool = True) -> nnx.Linear:
    inits = dense_inits()
    if not bias:
        inits.pop("bias_init")
    return nnx.Linear(n_in, n_out, use_bias=bias, **inits, rngs=rngs)


class TransformerLayer(nnx.Module):
    """Plain pre-norm residual block: ``x + Attention(LN(x))`` then ``x + MLP(LN(x))`` (no AdaLN,
    no positional encoding: permuting the tokens permutes the output)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4, *, rngs: nnx.Rngs) -> None:
        self.norm1 = _layer_norm(dim, rngs)
        self.attn = Attention(dim, dim // heads, impl="xla", rngs=rngs)
        self.norm2 = _layer_norm(dim, rngs)
        self.mlp = MLP(dim, mlp_ratio, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _check_views(where: str, images: Any, origins: Any, directions: Any) -> tuple[jax.Array, ...]:
    images, origins, directions = (
        jnp.asarray(a, jnp.float32) for a in (images, origins, directions)
    )
    if images.ndim != 5 or images.shape[-1] != 3:
        raise ValueError(f"{where}: images must have shape (B, V, h, w, 3), got {images.shape}")
    for name, a in (("origins", origins), ("directions", directions)):
        if a.shape != images.shape:
            raise ValueError(
                f"{where}: {name} must have the images' shape {images.shape}, got {a.shape}"
            )
    return images, origins, directions


class SRTEncoder(nnx.Module):
    """SRT encoder (arXiv 2111.13152): per-view CNN on ``rgb ++ ray_features`` → one token set →
    ``n_layers`` pre-norm transformer blocks.

    ``__call__(images, origins, directions)``: ``(B, V, h, w, 3)`` each → tokens
    ``(B, V·(h/s)·(w/s), dim)`` with ``s = config.downsample`` (4 for ``lite``). No view-index
    embedding: permuting the input views permutes the tokens in blocks.
    """

    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs) -> None:
        if not isinstance(config, EncoderConfig):
            raise ValueError(
                f"SRTEncoder: config must be an EncoderConfig, got {type(config).__name__}"
            )
        self.config = config
        self.encoding = config.ray_encoding
        widths = (3 + self.encoding.channels, *config.conv_channels, config.dim)
        self.convs = nnx.List(
            [
                nnx.Conv(
                    widths[i],
                    widths[i + 1],
                    kernel_size=(3, 3),
                    strides=(s, s),
                    padding="SAME",
                    **dense_inits(),
                    rngs=rngs,
                )
                for i, s in enumerate(config.conv_strides)
            ]
        )
        self.layers = nnx.List(
            [
                TransformerLayer(config.dim, config.heads, config.mlp_ratio, rngs=rngs)
                for _ in range(config.n_layers)
            ]
        )

    def __call__(self, images: Any, origins: Any, directions: Any) -> jax.Array:
        images, origins, directions = _check_views("SRTEncoder", images, origins, directions)
        b, v, h, w, _ = images.shape
        x = jnp.concatenate([images, ray_features(origins, directions, self.encoding)], axis=-1)
        x = x.reshape(b * v, h, w, x.shape[-1])
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = jax.nn.relu(x)
        x = x.reshape(b, -1, x.shape[-1])  # all views' tokens form one set
        for layer in self.layers:
            x = layer(x)
        return x


class _GRUCell(nnx.Module):
    """GRU cell (PyTorch's ``GRUCell`` equations, as in Locatello et al.'s slot attention)."""

    def __init__(self, n_in: int, dim: int, *, rngs: nnx.Rngs) -> None:
        self.dim = dim
        self.wx = _linear(n_in, 3 * dim, rngs)
        self.wh = _linear(dim, 3 * dim, rngs)

    def __call__(self, x: jax.Array, h: jax.Array) -> jax.Array:
        xr, xz, xn = jnp.split(self.wx(x), 3, axis=-1)
        hr, hz, hn = jnp.split(self.wh(h), 3, axis=-1)
        r = jax.nn.sigmoid(xr + hr)
        z = jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        return (1.0 - z) * n + z * h


class SlotAttention(nnx.Module):
    """Slot attention (Locatello et al., arXiv 2006.15055).

    LayerNorm on the inputs; ``k, v = W_k x, W_v x``; each iteration ``q = W_q LN(slots)``,
    logits ``q·k/√d``, softmax **over slots**, ``+1e-8``, renormalised over the inputs (weighted
    mean of v), GRU update, ``slots + MLP(LN(slots))``.

    ``init="learned"``: ``num_slots`` learned initial slots (OSRT; deterministic). ``"sampled"``:
    ``μ + σ·ε`` with learned ``μ, log σ`` (shared by the slots) and ``ε`` drawn from ``key``.

    ``__call__(inputs (B, N, input_dim), *, slots=None, key=None) -> (B, num_slots, slot_dim)``;
    ``slots`` overrides the initial slots (any slot count ``(B, S, slot_dim)``).
    """

    def __init__(
        self,
        num_slots: int,
        slot_dim: int,
        iters: int = 3,
        mlp_hidden: int | None = None,
        *,
        input_dim: int | None = None,
        init: str = "learned",
        eps: float = 1e-8,
        rngs: nnx.Rngs,
    ) -> None:
        for name, value in (("num_slots", num_slots), ("slot_dim", slot_dim), ("iters", iters)):
            if not _is_pos_int(value):
                raise ValueError(f"SlotAttention: {name} must be a positive int, got {value!r}")
        if init not in ("learned", "sampled"):
            raise ValueError(f"SlotAttention: init must be 'learned' or 'sampled', got {init!r}")
        input_dim = slot_dim if input_dim is None else input_dim
        mlp_hidden = 2 * slot_dim if mlp_hidden is None else mlp_hidden
        self.num_slots, self.slot_dim, self.iters = num_slots, slot_dim, iters
        self.input_dim, self.init, self.eps = input_dim, init, eps
        self.norm_inputs = _layer_norm(input_dim, rngs)
        self.norm_slots = _layer_norm(slot_dim, rngs)
        self.norm_mlp = _layer_norm(slot_dim, rngs)
        self.to_q = _linear(slot_dim, slot_dim, rngs, bias=False)
        self.to_k = _linear(input_dim, slot_dim, rngs, bias=False)
        self.to_v = _linear(input_dim, slot_dim, rngs, bias=False)
        self.gru = _GRUCell(slot_dim, slot_dim, rngs=rngs)
        self.mlp1 = _linear(slot_dim, mlp_hidden, rngs)
        self.mlp2 = _linear(mlp_hidden, slot_dim, rngs)
        if init == "learned":
            self.slots_init = nnx.Param(normal(1.0)(rngs.params(), (num_slots, slot_dim)))
        else:
            self.slots_mu = nnx.Param(normal(1.0)(rngs.params(), (1, slot_dim)))
            self.slots_log_sigma = nnx.Param(zeros(rngs.params(), (1, slot_dim)))

    def initial_slots(self, batch: int, key: jax.Array | None = None) -> jax.Array:
        """``(batch, num_slots, slot_dim)`` initial slots (``key`` needed with ``"sampled"``)."""
        if self.init == "learned":
            return jnp.broadcast_to(self.slots_init[...], (batch, self.num_slots, self.slot_dim))
        if key is None:
            raise ValueError("SlotAttention: key must be a PRNG key with init='sampled', got None")
        eps = jax_normal(key, (batch, self.num_slots, self.slot_dim))
        return self.slots_mu[...] + jnp.exp(self.slots_log_sigma[...]) * eps

    def attention(self, inputs: jax.Array, slots: jax.Array) -> jax.Array:
        """Attention weights ``(B, S, N)`` of ``slots`` over the (normalised) inputs: softmax over
        slots, +eps, renormalised over inputs."""
        x = self.norm_inputs(inputs)
        q = self.to_q(self.norm_slots(slots))
        logits = jnp.einsum("bsd,bnd->bsn", q, self.to_k(x)) / math.sqrt(self.slot_dim)
        attn = jax.nn.softmax(logits, axis=1) + self.eps
        return attn / jnp.sum(attn, axis=2, keepdims=True)

    def __call__(
        self, inputs: Any, *, slots: Any = None, key: jax.Array | None = None
    ) -> jax.Array:
        inputs = jnp.asarray(inputs, jnp.float32)
        if inputs.ndim != 3 or inputs.shape[-1] != self.input_dim:
            raise ValueError(
                f"SlotAttention: inputs must have shape (B, N, {self.input_dim}), "
                f"got {inputs.shape}"
            )
        b = inputs.shape[0]
        if slots is None:
            slots = self.initial_slots(b, key)
        else:
            slots = jnp.asarray(slots, jnp.float32)
            if slots.ndim != 3 or slots.shape[0] != b or slots.shape[2] != self.slot_dim:
                raise ValueError(
                    f"SlotAttention: slots must have shape ({b}, S, {self.slot_dim}), "
                    f"got {slots.shape}"
                )
        x = self.norm_inputs(inputs)
        k, v = self.to_k(x), self.to_v(x)
        scale = 1.0 / math.sqrt(self.slot_dim)
        for _ in range(self.iters):
            prev = slots
            q = self.to_q(self.norm_slots(slots))
            logits = jnp.einsum("bsd,bnd->bsn", q, k) * scale
            attn = jax.nn.softmax(logits, axis=1) + self.eps
            attn = attn / jnp.sum(attn, axis=2, keepdims=True)
            updates = jnp.einsum("bsn,bnd->bsd", attn, v)
            slots = self.gru(updates, prev)
            slots = slots + self.mlp2(jax.nn.relu(self.mlp1(self.norm_mlp(slots))))
        return slots


class SlotEncoder(nnx.Module):
    """``SRTEncoder`` + ``SlotAttention``: ``(images, origins, directions)`` ``(B, V_in, h, w, 3)``
    each → slots ``(B, num_slots, slot_dim)``.

    With the default learned initial slots the encoder is deterministic and its slots do not
    depend on the order of the input views. ``key`` is only used with ``slot_init="sampled"``.
    """

    def __init__(self, config: EncoderConfig | None = None, *, rngs: nnx.Rngs) -> None:
        config = EncoderConfig() if config is None else config
        if not isinstance(config, EncoderConfig):
            raise ValueError(
                f"SlotEncoder: config must be an EncoderConfig, got {type(config).__name__}"
            )
        self.config = config
        self.srt = SRTEncoder(config, rngs=rngs)
        self.slot_attention = SlotAttention(
            config.num_slots,
            config.slot_dim,
            config.slot_iters,
            config.slot_mlp_hidden,
            input_dim=config.dim,
            init=config.slot_init,
            rngs=rngs,
        )

    def __call__(
        self, images: Any, origins: Any, directions: Any, *, key: jax.Array | None = None
    ) -> jax.Array:
        tokens = self.srt(images, origins, directions)
        return self.slot_attention(tokens, key=key)


# -- oracle slots ---------------------------------------------------------------------------------

#: Width of an oracle slot: one-hot kind (2), centre/1.5 (3), size/0.6, sin 4·yaw, cos 4·yaw, RGB.
ORACLE_SLOT_DIM = 11
_SCENE_KEYS = ("kinds", "centres", "sizes", "yaws", "colours", "valid")


def object_slots(batch: Mapping[str, Any], max_objects: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Oracle slots of procedural scenes from their padded scene keys.

    ``batch`` holds ``kinds (..., K)``, ``centres (..., K, 3)``, ``sizes (..., K)``, ``yaws
    (..., K)``, ``colours (..., K, 3)`` and ``valid (..., K)`` (``Scene.padded`` or a
    ``SceneDataset`` batch). Returns ``slots (..., max_objects, 11)`` float32 and ``mask (...,
    max_objects)`` bool; slot j is object j (``[onehot(kind), centre/1.5, size/0.6, sin 4·yaw,
    cos 4·yaw, rgb]``); padded and invalid slots are zero with mask False. ``4·yaw`` because a box
    looks the same after a quarter turn (the sampler draws yaw in [0, π/2)).
    """
    if not isinstance(batch, Mapping):
        raise ValueError(f"object_slots: batch must be a mapping, got {type(batch).__name__}")
    missing = [k for k in _SCENE_KEYS if k not in batch]
    if missing:
        raise ValueError(
            f"object_slots: batch must hold the padded scene keys {list(_SCENE_KEYS)}, "
            f"missing {missing}"
        )
    if not _is_pos_int(max_objects):
        raise ValueError(f"object_slots: max_objects must be a positive int, got {max_objects!r}")
    kinds = np.asarray(batch["kinds"])
    valid = np.asarray(batch["valid"]).astype(bool)
    centres = np.asarray(batch["centres"], np.float32)
    sizes = np.asarray(batch["sizes"], np.float32)
    yaws = np.asarray(batch["yaws"], np.float32)
    colours = np.asarray(batch["colours"], np.float32)
    lead = kinds.shape
    if not lead:
        raise ValueError("object_slots: kinds must have shape (..., K), got a scalar")
    expect = {
        "valid": lead,
        "sizes": lead,
        "yaws": lead,
        "centres": (*lead, 3),
        "colours": (*lead, 3),
    }
    for name, shape in expect.items():
        got = np.shape(batch[name])
        if got != shape:
            raise ValueError(f"object_slots: {name} must have shape {shape}, got {got}")
    k = lead[-1]
    if k > max_objects and valid[..., max_objects:].any():
        raise ValueError(
            f"object_slots: scenes must have at most max_objects={max_objects} objects, got "
            f"{int(valid.sum(-1).max())}"
        )
    ok_kind = (kinds == 0) | (kinds == 1)
    if not ok_kind[valid].all():
        raise ValueError(
            f"object_slots: kinds must be 0 (sphere) or 1 (box), got {np.unique(kinds[valid])}"
        )
    onehot = np.stack([kinds == 0, kinds == 1], axis=-1).astype(np.float32)
    feats = np.concatenate(
        [
            onehot,
            centres / np.float32(1.5),
            (sizes / np.float32(0.6))[..., None],
            np.sin(4.0 * yaws)[..., None],
            np.cos(4.0 * yaws)[..., None],
            colours,
        ],
        axis=-1,
    ).astype(np.float32)
    feats = np.where(valid[..., None], feats, np.float32(0.0))
    n = min(k, max_objects)
    slots = np.zeros((*lead[:-1], max_objects, ORACLE_SLOT_DIM), np.float32)
    mask = np.zeros((*lead[:-1], max_objects), bool)
    slots[..., :n, :] = feats[..., :n, :]
    mask[..., :n] = valid[..., :n]
    return slots, mask


@dataclass(frozen=True)
class ObjectSlots:
    """The oracle slot encoder of procedural scenes: ``ObjectSlots()(batch) -> (slots, mask)``
    (see :func:`object_slots`). Not learned: the meaning of every slot is known exactly, which
    lets stage 2 be tested against re-rendered ground truth."""

    max_objects: int = 6

    def __post_init__(self) -> None:
        if not _is_pos_int(self.max_objects):
            raise ValueError(
                f"ObjectSlots: max_objects must be a positive int, got {self.max_objects!r}"
            )

    @property
    def num_slots(self) -> int:
        return self.max_objects

    @property
    def slot_dim(self) -> int:
        return ORACLE_SLOT_DIM

    def __call__(self, batch: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        return object_slots(batch, self.max_objects)
