"""Stage 1: the MSE codec (mean-scale hyperprior, arXiv 1809.02736 without the context model; a
factorized-prior variant, arXiv 1802.01436, for 8×8 digits) and its frozen coding tables.

Training loss (CompressAI's convention, x in [0, 1]):
``L = λ · 255² · mean((x − x̂)²) + (bits_y + bits_z) / (B·H·W)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_compress.entropy_models import (
    FactorizedPrior,
    GaussianConditional,
    factorized_logits_np,
    scale_table,
)
from diff_compress.quantization import add_uniform_noise, ste_round
from diff_compress.transforms import (
    AnalysisTransform,
    HyperAnalysis,
    HyperSynthesis,
    SynthesisTransform,
)

__all__ = [
    "PRESETS",
    "SIZES",
    "CodecConfig",
    "CodecOutput",
    "CodingTables",
    "MSECodec",
    "export_coding_tables",
    "rd_loss",
]

#: CompressAI's MSE λ for its qualities 1–6 (``mbt2018-mean``), so results line up with its zoo.
PRESETS: dict[str, float] = {
    "q1": 0.0018,
    "q2": 0.0035,
    "q3": 0.0067,
    "q4": 0.0130,
    "q5": 0.0250,
    "q6": 0.0483,
}

#: Named sizes: ``(channels N, latent_channels M, levels, entropy_model, in_channels)``.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        channels=16, latent_channels=16, levels=2, entropy_model="hyperprior", in_channels=3
    ),
    "digits": dict(
        channels=64, latent_channels=8, levels=3, entropy_model="factorized", in_channels=1
    ),
    "cpu": dict(
        channels=48, latent_channels=64, levels=4, entropy_model="hyperprior", in_channels=3
    ),
    "base": dict(
        channels=128, latent_channels=192, levels=4, entropy_model="hyperprior", in_channels=3
    ),
    "large": dict(
        channels=192, latent_channels=320, levels=4, entropy_model="hyperprior", in_channels=3
    ),
}

_ENTROPY_MODELS = ("hyperprior", "factorized")


@dataclass(frozen=True)
class CodecConfig:
    """Architecture and rate point of an :class:`MSECodec` (JSON round trip).

    ``preset`` names the λ of :data:`PRESETS` (``lmbda`` then must match it) or is ``"custom"``.
    """

    channels: int = 48
    latent_channels: int = 64
    levels: int = 4
    entropy_model: str = "hyperprior"
    in_channels: int = 3
    lmbda: float = PRESETS["q3"]
    preset: str = "q3"
    kernel: int = 5

    def __post_init__(self) -> None:
        for name in ("channels", "latent_channels", "levels", "in_channels", "kernel"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"CodecConfig: {name} must be a positive int, got {v!r}")
        if self.entropy_model not in _ENTROPY_MODELS:
            raise ValueError(
                f"CodecConfig: entropy_model must be 'hyperprior' or 'factorized', "
                f"got {self.entropy_model!r}"
            )
        if self.in_channels not in (1, 3):
            raise ValueError(f"CodecConfig: in_channels must be 1 or 3, got {self.in_channels}")
        if self.latent_channels % 2:
            raise ValueError(
                f"CodecConfig: latent_channels must be even (3M/2 hyper channels), "
                f"got {self.latent_channels}"
            )
        if not (
            isinstance(self.lmbda, (int, float)) and math.isfinite(self.lmbda) and self.lmbda > 0
        ):
            raise ValueError(f"CodecConfig: lmbda must be a positive float, got {self.lmbda!r}")
        if self.preset != "custom":
            if self.preset not in PRESETS:
                raise ValueError(
                    f"CodecConfig: preset must be one of {sorted(PRESETS)} or 'custom', "
                    f"got {self.preset!r}"
                )
            if PRESETS[self.preset] != self.lmbda:
                raise ValueError(
                    f"CodecConfig: lmbda must equal PRESETS[{self.preset!r}] = "
                    f"{PRESETS[self.preset]} (or preset='custom'), got {self.lmbda}"
                )

    @classmethod
    def named(cls, size: str, preset: str = "q3", lmbda: float | None = None) -> CodecConfig:
        """The named ``size`` (:data:`SIZES`) at ``preset``, or at a custom ``lmbda``."""
        if size not in SIZES:
            raise ValueError(
                f"CodecConfig.named: size must be one of {sorted(SIZES)}, got {size!r}"
            )
        if lmbda is not None:
            return cls(**SIZES[size], lmbda=float(lmbda), preset="custom")
        if preset not in PRESETS:
            raise ValueError(
                f"CodecConfig.named: preset must be one of {sorted(PRESETS)}, got {preset!r}"
            )
        return cls(**SIZES[size], lmbda=PRESETS[preset], preset=preset)

    @property
    def hyper(self) -> bool:
        return self.entropy_model == "hyperprior"

    @property
    def pad_multiple(self) -> int:
        """Inputs are reflect-padded to a multiple of this (2^(levels+2), or 2^levels)."""
        return 2 ** (self.levels + (2 if self.hyper else 0))

    @property
    def preset_id(self) -> int:
        """Index into :data:`PRESETS` (255 for a custom λ): the bitstream's preset byte."""
        return list(PRESETS).index(self.preset) if self.preset in PRESETS else 255

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CodecConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"CodecConfig.from_dict: unknown fields {unknown}")
        return cls(**d)


