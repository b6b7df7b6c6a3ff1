"""Stage 2: the diffusion decoder (HFD, arXiv 2305.18231), a diff-pixel backbone conditioned on the
MSE reconstruction through ``cond.spatial = 2·x_mse − 1`` (concatenated at the stem and, with
``spatial_levels``, injected at every level).

Target ``x₀ = 2x − 1`` (``"image"``) or ``2(x − x_mse)`` (``"residual"``); v-prediction; the
shifted cosine schedule ``ShiftedCosineSchedule(8, 64)`` (+4.159 in log-SNR: less noise, since the
content already comes from the MSE reconstruction) and DDPM ancestral sampling at 16 steps with
``final="denoise"`` are our defaults (the paper's values are not confirmed). ``process =
"rectified_flow"`` trains and samples the flow of :mod:`diff_compress.flow` with DDIM (Euler).

Sampling starts from ``z = σ₀ ε + α₀ m`` with ``m`` the conditional mean of the target under the
condition (``c`` for the image target, 0 for the residual): at the schedule's finite start
``α₀ ≠ 0``, and this start makes the two targets give identical samples for the same noise.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import diff_core
from diff_compress.flow import FlowSchedule, flow_weighting
from diff_compress.tiling import TiledDenoiser
from diff_core.schedules import CosineSchedule, ShiftedCosineSchedule
from diff_core.weighting import v_mse
from diff_pixel import Cond, UViTConfig, build_model
from diff_protocol import jax_noise, jax_normal

__all__ = [
    "DiffusionDecoder",
    "DiffusionDecoderConfig",
    "decode_diffusion",
    "decoder_loss",
    "default_backbone",
    "posterior_sample",
    "schedule_of",
]

_TARGETS = ("image", "residual")
_PROCESSES = ("vp", "rectified_flow")
_SAMPLERS = ("ddpm", "ddim")


def default_backbone(crop: int = 64, channels: int = 3) -> dict[str, Any]:
    """The CPU backbone: a Residual U-ViT at patch 1, widths 32/64/128 (8×8 digits: 32/64)."""
    if crop <= 8:
        widths, blocks, types = (32, 64), (1,), ("res",)
    else:
        widths, blocks, types = (32, 64, 128), (1, 1), ("res", "res")
    cfg = UViTConfig(
        image_size=crop,
        in_channels=channels,
        arch="residual_uvit",
        patch_size=1,
        channels=widths,
        blocks=blocks,
        block_types=types,
        mid_blocks=2,
        head_dim=16,
        dropout=tuple(0.0 for _ in widths),
        spatial_channels=channels,
        spatial_levels=True,
    )
    return cfg.to_dict()


@dataclass(frozen=True)
class DiffusionDecoderConfig:
    """How the stage-2 decoder is built, trained and sampled (JSON round trip)."""

    backbone: dict[str, Any] = field(default_factory=default_backbone)
    target: str = "image"
    prediction: str = "v"
    schedule: dict[str, Any] = field(
        default_factory=lambda: {
            "name": "shifted_cosine",
            "resolution": 8,
            "reference_resolution": 64,
        }
    )
    process: str = "vp"
    crop: int = 64
    sampler: str = "ddpm"
    steps: int = 16
    cond_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.target not in _TARGETS:
            raise ValueError(
                f"DiffusionDecoderConfig: target must be one of {_TARGETS}, got {self.target!r}"
            )
        if self.prediction != "v":
            raise ValueError(
                f"DiffusionDecoderConfig: prediction must be 'v', got {self.prediction!r}"
            )
        if self.process not in _PROCESSES:
            raise ValueError(
                f"DiffusionDecoderConfig: process must be one of {_PROCESSES}, got {self.process!r}"
            )
        if self.sampler not in _SAMPLERS:
            raise ValueError(
                f"DiffusionDecoderConfig: sampler must be one of {_SAMPLERS}, got {self.sampler!r}"
            )
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"DiffusionDecoderConfig: steps must be >= 1, got {self.steps!r}")
        if isinstance(self.crop, bool) or not isinstance(self.crop, int) or self.crop < 1:
            raise ValueError(
                f"DiffusionDecoderConfig: crop must be a positive int, got {self.crop!r}"
            )
        if self.cond_dropout != 0.0:
            raise ValueError(
                "DiffusionDecoderConfig: cond_dropout must be 0.0 in 0.1 (no guidance), "
                f"got {self.cond_dropout}"
            )
        schedule_of(self)  # validates the schedule dict

    @classmethod
    def for_crop(cls, crop: int, channels: int = 3, **kw: Any) -> DiffusionDecoderConfig:
        return cls(backbone=default_backbone(crop, channels), crop=crop, **kw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiffusionDecoderConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"DiffusionDecoderConfig.from_dict: unknown fields {unknown}")
        return cls(**d)


def schedule_of(config: DiffusionDecoderConfig | dict[str, Any], process: str = "vp") -> Any:
    """The diff-core schedule of a config (or of a schedule dict); for the flow the same shift on
    ``2 ln((1 − t)/t)``, truncated to the cosine's log-SNR range."""
    if isinstance(config, DiffusionDecoderConfig):
        d, process = dict(config.schedule), config.process
    else:
        d = dict(config)
    name = d.pop("name", None)
    if name == "shifted_cosine":
        vp = ShiftedCosineSchedule(**d)
        shift = vp.shift
    elif name == "cosine":
        vp = CosineSchedule(**d)
        shift = 0.0
    else:
        raise ValueError(
            "DiffusionDecoderConfig: schedule name must be 'shifted_cosine' or 'cosine', "
            f"got {name!r}"
        )
    if process == "rectified_flow":
        return FlowSchedule(shift, d.get("logsnr_min", -15.0), d.get("logsnr_max", 15.0))
    return vp


