"""The user-facing codec: :class:`Compressor` (image ↔ bytes) and file helpers.

Encoding: validate → reflect-pad to a multiple of ``2^(levels+2)`` → ``y = g_a(x)``,
``z = h_a(y)`` → ``z_sym = clamp(round(z − median), support)``, ``ẑ = z_sym + median`` → on the
CPU ``μ, σ = h_s(ẑ)``, ``idx = scale_index(σ)`` → ``y_sym = clamp(round(y − μ), −K, K)`` →
entropy-code z then y → pack (CRC of ``idx``, CRC of header + payload).

Decoding mirrors it; the stream is validated before any work
(:func:`~diff_compress.bitstream.unpack`),
the model fingerprint is compared before entropy decoding, and the scale indices recomputed from
the decoded z are compared with the encoder's CRC (``scale_index_mismatch``: the decoding
machine's hyper-synthesis disagrees with the encoder's).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_compress.bitstream import Header, pack, unpack
from diff_compress.codec import CodecConfig, CodingTables, MSECodec
from diff_compress.coder import decode_symbols, encode_symbols, ideal_bits
from diff_compress.entropy_models import factorized_logits_np, gaussian_likelihood_np, scale_index
from diff_compress.errors import BitstreamError, NonFiniteError
from diff_compress.files import save_json, write_atomic

__all__ = [
    "Compressor",
    "EncodeStats",
    "compress_file",
    "decompress_file",
    "read_image",
    "to_uint8",
    "write_atomic",
]


class EncodeStats(NamedTuple):
    """Rates of one encode: the entropy model's estimate (hard rounding, continuous σ) and the file,
    in bits; clamped symbol counts; wall seconds."""

    bits_estimate: float
    bits_file: int
    z_clamped: int
    y_clamped: int
    seconds: float


@dataclass
class _Encoded:
    data: bytes
    z_sym: np.ndarray
    y_sym: np.ndarray | None
    y_index: np.ndarray | None
    z_clamped: int
    y_clamped: int
    bits_estimate: float


def to_uint8(x: Any) -> np.ndarray:
    """Float image in [0, 1] → uint8 (round half to even, clipped)."""
    return np.clip(np.round(np.asarray(x, np.float64) * 255.0), 0, 255).astype(np.uint8)


def read_image(path: str | Path, *, drop_alpha: bool = False) -> np.ndarray:
    """Read an 8-bit PNG/JPEG as uint8 (H, W, 3) or (H, W) for greyscale files."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"read_image: path must be an existing image file, got {str(path)!r}")
    try:
        with Image.open(path) as im:
            if im.mode in ("RGBA", "LA") and not drop_alpha:
                return np.asarray(im)
            if im.mode in ("L", "1", "I;16", "I"):
                return np.asarray(im.convert("L"))
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"read_image: {str(path)!r} is not a readable PNG/JPEG ({e})") from e


