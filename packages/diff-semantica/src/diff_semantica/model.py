r"""The image-conditioned denoiser of Semantica (arXiv 2405.14857) and its loss.

:class:`SemanticaDenoiser` holds a frozen encoder and a diff-pixel backbone wrapped by
diff-pixel's parameterisation wrapper (``Predicts(net, "v")``). The encoder's tokens of the
conditioning image reach the backbone through its token embedder as
``Cond(tokens, token_lengths, drop)``: every transformer block cross-attends from the image
tokens to the (layer-normed, projected) encoder tokens, and a dropped example attends only to
the backbone's learned null token (classifier-free guidance, Ho & Salimans, arXiv 2207.12598).
Cross-attention in every block is our default; the paper's value is not confirmed.

Loss (Kingma & Gao, arXiv 2303.00848 form, diff-core's ``diffusion_loss``), per pair (a, b):

.. math::
    \ell = \tfrac12 w(\lambda)(-\tfrac{d\lambda}{dt}) \lVert \epsilon - \hat\epsilon_\theta
    (z_\lambda(x_b), \lambda, \mathrm{drop}\,?\,\varnothing : E(x_a)) \rVert^2 ,

with ``t`` stratified over the batch, ``drop ~ Bernoulli(p_drop)`` and ``E`` under
``stop_gradient`` (the encoder is frozen).
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

from diff_core import losses as core_losses
from diff_core import weighting_from_dict
from diff_pixel import Cond, UViTConfig, build_model, freeze
from diff_pixel.losses import drop_mask, example_keys, noise_batch, stratified_times
from diff_pixel.models import Predicts
from diff_protocol import schedule_from_dict
from diff_semantica.encoders import FrozenEncoder, describe_encoder, encoder_from_config

__all__ = [
    "PRESETS",
    "SemanticaConfig",
    "SemanticaDenoiser",
    "backbone_preset",
    "semantica_loss",
]


def backbone_preset(name: str, token_dim: int) -> UViTConfig:
    """diff-pixel backbone presets of this package (AMENDMENTS B).

    ``digits``: 8×8×1, patch 1, channels (64, 64), one res level, 2 transformer blocks at 4×4,
    head_dim 32 (≈ 0.47 M). ``shapes``: 32×32×3, patch 2, channels (64, 128, 256), res blocks at
    the outer levels, 4 transformer blocks with cross-attention at 4×4.
    """
    if name == "digits":
        return UViTConfig(
            image_size=8,
            in_channels=1,
            patch_size=1,
            channels=(64, 64),
            blocks=(0,),
            block_types=("res",),
            mid_blocks=2,
            head_dim=32,
            dropout=(0.0, 0.0),
            token_dim=token_dim,
        )
    if name == "shapes":
        return UViTConfig(
            image_size=32,
            in_channels=3,
            patch_size=2,
            channels=(64, 128, 256),
            blocks=(1, 1),
            block_types=("res", "res"),
            mid_blocks=4,
            head_dim=32,
            dropout=(0.0, 0.0, 0.0),
            token_dim=token_dim,
        )
    raise ValueError(f"backbone_preset: name must be 'digits' or 'shapes', got {name!r}")


PRESETS = ("digits", "shapes")


@dataclass(frozen=True)
class SemanticaConfig:
    """Everything that defines a Semantica model (JSON with :meth:`to_dict` / :meth:`from_dict`).

    Our defaults (the paper's values are not confirmed): ``p_drop`` 0.1, v-prediction, cosine
    schedule on [−15, 15] for 8×8 digits, diff-pixel's SiD2 sigmoid weighting for the resolution,
    guidance scale 2 in diff-core's ``guided`` convention (1 = plain conditional, 0 =
    unconditional), DDIM with 50 steps.
    """

    backbone: dict[str, Any]
    encoder: dict[str, Any] | None = None
    p_drop: float = 0.1
    prediction: str = "v"
    schedule: dict[str, Any] = field(
        default_factory=lambda: {"name": "cosine", "logsnr_min": -15.0, "logsnr_max": 15.0}
    )
    weighting: dict[str, Any] = field(default_factory=lambda: {"name": "sigmoid", "bias": 5.545})
    guidance_scale: float = 2.0
    sampler: str = "ddim"
    steps: int = 50
    global_vector: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.p_drop, (int, float)) or not 0.0 <= self.p_drop < 1.0:
            raise ValueError(f"SemanticaConfig: p_drop must be in [0, 1), got {self.p_drop!r}")
        if self.prediction != "v":
            raise ValueError(f"SemanticaConfig: prediction must be 'v', got {self.prediction!r}")
        bb = UViTConfig.from_dict(dict(self.backbone))  # validates
        if bool(self.global_vector) != bool(bb.vector_dim):
            raise ValueError(
                "SemanticaConfig: global_vector requires backbone vector_dim = token_dim (and "
                f"vector_dim = 0 without it), got global_vector={self.global_vector}, "
                f"vector_dim={bb.vector_dim}"
            )
        schedule_from_dict(dict(self.schedule))
        weighting_from_dict(dict(self.weighting))

    @classmethod
    def for_digits(cls, encoder: FrozenEncoder | None = None, token_dim: int = 24, **kw: Any):
        """The ``digits`` preset for an encoder of width ``encoder.dim`` (or ``token_dim``)."""
        dim = encoder.dim if encoder is not None else token_dim
        backbone = backbone_preset("digits", dim)
        if kw.get("global_vector", True):
            backbone = backbone.replace(vector_dim=dim)
        return cls(backbone.to_dict(), _maybe_describe(encoder), **kw)

    @classmethod
    def for_shapes(cls, encoder: FrozenEncoder | None = None, token_dim: int = 64, **kw: Any):
        """The ``shapes`` preset (32×32×3) with diff-pixel's SiD2 schedule and weighting for
        32×32 (shifted cosine interpolated 32 → 32 is the plain cosine, sigmoid bias 2.77)."""
        dim = encoder.dim if encoder is not None else token_dim
        kw.setdefault("weighting", {"name": "sigmoid", "bias": 2.773})
        backbone = backbone_preset("shapes", dim)
        if kw.get("global_vector", True):
            backbone = backbone.replace(vector_dim=dim)
        return cls(backbone.to_dict(), _maybe_describe(encoder), **kw)

    @property
    def token_dim(self) -> int:
        return int(self.backbone["token_dim"])

    def backbone_config(self) -> UViTConfig:
        return UViTConfig.from_dict(dict(self.backbone))

    def schedule_obj(self) -> Any:
        return schedule_from_dict(dict(self.schedule))

    def weighting_obj(self) -> Any:
        return weighting_from_dict(dict(self.weighting))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SemanticaConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"SemanticaConfig.from_dict: unknown fields {sorted(unknown)}")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> SemanticaConfig:
        return dataclasses.replace(self, **changes)


def _maybe_describe(encoder: Any) -> dict[str, Any] | None:
    if encoder is None:
        return None
    try:
        return describe_encoder(encoder)
    except TypeError:
        return None  # a CallableEncoder: the model cannot be rebuilt from its checkpoint alone


def _frozen(encoder: nnx.Module) -> nnx.Module:
    """``encoder`` with every ``nnx.Param`` turned :class:`~diff_pixel.train.Frozen`."""
    if nnx.state(encoder, nnx.Param):
        return freeze(encoder)
    return encoder


class SemanticaDenoiser(nnx.Module):
    """A frozen encoder and a token-conditioned diff-pixel backbone (v-prediction).

    Args:
      config: :class:`SemanticaConfig` (its backbone's ``token_dim`` must equal ``encoder.dim``).
      encoder: the conditioning encoder (frozen here if it is not already).
      seed: the backbone's initialisation.

    ``model(z, logsnr, cond)`` with ``cond = model.condition(images)`` (or any diff-pixel
    ``Cond`` with ``tokens``); ``model.null_cond(batch)`` is the all-dropped condition.
    """

    prediction = "v"

    def __init__(self, config: SemanticaConfig, encoder: FrozenEncoder, *, seed: int = 0) -> None:
        if not isinstance(config, SemanticaConfig):
            raise TypeError(
                f"SemanticaDenoiser: config must be a SemanticaConfig, got {type(config).__name__}"
            )
        for attr in ("num_tokens", "dim", "pooled"):
            if not hasattr(encoder, attr):
                raise TypeError(
                    f"SemanticaDenoiser: encoder must implement the ImageEncoder interface "
                    f"(num_tokens, dim, __call__, pooled), got {type(encoder).__name__}"
                )
        if encoder.dim != config.token_dim:
            raise ValueError(
                f"SemanticaDenoiser: config.backbone token_dim must equal encoder.dim = "
                f"{encoder.dim}, got {config.token_dim}"
            )
        self.config_json = json.dumps(config.to_dict(), sort_keys=True)
        self.global_vector = bool(config.global_vector)
        self.encoder = _frozen(encoder)
        self.net = Predicts(build_model(config.backbone_config(), seed=seed), "v")

    @property
    def config(self) -> SemanticaConfig:
        return SemanticaConfig.from_dict(json.loads(self.config_json))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        cfg = self.config.backbone_config()
        return (cfg.height, cfg.width, cfg.in_channels)

    def tokens(self, images: Any) -> jax.Array:
        """Encoder tokens ``(B, K, D)`` under ``stop_gradient`` (shape-checked)."""
        t = self.encoder(images)
        if t.ndim != 3:
            raise TypeError(
                f"SemanticaDenoiser: encoder tokens must have shape (B, K, D), got {tuple(t.shape)}"
            )
        return jax.lax.stop_gradient(t)

    def make_cond(self, tokens: jax.Array, drop: Any = None, **extra: Any) -> Cond:
        """The backbone's condition for encoder ``tokens`` (B, K, D): the tokens for
        cross-attention and, with ``global_vector``, the first (global) token as the vector
        condition of the global embedding."""
        if tokens.ndim != 3:
            raise TypeError(
                f"SemanticaDenoiser: encoder tokens must have shape (B, K, D), got "
                f"{tuple(tokens.shape)}"
            )
        vector = tokens[:, 0, :] if self.global_vector else None
        return Cond(tokens=tokens, vector=vector, drop=drop, **extra)

    def condition(self, images: Any, drop: Any = None) -> Cond:
        """The condition of conditioning ``images``: :meth:`make_cond` of their tokens."""
        return self.make_cond(self.tokens(images), drop)

    def null_cond(self, batch: int) -> Cond:
        """The all-dropped condition of ``batch`` examples (the unconditional model)."""
        k, d = self.encoder.num_tokens, self.encoder.dim
        return self.make_cond(jnp.zeros((batch, k, d)), jnp.ones((batch,), bool))

    def __call__(
        self,
        z: jax.Array,
        logsnr: jax.Array | float,
        cond: Cond | None = None,
        *,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        if cond is None:
            cond = self.null_cond(z.shape[0])
        if not isinstance(cond, Cond):
            raise TypeError(
                f"SemanticaDenoiser: cond must be a diff_pixel.Cond with tokens, got "
                f"{type(cond).__name__}"
            )
        if cond.tokens is not None and cond.tokens.ndim != 3:
            raise TypeError(
                f"SemanticaDenoiser: encoder tokens must have shape (B, K, D), got "
                f"{tuple(cond.tokens.shape)}"
            )
        return self.net(z, logsnr, cond, dropout_key=dropout_key)


def rebuild_denoiser(description: Mapping[str, Any], encoder: FrozenEncoder | None = None):
    """A :class:`SemanticaDenoiser` from a checkpoint's ``{"type", "config"}`` (weights are
    restored afterwards); ``encoder`` is needed when the config cannot rebuild it (a
    CallableEncoder)."""
    cfg = SemanticaConfig.from_dict(description["config"])
    if encoder is None:
        if cfg.encoder is None:
            raise ValueError(
                "rebuild_denoiser: the run used an encoder that cannot be rebuilt from its "
                "checkpoint (a CallableEncoder): pass encoder="
            )
        encoder = encoder_from_config(cfg.encoder)
    return SemanticaDenoiser(cfg, encoder)


def semantica_loss(
    model: SemanticaDenoiser,
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    aux: Any = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The pair loss with diff-pixel's trainer signature.

    ``batch``: ``x`` the targets ``x_b`` (B, H, W, C), ``x_a`` the conditioning images (or
    ``tokens``, precomputed encoder tokens), ``index`` the global example numbers (every random
    draw of example j — t, ε, drop — comes from ``example_keys(key, index)[j]``), ``slot``.
    """
    del aux
    cfg = model.config
    x = jnp.asarray(batch["x"], jnp.float32)
    keys = example_keys(key, batch["index"])
    t = stratified_times(keys, batch.get("slot"))
    eps = noise_batch(keys, x.shape)
    z, lam, dlam = core_losses.training_inputs(cfg.schedule_obj(), x, t, eps)
    drop = drop_mask(keys, cfg.p_drop)
    tokens = batch.get("tokens")
    tokens = model.tokens(batch["x_a"]) if tokens is None else jax.lax.stop_gradient(tokens)
    out = model(z, lam, model.make_cond(tokens, drop))
    ell = core_losses.diffusion_loss(
        out, x, eps, lam, dlam, prediction="v", weighting=cfg.weighting_obj(), space="eps"
    )
    loss = jnp.mean(ell)
    return loss, {"loss": loss, "drop_rate": jnp.mean(drop.astype(jnp.float32))}
