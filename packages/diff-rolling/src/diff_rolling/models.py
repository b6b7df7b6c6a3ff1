"""The space-time denoiser: diff-pixel's frame-axis Residual U-ViT behind a window interface.

``space_time_model`` builds :class:`diff_pixel.models.ResidualUViT` with ``frame_axis=True``,
``frame_attention="factorized"`` (a spatial sub-layer within each frame, a temporal sub-layer across
the K + W frames at each location, then the MLP) and ``pos_emb="rope"``; the logsnr is per frame
``(B, F)``, so every frame gets its own noise embedding in the AdaLN modulation. No causal mask:
later frames are noisier, not hidden (Ruhe et al., arXiv 2402.09470).

:class:`VideoDenoiser` puts K clean context frames in front of the W window frames at logsnr
``clean_logsnr`` (our default 15, the cosine schedule's λ(0)), runs the network on K + W frames and
returns the last W: ``D(z (B, W, h, w, C), λ (B, W), {"context": (B, K, h, w, C)})``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["PRESETS", "VideoDenoiser", "preset_config", "space_time_model"]

#: UViTConfig overrides and (context, window) per preset (our defaults; the paper's architecture
#: is not confirmed). Single-level Residual U-ViTs (platform 0.2 allows one entry in ``channels``).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "config": dict(
            image_size=32,
            in_channels=1,
            patch_size=4,
            channels=(64,),
            blocks=(),
            block_types=(),
            dropout=(0.0,),
            mid_blocks=4,
            head_dim=16,
        ),
        "context": 2,
        "window": 4,
    },
    "micro": {  # tests only: the smallest network with every sub-layer (seconds to compile)
        "config": dict(
            image_size=16,
            in_channels=1,
            patch_size=4,
            channels=(32,),
            blocks=(),
            block_types=(),
            dropout=(0.0,),
            mid_blocks=1,
            head_dim=16,
        ),
        "context": 2,
        "window": 4,
    },
    "bench": {
        "config": dict(
            image_size=32,
            in_channels=1,
            patch_size=4,
            channels=(128,),
            blocks=(),
            block_types=(),
            dropout=(0.0,),
            mid_blocks=6,
            head_dim=32,
        ),
        "context": 2,
        "window": 8,
    },
    "small": {
        "config": dict(
            image_size=64,
            in_channels=2,
            patch_size=2,
            channels=(256, 768),
            blocks=(2,),
            block_types=("res",),
            dropout=(0.0, 0.0),
            mid_blocks=12,
            head_dim=64,
        ),
        "context": 2,
        "window": 8,
    },
}


def preset_config(preset: str, **overrides: Any) -> Any:
    """The :class:`diff_pixel.models.UViTConfig` of ``preset`` with ``overrides``."""
    from diff_pixel.models import UViTConfig

    if preset not in PRESETS:
        raise ValueError(
            f"space_time_model: preset must be one of {sorted(PRESETS)}, got {preset!r}"
        )
    kw = dict(PRESETS[preset]["config"])
    kw.update(frame_axis=True, frame_attention="factorized", pos_emb="rope")
    kw.update(overrides)
    return UViTConfig(**kw)


def space_time_model(preset: str = "tiny", *, rngs: nnx.Rngs | None = None, **overrides: Any):
    """diff-pixel's frame-axis Residual U-ViT sized by ``preset`` (``tiny``, ``bench``, ``small``).

    Example:
      >>> from flax import nnx
      >>> net = space_time_model("tiny", rngs=nnx.Rngs(0))
      >>> net.config.frame_axis
      True
    """
    from diff_pixel.models import ResidualUViT

    cfg = preset_config(preset, **overrides)
    return ResidualUViT(cfg, rngs if rngs is not None else nnx.Rngs(0))


def _shape_error(arg: str, expected: tuple, got: tuple) -> ValueError:
    return ValueError(f"VideoDenoiser: {arg} must have shape {expected}, got {tuple(got)}")


class VideoDenoiser(nnx.Module):
    """A window denoiser over any frame-axis network.

    ``__call__(z (B, W, h, w, C), logsnr, cond={"context": (B, K, h, w, C)}) -> (B, W, h, w, C)``;
    ``logsnr`` is a scalar, ``(B,)`` (one level per example, as diff-core's driver passes) or
    ``(B, W)`` (per frame). The network sees ``concat(context, z)`` with logsnr
    ``concat(clean_logsnr, λ)`` and its last W output frames are returned.

    Attributes:
      model: the network (``model(z (B, F, h, w, C), λ (B, F)) -> (B, F, h, w, C)``).
      context: K, the number of clean context frames (0: unconditional windows).
      prediction: what the network predicts (``"v"`` for diff-pixel's U-ViTs).
      clean_logsnr: the logsnr the context frames are shown at.
    """

    is_video_denoiser = True

    def __init__(
        self, model: Any, context: int, prediction: str = "v", clean_logsnr: float = 15.0
    ) -> None:
        if isinstance(context, bool) or not isinstance(context, int) or context < 0:
            raise ValueError(f"VideoDenoiser: context must be an int >= 0, got {context!r}")
        if prediction not in ("eps", "v", "x"):
            raise ValueError(
                f"VideoDenoiser: prediction must be 'eps', 'v' or 'x', got {prediction!r}"
            )
        self.model = model
        self.context = context
        self.prediction = prediction
        self.clean_logsnr = float(clean_logsnr)

    def __call__(self, z: Any, logsnr: Any, cond: Mapping[str, Any] | None = None) -> jax.Array:
        if not hasattr(z, "shape") or len(z.shape) != 5:
            raise ValueError(
                f"VideoDenoiser: z must have shape (B, W, h, w, C), got "
                f"{tuple(getattr(z, 'shape', ()))}"
            )
        b, w = z.shape[:2]
        lam = jnp.asarray(logsnr, jnp.float32)
        if lam.ndim == 0:
            lam = jnp.full((b, w), lam)
        elif lam.shape == (b,):
            lam = jnp.broadcast_to(lam[:, None], (b, w))
        elif lam.shape != (b, w):
            raise ValueError(
                f"VideoDenoiser: logsnr must have shape () or {(b,)} or {(b, w)}, got "
                f"{tuple(lam.shape)}"
            )
        k = self.context
        if k:
            ctx = (
                None if cond is None else cond.get("context") if isinstance(cond, Mapping) else None
            )
            expected = (b, k) + tuple(z.shape[2:])
            if ctx is None:
                raise ValueError(
                    f'VideoDenoiser: cond["context"] must have shape {expected}, got None'
                )
            if tuple(ctx.shape) != expected:
                raise ValueError(
                    f'VideoDenoiser: cond["context"] must have shape {expected}, got '
                    f"{tuple(ctx.shape)}"
                )
            full = jnp.concatenate([jnp.asarray(ctx, z.dtype), z], axis=1)
            lam = jnp.concatenate([jnp.full((b, k), self.clean_logsnr, jnp.float32), lam], axis=1)
        else:
            full = z
        out = self.model(full, lam)
        return out[:, k:].astype(z.dtype)