class Compressor:
    """An MSE codec with its coding tables (and optionally a diffusion decoder).

    Args:
      codec: the trained :class:`MSECodec`.
      tables: its :class:`CodingTables` (built once by ``export_coding_tables`` and stored).
      decoder: optional stage-2 model (:class:`~diff_compress.decoder.DiffusionDecoder`).
      decoder_config: its :class:`~diff_compress.decoder.DiffusionDecoderConfig`.
    """

    def __init__(
        self,
        codec: MSECodec,
        tables: CodingTables,
        decoder: Any = None,
        decoder_config: Any = None,
        *,
        model_dir: str | Path | None = None,
    ) -> None:
        if not isinstance(codec, MSECodec):
            raise TypeError(f"Compressor: codec must be an MSECodec, got {type(codec).__name__}")
        if not isinstance(tables, CodingTables):
            raise TypeError(f"Compressor: tables must be CodingTables, got {type(tables).__name__}")
        self.codec = codec
        self.config: CodecConfig = codec.config
        self.tables = tables
        self.decoder = decoder
        self.decoder_config = decoder_config
        self.model_dir = None if model_dir is None else Path(model_dir)
        self._cpu = jax.devices("cpu")[0]
        gdef, state = nnx.split(codec)
        self._graph, self._state = gdef, state

        def analyse(state: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
            m = nnx.merge(gdef, state)
            y = m.g_a(x)
            return y, (m.h_a(y) if m.config.hyper else y)

        def hyper(state: Any, z_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
            return nnx.merge(gdef, state).h_s(z_hat)

        def synth(state: Any, y_hat: jax.Array) -> jax.Array:
            return nnx.merge(gdef, state).g_s(y_hat)

        self._analyse = jax.jit(analyse)
        self._hyper = jax.jit(hyper)
        self._synth = jax.jit(synth)
        self._cpu_state = jax.device_put(state, self._cpu)

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, model_dir: str | Path) -> Compressor:
        """Load ``model_dir/codec`` (and ``model_dir/decoder`` if present)."""
        from diff_compress.train import load_codec, load_decoder

        model_dir = Path(model_dir)
        codec, tables = load_codec(model_dir)
        decoder = decoder_config = None
        if (model_dir / "decoder" / "config.json").is_file():
            decoder, decoder_config = load_decoder(model_dir)
        return cls(codec, tables, decoder, decoder_config, model_dir=model_dir)

    def save(self, model_dir: str | Path) -> Path:
        """Export the codec without optimiser state: ``model_dir/codec/{params.npz, config.json,
        coding_tables.npz}`` (loadable by :meth:`load`; a training run keeps its checkpoints)."""
        import io

        d = Path(model_dir) / "codec"
        if (d / "checkpoints").exists() or (d / "config.json").exists():
            raise ValueError(
                f"Compressor.save: model_dir must not hold a codec already, got {str(model_dir)!r}"
            )
        d.mkdir(parents=True, exist_ok=True)
        flat = {
            "/".join(map(str, p)): np.asarray(v.get_value())
            for p, v in nnx.to_flat_state(nnx.state(self.codec, nnx.Param))
        }
        buf = io.BytesIO()
        np.savez(buf, **flat)
        write_atomic(d / "params.npz", buf.getvalue())
        save_json(d / "config.json", self.config.to_dict())
        self.tables.save(d / "coding_tables.npz")
        return Path(model_dir)

    # -- validation --------------------------------------------------------------------------
    def _prepare(self, image: Any, drop_alpha: bool) -> tuple[np.ndarray, bool]:
        func = "compress"
        if not isinstance(image, np.ndarray):
            raise TypeError(
                f"{func}: image must be a numpy uint8 array, got {type(image).__name__}"
            )
        if image.dtype != np.uint8:
            raise TypeError(
                f"{func}: image must be uint8 (use to_uint8 for floats in [0, 1]), "
                f"got {image.dtype}"
            )
        if image.ndim not in (2, 3):
            raise ValueError(f"{func}: image must be (H, W) or (H, W, C), got shape {image.shape}")
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(
                f"{func}: image must have height and width >= 1, got shape {image.shape}"
            )
        for name, v in (("height", image.shape[0]), ("width", image.shape[1])):
            if v > 65535:
                raise ValueError(f"{func}: image {name} must be <= 65535, got {v}")
        if image.ndim == 3 and image.shape[2] == 4:
            if not drop_alpha:
                raise ValueError(f"{func}: image has 4 channels (RGBA); pass drop_alpha=True")
            image = image[..., :3]
        if image.ndim == 3 and image.shape[2] == 2 and drop_alpha:
            image = image[..., :1]
        if image.ndim == 3 and image.shape[2] not in (1, 3):
            raise ValueError(f"{func}: image must have 1 or 3 channels, got {image.shape[2]}")
        gray = image.ndim == 2 or image.shape[2] == 1
        img = image.reshape(image.shape[0], image.shape[1], -1)
        cin = self.config.in_channels
        if cin == 3 and gray:
            img = np.repeat(img, 3, axis=2)
        elif cin == 1 and not gray:
            raise ValueError(
                f"{func}: this codec codes greyscale images (in_channels=1), "
                f"got {img.shape[2]} channels"
            )
        return img, gray

    def padded_shape(self, h: int, w: int) -> tuple[int, int]:
        m = self.config.pad_multiple
        return -(-h // m) * m, -(-w // m) * m

    def _pad(self, x: np.ndarray) -> np.ndarray:
        h, w = x.shape[:2]
        hp, wp = self.padded_shape(h, w)
        mode = "reflect" if (h > 1 and w > 1 and hp - h < h and wp - w < w) else "symmetric"
        return np.pad(x, ((0, hp - h), (0, wp - w), (0, 0)), mode=mode)

    # -- the two halves that run on the CPU ----------------------------------------------------
    def _hyper_cpu(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``ẑ → (μ, σ, idx)`` on the CPU in float32 (identical on both sides)."""
        z_hat = z_sym.astype(np.float32) + self.tables.z_median.astype(np.float32)
        with jax.default_device(self._cpu):
            mu, sigma = self._hyper(self._cpu_state, jnp.asarray(z_hat[None]))
        mu, sigma = np.asarray(mu[0], np.float32), np.asarray(sigma[0], np.float32)
        return mu, sigma, scale_index(sigma, self.tables.scale_table)

    def _z_symbols(self, z: np.ndarray) -> tuple[np.ndarray, int]:
        t = self.tables
        raw = np.round(z - t.z_median).astype(np.int64)
        lo, hi = t.z_offset.astype(np.int64), (t.z_offset + t.z_length - 1).astype(np.int64)
        sym = np.clip(raw, lo, hi)
        return sym.astype(np.int32), int((sym != raw).sum())

    def _z_density_bits(self, z_sym: np.ndarray) -> float:
        params = self.codec.prior.numpy_params()
        ch = self.tables.z_length.shape[0]
        v = (
            z_sym.reshape(-1, ch).astype(np.float64) + self.tables.z_median[None].astype(np.float64)
        ).T
        v = v[:, None, :]
        u = factorized_logits_np(params, v + 0.5)
        lo = factorized_logits_np(params, v - 0.5)
        s = -np.sign(u + lo)
        s[s == 0] = 1.0
        p = np.abs(0.5 * (1 + np.tanh(0.5 * s * u)) - 0.5 * (1 + np.tanh(0.5 * s * lo)))
        return float(-np.log2(np.maximum(p, self.codec.prior.likelihood_min)).sum())

    # -- encoding ----------------------------------------------------------------------------
    def _encode(
        self, image: Any, coder: str, seed: int, recommend: str, drop_alpha: bool
    ) -> _Encoded:
        if coder not in ("range", "ans"):
            raise ValueError(f"compress: coder must be 'range' or 'ans', got {coder!r}")
        if recommend not in ("mse", "diffusion"):
            raise ValueError(f"compress: recommend must be 'mse' or 'diffusion', got {recommend!r}")
        if (
            isinstance(seed, bool)
            or not isinstance(seed, (int, np.integer))
            or not 0 <= seed < 2**32
        ):
            raise ValueError(f"compress: seed must be an int in [0, 2^32), got {seed!r}")
        img, gray = self._prepare(image, drop_alpha)
        h, w = img.shape[:2]
        x = self._pad(img.astype(np.float32) / 255.0)
        y, z = self._analyse(self._state, jnp.asarray(x[None]))
        y, z = np.asarray(y[0], np.float32), np.asarray(z[0], np.float32)
        if not (np.isfinite(y).all() and np.isfinite(z).all()):
            raise NonFiniteError("compress: analysis transform output is not finite")
        z_sym, z_clamped = self._z_symbols(z)
        y_sym = y_index = None
        y_clamped = 0
        est = self._z_density_bits(z_sym)
        if self.config.hyper:
            mu, sigma, y_index = self._hyper_cpu(z_sym)
            k = self.tables.y_bound
            raw = np.round(y - mu).astype(np.int64)
            y_sym = np.clip(raw, -k, k).astype(np.int32)
            y_clamped = int((y_sym != raw).sum())
            est += float(-np.log2(gaussian_likelihood_np(y_sym, sigma)).sum())
        z_words, y_words = encode_symbols(z_sym, y_sym, y_index, self.tables, coder)
        idx_crc = zlib.crc32(
            np.ascontiguousarray(y_index, np.uint8).tobytes() if y_index is not None else b""
        )
        header = Header(
            height=h,
            width=w,
            fingerprint=self.tables.short_fingerprint,
            preset_id=self.config.preset_id,
            coder=coder,
            grayscale=bool(gray and self.config.in_channels == 3),
            diffusion=recommend == "diffusion",
            seed=int(seed),
            index_crc=idx_crc,
        )
        data = pack(header, z_words, y_words)
        return _Encoded(data, z_sym, y_sym, y_index, z_clamped, y_clamped, est)

    def compress(
        self,
        image: Any,
        *,
        coder: str = "range",
        seed: int = 0,
        recommend: str = "diffusion",
        drop_alpha: bool = False,
    ) -> bytes:
        """Encode a uint8 image (H, W, 3), (H, W, 1) or (H, W) into a stream (bytes)."""
        return self._encode(image, coder, seed, recommend, drop_alpha).data

    def encode_stats(self, image: Any, *, coder: str = "range") -> EncodeStats:
        """:class:`EncodeStats` of encoding ``image``."""
        t0 = time.perf_counter()
        enc = self._encode(image, coder, 0, "diffusion", False)
        return EncodeStats(
            enc.bits_estimate,
            8 * len(enc.data),
            enc.z_clamped,
            enc.y_clamped,
            time.perf_counter() - t0,
        )

    def encode_symbols_of(self, image: Any, *, coder: str = "range") -> dict[str, Any]:
        """The symbols, scale indices, stream and ideal bits of one encode (for tests and the
        accounting benchmark)."""
        enc = self._encode(image, coder, 0, "diffusion", False)
        bz, by = ideal_bits(enc.z_sym, enc.y_sym, enc.y_index, self.tables)
        return {
            "data": enc.data,
            "z_sym": enc.z_sym,
            "y_sym": enc.y_sym,
            "y_index": enc.y_index,
            "bits_estimate": enc.bits_estimate,
            "bits_ideal": bz + by,
        }

    # -- decoding ----------------------------------------------------------------------------
    def read_header(self, data: bytes, *, max_pixels: int = 2**26) -> Header:
        """Validate ``data`` and return its header (no entropy decoding)."""
        return unpack(data, max_pixels=max_pixels)[0]

    def _decode_latents(
        self, data: bytes, max_pixels: int
    ) -> tuple[Header, np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]:
        header, z_words, y_words = unpack(data, max_pixels=max_pixels)
        if header.fingerprint != self.tables.short_fingerprint:
            raise BitstreamError(
                "model_mismatch",
                f"stream needs model {header.fingerprint.hex()}, loaded model is "
                f"{self.tables.short_fingerprint.hex()}",
            )
        hp, wp = self.padded_shape(header.height, header.width)
        s = 2**self.config.levels
        c = self.config
        if c.hyper:
            z_shape = (hp // s // 4, wp // s // 4, c.channels)
        else:
            z_shape = (hp // s, wp // s, c.latent_channels)
        cache: dict[str, np.ndarray] = {}

        def hyper_fn(z_sym: np.ndarray) -> np.ndarray:
            mu, _, idx = self._hyper_cpu(z_sym)
            cache["mu"] = mu
            if zlib.crc32(np.ascontiguousarray(idx, np.uint8).tobytes()) != header.index_crc:
                raise BitstreamError(
                    "scale_index_mismatch",
                    "the scale indices recomputed from z differ from the encoder's (another "
                    "hardware or library version computed the hyper-synthesis); decoding would "
                    "produce garbage",
                )
            return idx

        z_sym, y_sym, y_index = decode_symbols(
            z_words, y_words, z_shape, self.tables, hyper_fn if c.hyper else None, header.coder
        )
        if c.hyper:
            y_hat = y_sym.astype(np.float32) + cache["mu"]
        else:
            y_hat = z_sym.astype(np.float32) + self.tables.z_median.astype(np.float32)
        return header, z_sym, y_sym, y_index, y_hat

    def decode_mse_float(
        self, data: bytes, *, max_pixels: int = 2**26
    ) -> tuple[Header, np.ndarray]:
        """``(header, x_mse)``: the MSE reconstruction as float32 (H, W, C) clipped to [0, 1]."""
        header, _, _, _, y_hat = self._decode_latents(data, max_pixels)
        x = np.asarray(self._synth(self._state, jnp.asarray(y_hat[None]))[0], np.float32)
        if not np.isfinite(x).all():
            raise NonFiniteError("decompress: synthesis transform output is not finite")
        return header, np.clip(x[: header.height, : header.width], 0.0, 1.0)

    def latents(self, data: bytes) -> dict[str, np.ndarray]:
        """The decoded ``z_sym``, ``y_sym`` and scale indices of a stream (lossless-ness checks)."""
        _, z_sym, y_sym, y_index, _ = self._decode_latents(data, 2**26)
        out = {"z_sym": z_sym}
        if y_sym is not None:
            out.update(y_sym=y_sym, y_index=y_index)
        return out

    def _as_output(self, header: Header, x: np.ndarray) -> np.ndarray:
        img = to_uint8(x)
        if self.config.in_channels == 1:
            return img[..., 0]
        if header.grayscale:
            return to_uint8(x.mean(axis=-1))
        return img

    def decompress(
        self,
        data: bytes,
        *,
        decoder: str = "mse",
        steps: int | None = None,
        sampler: str | None = None,
        seed: int | None = None,
        tile: int | None = None,
        max_pixels: int = 2**26,
    ) -> np.ndarray:
        """Decode a stream to a uint8 image with the MSE decoder or the diffusion decoder (seed
        from the header unless given)."""
        if decoder not in ("mse", "diffusion"):
            raise ValueError(f"decompress: decoder must be 'mse' or 'diffusion', got {decoder!r}")
        if decoder == "diffusion" and self.decoder is None:
            where = self.model_dir if self.model_dir is not None else "MODEL"
            raise ValueError(
                f"decompress: decoder='diffusion' needs a trained decoder in {where}/decoder"
            )
        header, x_mse = self.decode_mse_float(data, max_pixels=max_pixels)
        if decoder == "mse":
            return self._as_output(header, x_mse)
        from diff_compress.decoder import decode_diffusion

        x = decode_diffusion(
            self.decoder,
            x_mse,
            config=self.decoder_config,
            steps=steps,
            sampler=sampler,
            seed=header.seed if seed is None else seed,
            tile=tile,
        )
        return self._as_output(header, np.asarray(x))


def compress_file(
    compressor: Compressor,
    in_path: str | Path,
    out_path: str | Path,
    *,
    drop_alpha: bool = False,
    **kwargs: Any,
) -> bytes:
    """Read an image file, compress it and write the stream atomically; returns the bytes."""
    image = read_image(in_path, drop_alpha=drop_alpha)
    data = compressor.compress(image, drop_alpha=drop_alpha, **kwargs)
    write_atomic(out_path, data)
    return data


def decompress_file(
    compressor: Compressor, in_path: str | Path, out_path: str | Path, **kwargs: Any
) -> np.ndarray:
    """Decode a stream file and write a PNG atomically (a failed decode writes nothing)."""
    import io

    from PIL import Image

    in_path = Path(in_path)
    if not in_path.is_file():
        raise ValueError(f"decompress_file: in_path must be an existing file, got {str(in_path)!r}")
    img = compressor.decompress(in_path.read_bytes(), **kwargs)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    write_atomic(out_path, buf.getvalue())
    return img