class DiffusionDecoder(nnx.Module):
    """The protocol denoiser ``DiffusionDecoder(z, logsnr, cond=c)`` (v-prediction) over a
    diff-pixel backbone; ``c = 2·x_mse − 1`` is passed as ``Cond(spatial=c)``."""

    prediction = "v"

    def __init__(self, config: DiffusionDecoderConfig, *, seed: int = 0) -> None:
        if not isinstance(config, DiffusionDecoderConfig):
            raise TypeError(
                "DiffusionDecoder: config must be a DiffusionDecoderConfig, "
                f"got {type(config).__name__}"
            )
        self.config = config
        self.backbone = build_model(UViTConfig.from_dict(config.backbone), seed=seed)

    def __call__(
        self, z: jax.Array, logsnr: jax.Array, cond: Any = None, *, dropout_key: Any = None
    ) -> jax.Array:
        c = cond if isinstance(cond, Cond) else Cond(spatial=cond)
        return self.backbone(z, logsnr, c, dropout_key=dropout_key)


def _target(config: DiffusionDecoderConfig, x: jax.Array, x_mse: jax.Array) -> jax.Array:
    return 2.0 * x - 1.0 if config.target == "image" else 2.0 * (x - x_mse)


def decoder_loss(
    model: DiffusionDecoder,
    x: jax.Array,
    x_mse: jax.Array,
    key: jax.Array,
    config: DiffusionDecoderConfig | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The stage-2 loss: diff-core ``diffusion_loss`` of the v-prediction at stratified times,
    weighted by ``v_mse`` (VP) or the flow weighting; ``x``, ``x_mse`` in [0, 1]."""
    config = model.config if config is None else config
    schedule = schedule_of(config)
    x0 = _target(config, x, x_mse)
    c = 2.0 * x_mse - 1.0
    k_t, k_e, k_d = jax.random.split(key, 3)
    b = x.shape[0]
    t = diff_core.stratified_times(jax.random.uniform(k_t, (b,)))
    eps = jax_normal(k_e, x0.shape, x0.dtype)
    z, logsnr, dl = diff_core.training_inputs(schedule, x0, t, eps)
    out = model(z, logsnr, c, dropout_key=k_d)
    weighting = flow_weighting() if config.process == "rectified_flow" else v_mse()
    per = diff_core.diffusion_loss(out, x0, eps, logsnr, dl, prediction="v", weighting=weighting)
    loss = jnp.mean(per)
    return loss, {"loss": loss}


def posterior_sample(
    model: Any,
    c: jax.Array,
    *,
    schedule: Any,
    steps: int,
    sampler: Any = "ddpm",
    seed: int = 0,
    target: str = "image",
    tile: int | None = None,
    overlap: int | None = None,
    tile_batch: int = 16,
) -> jax.Array:
    """Samples in target space (unclipped) given the condition map ``c`` (B, H, W, C), through
    diff-core's one driver; ``model`` is any protocol denoiser reading ``cond=c``."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"decode_diffusion: steps must be >= 1, got {steps!r}")
    from diff_protocol import SamplerStep

    if not isinstance(sampler, SamplerStep) and sampler not in _SAMPLERS:
        raise ValueError(
            f"decode_diffusion: sampler must be one of {_SAMPLERS} or a SamplerStep, "
            f"got {sampler!r}"
        )
    if target not in _TARGETS:
        raise ValueError(f"decode_diffusion: target must be one of {_TARGETS}, got {target!r}")
    c = jnp.asarray(c)
    den = model
    if tile is not None:
        ov = tile // 4 if overlap is None else overlap
        den = TiledDenoiser(model, tile, ov, tile_batch)
    grid = diff_core.grids.uniform_t(schedule, int(steps))
    if isinstance(sampler, SamplerStep):
        step = sampler  # any registered sampler (diff.samplers) runs on the same driver
    else:
        step = diff_core.ddpm() if sampler == "ddpm" else diff_core.ddim()
    noise = jax_noise(jax.random.fold_in(jax.random.PRNGKey(int(seed)), 0), tuple(c.shape), c.dtype)
    lam0 = float(grid.logsnr[0])
    alpha0 = math.sqrt(1.0 / (1.0 + math.exp(-lam0)))
    sigma0 = math.sqrt(1.0 / (1.0 + math.exp(lam0)))
    mean0 = c if target == "image" else jnp.zeros_like(c)
    z_init = sigma0 * noise(0) + alpha0 * mean0
    out = diff_core.sample(den, step, grid, noise, cond=c, z_init=z_init, final="denoise")
    return out + c if target == "residual" else out


def decode_diffusion(
    model: DiffusionDecoder,
    x_mse: Any,
    *,
    config: DiffusionDecoderConfig | None = None,
    steps: int | None = None,
    sampler: str | None = None,
    seed: int = 0,
    tile: int | None = None,
    overlap: int | None = None,
) -> np.ndarray:
    """Decode ``x_mse`` (H, W, C) or (B, H, W, C) in [0, 1] into a sample in [0, 1].

    Images larger than the training crop are decoded tiled (tiles of ``crop``, overlap
    ``crop/4``); smaller ones are reflect-padded to the crop and cropped back.
    """
    config = model.config if config is None else config
    steps = config.steps if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"decode_diffusion: steps must be >= 1, got {steps!r}")
    sampler = config.sampler if sampler is None else sampler
    if config.process == "rectified_flow":
        sampler = "ddim"
    x = np.asarray(x_mse, np.float32)
    single = x.ndim == 3
    if single:
        x = x[None]
    b, h, w, ch = x.shape
    crop = config.crop
    hp, wp = max(h, crop), max(w, crop)
    if (hp, wp) != (h, w):
        x = np.pad(
            x,
            ((0, 0), (0, hp - h), (0, wp - w), (0, 0)),
            mode="reflect" if min(h, w) > 1 else "edge",
        )
    if tile is None and (hp > crop or wp > crop):
        tile = crop
    c = jnp.asarray(2.0 * np.clip(x, 0.0, 1.0) - 1.0)
    out = posterior_sample(
        model,
        c,
        schedule=schedule_of(config),
        steps=int(steps),
        sampler=sampler,
        seed=seed,
        target=config.target,
        tile=tile,
        overlap=overlap,
    )
    y = (np.clip(np.asarray(out, np.float32), -1.0, 1.0) + 1.0) / 2.0
    y = y[:, :h, :w]
    return y[0] if single else y