class CodecOutput(NamedTuple):
    """``x_hat`` (B, H, W, C); ``bits_y``, ``bits_z`` per example (B,); ``likelihoods``."""

    x_hat: jax.Array
    bits_y: jax.Array
    bits_z: jax.Array
    likelihoods: dict[str, jax.Array]


def _bits(lik: jax.Array) -> jax.Array:
    return -jnp.sum(jnp.log2(lik), axis=tuple(range(1, lik.ndim)))


class MSECodec(nnx.Module):
    """The stage-1 codec: ``g_a``, ``g_s`` and, for the hyperprior, ``h_a``, ``h_s``.

    ``__call__(x, key=..., train=...)`` on x in [0, 1] whose H, W are multiples of
    ``config.pad_multiple`` (the pipeline pads). Train mode: noisy latents for the rate, STE
    rounding ``μ + ste_round(y − μ)`` for ``g_s``; eval mode: hard rounding everywhere (z around 0).
    """

    def __init__(self, config: CodecConfig, rngs: nnx.Rngs) -> None:
        if not isinstance(config, CodecConfig):
            raise TypeError(f"MSECodec: config must be a CodecConfig, got {type(config).__name__}")
        c = config
        self.config = c
        self.g_a = AnalysisTransform(
            c.channels, c.latent_channels, c.levels, c.kernel, c.in_channels, rngs=rngs
        )
        self.g_s = SynthesisTransform(
            c.channels, c.latent_channels, c.levels, c.kernel, c.in_channels, rngs=rngs
        )
        if c.hyper:
            self.h_a = HyperAnalysis(c.latent_channels, c.channels, rngs=rngs)
            self.h_s = HyperSynthesis(c.channels, c.latent_channels, rngs=rngs)
            self.prior = FactorizedPrior(c.channels, rngs=rngs)
        else:
            self.prior = FactorizedPrior(c.latent_channels, rngs=rngs)
        self.gaussian = GaussianConditional()

    def __call__(
        self, x: jax.Array, *, key: jax.Array | None = None, train: bool = False
    ) -> CodecOutput:
        if train and key is None:
            raise ValueError("MSECodec: train=True needs key, got None")
        k1, k2 = jax.random.split(key) if train else (None, None)
        y = self.g_a(x)
        if not self.config.hyper:
            y_t = add_uniform_noise(y, k1) if train else jnp.round(y)
            lik = self.prior.likelihood(y_t)
            y_hat = ste_round(y) if train else jnp.round(y)
            bits = _bits(lik)
            return CodecOutput(self.g_s(y_hat), bits, jnp.zeros_like(bits), {"y": lik})
        z = self.h_a(y)
        z_t = add_uniform_noise(z, k1) if train else jnp.round(z)
        lik_z = self.prior.likelihood(z_t)
        means, scales = self.h_s(z_t)
        y_t = add_uniform_noise(y, k2) if train else means + jnp.round(y - means)
        lik_y = self.gaussian.likelihood(y_t, means, scales)
        y_hat = means + (ste_round(y - means) if train else jnp.round(y - means))
        return CodecOutput(self.g_s(y_hat), _bits(lik_y), _bits(lik_z), {"y": lik_y, "z": lik_z})

    def estimate_bits(self, x: jax.Array) -> tuple[np.ndarray, np.ndarray]:
        """Eval-mode rate ``(bits_y, bits_z)`` per example as float64 host arrays (hard rounding,
        continuous σ): the entropy model's estimate. For the rate of a stream (z rounded around
        the tables' medians) use :meth:`diff_compress.Compressor.encode_stats`."""
        out = self(x, train=False)
        liks = {k: np.asarray(v, np.float64) for k, v in out.likelihoods.items()}
        by = -np.log2(liks["y"]).reshape(len(liks["y"]), -1).sum(1)
        bz = (
            -np.log2(liks["z"]).reshape(len(liks["z"]), -1).sum(1)
            if "z" in liks
            else np.zeros_like(by)
        )
        return by, bz


