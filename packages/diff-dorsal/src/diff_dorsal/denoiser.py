"""The DORSal decoder: a multi-view denoiser conditioned on object slots and cameras.

DORSal (Jabri et al., arXiv 2306.08068) generates several views of a scene jointly, conditioned on
a frozen set of object slots and on each view's camera, with a video-diffusion-style network
(Ho et al., arXiv 2204.03458) in which views play the role of frames. Here the network is
diff-pixel's frame-axis Residual U-ViT (SiD2, arXiv 2410.19324):

- views are frames; one logsnr per example is shared by every view (our default);
- the cameras enter as ``Cond.spatial``: the per-pixel ``ray_features`` of each target view
  (:mod:`diff_dorsal.rays`), concatenated to z at the stem;
- the slots pass a 2-layer slot MLP (slot width → ``token_dim``, trained in stage 2) and enter as
  ``Cond.tokens`` (cross-attention in every transformer block; diff-pixel's learned null token is
  always prepended). :func:`compact_slots` moves the kept slots to the front in their order and
  sets ``token_lengths``: tokens carry no position, so this equals deleting the masked slots;
- with ``frame_positions=False`` the backbone has no view index, so permuting views together with
  their cameras permutes the output;
- an all-masked slot set (``token_lengths = 0``: only the null token is attended) is the
  unconditional model of guidance and of ``p_uncond``; ``Cond.drop`` is never used because it
  would also null the camera maps.

Which conditioning path, the number of views and the presets are this project's choices (the
paper's values are not confirmed).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from diff_dorsal.rays import RayEncoding, ray_features
from diff_pixel.models import Cond, ResidualUViT, UViTConfig

__all__ = [
    "DECODER_PRESETS",
    "DecoderConfig",
    "DorsalDenoiser",
    "SlotMLP",
    "build_denoiser",
    "compact_slots",
    "denoiser_from_config",
    "null_slot_cond",
]

_COND_KEYS = ("slots", "slot_mask", "origins", "directions")

#: Backbone settings of each preset (image size and views come from :class:`DecoderConfig`).
DECODER_PRESETS: dict[str, dict[str, Any]] = {
    # AMENDMENTS B: two levels (UViTConfig needs >= 2): 16² after the stem, 8² (64 tokens per
    # view) in the middle, joint attention over all views' tokens; ≈ 3.1 M parameters.
    "lite": dict(
        patch_size=2,
        channels=(128, 128),
        blocks=(0,),
        block_types=("res",),
        dropout=(0.0, 0.0),
        mid_blocks=4,
        head_dim=32,
        frame_attention="joint",
    ),
    # The GPU preset: factorised attention within and across views, 768 wide, 12 blocks
    # (235.7 M parameters).
    "msn": dict(
        patch_size=2,
        channels=(256, 768),
        blocks=(2,),
        block_types=("res",),
        dropout=(0.0, 0.0),
        mid_blocks=12,
        head_dim=64,
        frame_attention="factorized",
    ),
}
_DEFAULT_SIZE = {"lite": 32, "msn": 64}


def _fail(func: str, arg: str, expected: str, got: Any) -> ValueError:
    return ValueError(f"{func}: {arg} must be {expected}, got {got}")


@dataclass(frozen=True)
class DecoderConfig:
    """The stage-2 decoder: a preset of diff-pixel's frame-axis Residual U-ViT plus the slot MLP.

    Attributes:
      preset: ``"lite"`` (32², joint attention, 3.13 M parameters with 11-d oracle slots) or
        ``"msn"`` (64², factorised, 235.7 M with 1536-d slots: diff-pixel's AdaLN at embedding
        width 4·256 and the temporal attention make it larger than the spec's ≈ 120 M estimate).
      image_size: view resolution (default 32 for lite, 64 for msn).
      views: number of jointly generated target views L (the network accepts any count; this is
        the training value).
      token_dim: slot-MLP output width = cross-attention token width.
      slot_hidden: slot-MLP hidden width (0: ``token_dim``).
      pose_vector: also give the flattened 3×4 pose of each view as ``Cond.vector`` (needs
        ``cond["poses"]``; off by default).
      encoding: the ray-feature encoding (:class:`~diff_dorsal.rays.RayEncoding` fields).
      overrides: further :class:`~diff_pixel.models.UViTConfig` fields (e.g. ``compute_dtype``).
    """

    preset: str = "lite"
    image_size: int | None = None
    views: int = 5
    token_dim: int = 128
    slot_hidden: int = 0
    pose_vector: bool = False
    encoding: dict[str, Any] = field(default_factory=lambda: dataclasses.asdict(RayEncoding()))
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.preset not in DECODER_PRESETS:
            raise _fail(
                "DecoderConfig", "preset", f"one of {sorted(DECODER_PRESETS)}", repr(self.preset)
            )
        if self.image_size is None:
            object.__setattr__(self, "image_size", _DEFAULT_SIZE[self.preset])
        for name in ("image_size", "views", "token_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise _fail("DecoderConfig", name, "a positive int", repr(v))
        if (
            isinstance(self.slot_hidden, bool)
            or not isinstance(self.slot_hidden, int)
            or (self.slot_hidden < 0)
        ):
            raise _fail("DecoderConfig", "slot_hidden", "an int >= 0", repr(self.slot_hidden))
        if not isinstance(self.pose_vector, bool):
            raise _fail("DecoderConfig", "pose_vector", "a bool", repr(self.pose_vector))
        object.__setattr__(self, "encoding", dict(self.encoding))
        object.__setattr__(self, "overrides", dict(self.overrides))
        self.ray_encoding()
        self.backbone()  # validates the overrides

    def ray_encoding(self) -> RayEncoding:
        return RayEncoding(**self.encoding)

    def backbone(self) -> UViTConfig:
        """The :class:`~diff_pixel.models.UViTConfig` of this decoder."""
        fields = dict(DECODER_PRESETS[self.preset])
        fields.update(
            image_size=self.image_size,
            in_channels=3,
            frame_axis=True,
            frame_positions=False,
            token_dim=self.token_dim,
            spatial_channels=self.ray_encoding().channels,
            vector_dim=12 if self.pose_vector else 0,
        )
        fields.update(self.overrides)
        return UViTConfig(**fields)

    @property
    def hidden(self) -> int:
        return self.slot_hidden or self.token_dim

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DecoderConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"DecoderConfig.from_dict: keys must be config fields, got {unknown}")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> DecoderConfig:
        return dataclasses.replace(self, **changes)


class SlotMLP(nnx.Module):
    """Linear(slot_dim → hidden) → GELU → Linear(hidden → token_dim), applied per slot."""

    def __init__(self, slot_dim: int, hidden: int, token_dim: int, *, rngs: nnx.Rngs) -> None:
        for name, v in (("slot_dim", slot_dim), ("hidden", hidden), ("token_dim", token_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise _fail("SlotMLP", name, "a positive int", repr(v))
        self.slot_dim, self.token_dim = slot_dim, token_dim
        self.fc1 = nnx.Linear(slot_dim, hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, token_dim, rngs=rngs)

    def __call__(self, slots: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(slots.astype(jnp.float32))))


def compact_slots(slots: Any, slot_mask: Any) -> tuple[jax.Array, jax.Array]:
    """Move the kept slots (``slot_mask`` True) to the front in their original order.

    ``slots (B, S, D)``, ``slot_mask (B, S)`` bool → ``(slots' (B, S, D), lengths (B,) int32)``:
    ``slots'[b, :lengths[b]]`` are the kept slots of example b in order, the rest are zeros. With
    diff-pixel's valid-prefix ``token_lengths`` this equals deleting the masked slots.
    """
    slots = jnp.asarray(slots)
    mask = jnp.asarray(slot_mask)
    if slots.ndim != 3:
        raise _fail("compact_slots", "slots", "of shape (B, S, D)", tuple(slots.shape))
    if mask.shape != slots.shape[:2]:
        raise _fail(
            "compact_slots", "slot_mask", f"of shape {tuple(slots.shape[:2])}", tuple(mask.shape)
        )
    if mask.dtype != jnp.bool_:
        raise TypeError(f"compact_slots: slot_mask must be booleans, got dtype {mask.dtype}")
    order = jnp.argsort(jnp.logical_not(mask), axis=1, stable=True)
    moved = jnp.take_along_axis(slots, order[..., None], axis=1)
    lengths = jnp.sum(mask, axis=1, dtype=jnp.int32)
    valid = jnp.arange(slots.shape[1])[None, :] < lengths[:, None]
    return jnp.where(valid[..., None], moved, jnp.zeros_like(moved)), lengths


def null_slot_cond(cond: Mapping[str, Any]) -> dict[str, Any]:
    """The unconditional input of guidance: the same cameras (and poses), every slot masked."""
    out = dict(cond)
    out["slot_mask"] = jnp.zeros_like(jnp.asarray(cond["slot_mask"]), dtype=bool)
    return out


class DorsalDenoiser(nnx.Module):
    """Protocol ``Denoiser`` (prediction ``"v"``) over a frame-axis U-ViT and a slot MLP.

    ``model(z, logsnr, cond)`` with ``z (B, L, h, w, 3)`` in the [−1, 1] image scale,
    ``logsnr`` a scalar or ``(B,)`` (shared by every view) and ``cond`` the dict
    ``{"slots" (B, S, Ds), "slot_mask" (B, S) bool (True = kept), "origins", "directions"
    (B, L, h, w, 3)}`` (plus ``"poses" (B, L, 3, 4)`` with ``pose_vector``). Returns v̂ like z.

    Args:
      net: a :class:`~diff_pixel.models.ResidualUViT` with ``frame_axis=True``, ``token_dim``
        equal to the slot MLP's output and ``spatial_channels`` equal to the ray encoding's.
      slot_mlp: :class:`SlotMLP` (or any module mapping ``(B, S, Ds) → (B, S, token_dim)`` with
        attributes ``slot_dim`` and ``token_dim``).
      prediction: ``"v"`` (the backbone's parameterisation).
      encoding: ray encoding (default :class:`~diff_dorsal.rays.RayEncoding`).
      config: the :class:`DecoderConfig` it was built from (stored in checkpoints).
    """

    def __init__(
        self,
        net: nnx.Module,
        slot_mlp: nnx.Module,
        prediction: str = "v",
        *,
        encoding: RayEncoding | None = None,
        config: DecoderConfig | None = None,
    ) -> None:
        name = "DorsalDenoiser"
        if prediction != "v":
            raise _fail(name, "prediction", "'v' (the backbone predicts v)", repr(prediction))
        cfg = getattr(net, "config", None)
        if not isinstance(cfg, UViTConfig) or not cfg.frame_axis:
            raise TypeError(
                f"{name}: net must be a diff-pixel backbone with frame_axis=True, got "
                f"{type(net).__name__}"
            )
        enc = encoding if encoding is not None else RayEncoding()
        if cfg.spatial_channels != enc.channels:
            raise _fail(
                name,
                "net.config.spatial_channels",
                f"the ray encoding's {enc.channels}",
                cfg.spatial_channels,
            )
        if cfg.token_dim != getattr(slot_mlp, "token_dim", None):
            raise _fail(
                name,
                "slot_mlp.token_dim",
                f"net.config.token_dim = {cfg.token_dim}",
                getattr(slot_mlp, "token_dim", None),
            )
        self.net = net
        self.slot_mlp = slot_mlp
        self.prediction = prediction
        self.encoding = enc
        self.slot_dim = int(slot_mlp.slot_dim)
        self.config_json = None if config is None else json.dumps(config.to_dict(), sort_keys=True)

    # ------------------------------------------------------------------ description
    @property
    def config(self) -> dict[str, Any]:
        """``{"decoder": DecoderConfig dict or None, "slot_dim": Ds}`` (stored in checkpoints)."""
        dec = None if self.config_json is None else json.loads(self.config_json)
        return {"decoder": dec, "slot_dim": self.slot_dim}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c = self.net.config
        return (c.height, c.width, 3)

    # ------------------------------------------------------------------ conditioning
    def _check(self, z: jax.Array, cond: Any) -> tuple[int, int]:
        name = "DorsalDenoiser"
        h, w, _ = self.image_shape
        if z.ndim != 5 or tuple(z.shape[2:]) != (h, w, 3):
            raise _fail(name, "z", f"of shape (B, L, {h}, {w}, 3)", tuple(z.shape))
        b, views = int(z.shape[0]), int(z.shape[1])
        if not isinstance(cond, Mapping):
            raise TypeError(
                f"{name}: cond must be a dict with keys {list(_COND_KEYS)}, got "
                f"{type(cond).__name__}"
            )
        missing = [k for k in _COND_KEYS if k not in cond or cond[k] is None]
        if self.net.config.vector_dim and ("poses" not in cond or cond["poses"] is None):
            missing.append("poses")
        if missing:
            raise ValueError(f"{name}: cond must have keys {missing}, got {sorted(cond)}")
        slots, mask = cond["slots"], cond["slot_mask"]
        if getattr(slots, "ndim", None) != 3 or slots.shape[0] != b:
            raise ValueError(
                f"{name}: cond['slots'] shape {tuple(getattr(slots, 'shape', ()))} must be "
                f"({b}, S, {self.slot_dim})"
            )
        if slots.shape[-1] != self.slot_dim:
            raise ValueError(
                f"{name}: cond['slots'] last axis must be {self.slot_dim}, got {slots.shape[-1]}"
            )
        if tuple(getattr(mask, "shape", ())) != tuple(slots.shape[:2]):
            raise ValueError(
                f"{name}: cond['slot_mask'] shape {tuple(getattr(mask, 'shape', ()))} must be "
                f"{tuple(slots.shape[:2])}"
            )
        if jnp.asarray(mask).dtype != jnp.bool_:
            raise TypeError(
                f"{name}: cond['slot_mask'] must be booleans (True = kept), got dtype "
                f"{jnp.asarray(mask).dtype}"
            )
        want = (b, views, h, w, 3)
        for key in ("origins", "directions"):
            got = tuple(getattr(cond[key], "shape", ()))
            if got != want:
                raise ValueError(f"{name}: cond[{key!r}] shape {got} must be {want}")
        if self.net.config.vector_dim:
            got = tuple(getattr(cond["poses"], "shape", ()))
            if got != (b, views, 3, 4):
                raise ValueError(f"{name}: cond['poses'] shape {got} must be {(b, views, 3, 4)}")
        return b, views

    def backbone_cond(self, cond: Mapping[str, Any]) -> Cond:
        """The backbone's :class:`~diff_pixel.models.Cond` of ``cond``: compacted slot tokens with
        ``token_lengths``, the ray-feature maps as ``spatial`` (and poses as ``vector``)."""
        slots, lengths = compact_slots(cond["slots"], cond["slot_mask"])
        tokens = self.slot_mlp(slots)
        spatial = ray_features(cond["origins"], cond["directions"], self.encoding)
        vector = None
        if self.net.config.vector_dim:
            p = jnp.asarray(cond["poses"], jnp.float32)
            vector = p.reshape(p.shape[:2] + (12,))
        return Cond(tokens=tokens, token_lengths=lengths, spatial=spatial, vector=vector)

    def __call__(
        self,
        z: jax.Array,
        logsnr: jax.Array | float,
        cond: Mapping[str, Any] | None = None,
        *,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        z = jnp.asarray(z)
        b, _ = self._check(z, cond)
        lam = jnp.asarray(logsnr, jnp.float32)
        if lam.ndim == 0:
            lam = jnp.full((b,), lam)
        if lam.shape != (b,):
            raise _fail(
                "DorsalDenoiser",
                "logsnr",
                f"a scalar or of shape ({b},) (shared by all views)",
                tuple(lam.shape),
            )
        return self.net(z, lam, self.backbone_cond(cond), dropout_key=dropout_key)


def build_denoiser(
    config: DecoderConfig, slot_dim: int, rngs: nnx.Rngs | int = 0
) -> DorsalDenoiser:
    """A fresh :class:`DorsalDenoiser` of ``config`` for slots of width ``slot_dim``."""
    if not isinstance(config, DecoderConfig):
        raise TypeError(
            f"build_denoiser: config must be a DecoderConfig, got {type(config).__name__}"
        )
    if isinstance(slot_dim, bool) or not isinstance(slot_dim, int) or slot_dim < 1:
        raise _fail("build_denoiser", "slot_dim", "a positive int", repr(slot_dim))
    if isinstance(rngs, int):
        rngs = nnx.Rngs(rngs)
    net = ResidualUViT(config.backbone(), rngs)
    mlp = SlotMLP(slot_dim, config.hidden, config.token_dim, rngs=rngs)
    return DorsalDenoiser(net, mlp, encoding=config.ray_encoding(), config=config)


def denoiser_from_config(description: Mapping[str, Any], seed: int = 0) -> DorsalDenoiser:
    """Rebuild (fresh weights) from ``DorsalDenoiser.config`` or a checkpoint's
    ``{"type", "config"}`` model description."""
    d = description.get("config", description)
    if not isinstance(d, Mapping) or d.get("decoder") is None or "slot_dim" not in d:
        raise ValueError(
            "denoiser_from_config: description must hold {'decoder': DecoderConfig dict, "
            f"'slot_dim': int}}, got {d!r:.80}"
        )
    return build_denoiser(DecoderConfig.from_dict(d["decoder"]), int(d["slot_dim"]), seed)