def rd_loss(
    codec: MSECodec, x: jax.Array, key: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``λ · 255² · mean((x − x̂)²) + (bits_y + bits_z)/(B·H·W)`` (train mode) and metrics
    ``{"mse", "bpp", "psnr"}``."""
    out = codec(x, key=key, train=True)
    b, h, w = x.shape[:3]
    mse = jnp.mean((x - out.x_hat) ** 2)
    bpp = (jnp.sum(out.bits_y) + jnp.sum(out.bits_z)) / (b * h * w)
    loss = codec.config.lmbda * 255.0**2 * mse + bpp
    return loss, {"mse": mse, "bpp": bpp, "psnr": -10.0 * jnp.log10(jnp.maximum(mse, 1e-12))}


# ------------------------------------------------------------------------------------------------
# Coding tables


@dataclass(frozen=True, eq=False)
class CodingTables:
    """Frozen tables the encoder and the decoder read (never recomputed at coding time).

    Attributes:
      z_median: (C,) float32 median of each channel of the factorized density.
      z_offset: (C,) int32, the symbol of the first pmf entry (``z_sym ≥ z_offset``).
      z_length: (C,) int32, support length of each channel.
      z_pmf: (C, L) float64, each row's first ``z_length`` entries sum to 1 (rest 0).
      scale_table: (64,) float64.
      y_bound: K, y symbols lie in [−K, K].
      fingerprint: SHA-256 of the tables, the config JSON and the decoder-side parameters.
    """

    z_median: np.ndarray
    z_offset: np.ndarray
    z_length: np.ndarray
    z_pmf: np.ndarray
    scale_table: np.ndarray
    y_bound: int
    fingerprint: bytes

    @property
    def short_fingerprint(self) -> bytes:
        return self.fingerprint[:4]

    def save(self, path: str | Path) -> None:
        """Write ``coding_tables.npz`` atomically."""
        path = Path(path)
        buf = io.BytesIO()
        np.savez(
            buf,
            z_median=self.z_median,
            z_offset=self.z_offset,
            z_length=self.z_length,
            z_pmf=self.z_pmf,
            scale_table=self.scale_table,
            y_bound=np.int64(self.y_bound),
            fingerprint=np.frombuffer(self.fingerprint, np.uint8),
        )
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> CodingTables:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                return cls(
                    z_median=f["z_median"].astype(np.float32),
                    z_offset=f["z_offset"].astype(np.int32),
                    z_length=f["z_length"].astype(np.int32),
                    z_pmf=f["z_pmf"].astype(np.float64),
                    scale_table=f["scale_table"].astype(np.float64),
                    y_bound=int(f["y_bound"]),
                    fingerprint=f["fingerprint"].astype(np.uint8).tobytes(),
                )
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"CodingTables.load: {path} is not a coding-tables file ({e})") from e

    def table_bytes(self) -> bytes:
        return b"".join(
            np.ascontiguousarray(a).tobytes()
            for a in (self.z_median, self.z_offset, self.z_length, self.z_pmf, self.scale_table)
        ) + int(self.y_bound).to_bytes(4, "little")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _decoder_params_bytes(codec: MSECodec) -> bytes:
    parts = [codec.g_s] + ([codec.h_s] if codec.config.hyper else [])
    out = []
    for part in parts:
        for path, var in sorted(
            nnx.to_flat_state(nnx.state(part, nnx.Param)), key=lambda kv: str(kv[0])
        ):
            out.append(str(path).encode())
            out.append(np.ascontiguousarray(np.asarray(var.get_value(), np.float32)).tobytes())
    return b"".join(out)


def export_coding_tables(
    codec: MSECodec, tail_mass: float = 1e-9, n_scales: int = 64, y_bound: int = 255
) -> CodingTables:
    """Build the coding tables of ``codec`` (float64 on the host).

    Per channel: the median (``c = ½``) and the ``tail_mass/2`` and ``1 − tail_mass/2`` quantiles
    of the factorized cumulative ``c`` by bisection (60 iterations), support
    ``[floor(q_lo − med), ceil(q_hi − med)]``, pmf ``c(k + med + ½) − c(k + med − ½)``
    renormalised. The fingerprint hashes the tables, the config JSON and every parameter of
    ``g_s`` (and ``h_s``).
    """
    params = codec.prior.numpy_params()
    ch = codec.prior.channels

    def bisect(target_logit: float) -> np.ndarray:
        lo = np.full(ch, -1e4)
        hi = np.full(ch, 1e4)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            val = factorized_logits_np(params, mid.reshape(ch, 1, 1)).reshape(ch)
            below = val < target_logit
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    t = math.log(tail_mass / 2) - math.log1p(-tail_mass / 2)  # logit(tail_mass / 2)
    median = bisect(0.0).astype(np.float32).astype(np.float64)
    q_lo, q_hi = bisect(t), bisect(-t)
    first = np.floor(q_lo - median).astype(np.int64)
    last = np.maximum(np.ceil(q_hi - median).astype(np.int64), first + 1)  # constriction needs ≥ 2
    lengths = (last - first + 1).astype(np.int64)
    big = int(lengths.max())
    pmf = np.zeros((ch, big), np.float64)
    for c in range(ch):
        k = np.arange(first[c], last[c] + 1, dtype=np.float64) + median[c]
        u = factorized_logits_np(
            [
                (m[c : c + 1], b[c : c + 1], None if f is None else f[c : c + 1])
                for m, b, f in params
            ],
            (k + 0.5).reshape(1, 1, -1),
        ).ravel()
        lo_ = factorized_logits_np(
            [
                (m[c : c + 1], b[c : c + 1], None if f is None else f[c : c + 1])
                for m, b, f in params
            ],
            (k - 0.5).reshape(1, 1, -1),
        ).ravel()
        s = -np.sign(u + lo_)
        s[s == 0] = 1.0
        p = np.abs(_sigmoid(s * u) - _sigmoid(s * lo_))
        pmf[c, : lengths[c]] = p / p.sum()
    tables = dict(
        z_median=median.astype(np.float32),
        z_offset=first.astype(np.int32),
        z_length=lengths.astype(np.int32),
        z_pmf=pmf,
        scale_table=scale_table(n_scales),
        y_bound=int(y_bound),
    )
    draft = CodingTables(**tables, fingerprint=b"")
    h = hashlib.sha256()
    h.update(draft.table_bytes())
    h.update(json.dumps(codec.config.to_dict(), sort_keys=True).encode())
    h.update(_decoder_params_bytes(codec))
    return CodingTables(**tables, fingerprint=h.digest())
