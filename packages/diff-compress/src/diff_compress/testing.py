"""Checks users of the codec need (public): exact oracles, lossless round trips, a decoder fuzzer
and the rate accounting of one image."""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diff_compress.bitstream import HEADER_BYTES
from diff_compress.errors import BitstreamError

__all__ = [
    "FuzzReport",
    "GaussianPosteriorOracle",
    "assert_lossless_roundtrip",
    "fuzz_decoder",
    "gaussian_posterior_oracle",
    "mutate_stream",
    "random_compressor",
    "rate_accounting",
]


@jax.tree_util.register_static
@dataclass(frozen=True)
class GaussianPosteriorOracle:
    """Exact conditional denoiser of a per-pixel Gaussian posterior ``x | c ~ N(c, v)``.

    ``E[x | z_t, c] = c + α v (z_t − α c)/(α² v + σ²)`` (image target, ``cond = c``); with
    ``target="residual"`` it denoises ``r = x − c ~ N(0, v)``: ``E[r | z_t] = α v z_t/(α² v + σ²)``.
    Prediction ``"x"``.
    """

    v_post: float
    s_data: float = 0.5
    target: str = "image"
    prediction: str = "x"

    def __call__(self, z: Any, logsnr: Any, cond: Any = None) -> Any:
        lam = jnp.reshape(jnp.asarray(logsnr, z.dtype), (-1,) + (1,) * (z.ndim - 1))
        a2 = jax.nn.sigmoid(lam)
        s2 = jax.nn.sigmoid(-lam)
        a = jnp.sqrt(a2)
        v = self.v_post
        if self.target == "residual":
            return a * v * z / (a2 * v + s2)
        return cond + a * v * (z - a * cond) / (a2 * v + s2)


def gaussian_posterior_oracle(
    v_post: float, s_data: float = 0.5, target: str = "image"
) -> GaussianPosteriorOracle:
    """The exact denoiser of check 9 (data ``N(0, s_data²)``, posterior variance ``v_post``)."""
    if not (0 < v_post < s_data**2):
        raise ValueError(
            f"gaussian_posterior_oracle: v_post must lie in (0, s_data²={s_data**2}), got {v_post}"
        )
    if target not in ("image", "residual"):
        raise ValueError(
            f"gaussian_posterior_oracle: target must be 'image' or 'residual', got {target!r}"
        )
    return GaussianPosteriorOracle(float(v_post), float(s_data), target)


def mutate_stream(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One random mutation of a valid stream: ``(kind, bytes)`` with kind in ``bitflip``,
    ``truncate``, ``random``, ``header_field``, ``payload_recrc`` (garbage words, CRC
    recomputed)."""
    import struct
    import zlib

    kind = ["bitflip", "truncate", "random", "header_field", "payload_recrc"][int(rng.integers(5))]
    b = bytearray(data)
    if kind == "bitflip":
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(b)))
            b[i] ^= 1 << int(rng.integers(8))
    elif kind == "truncate":
        n = int(rng.integers(0, 61)) if rng.random() < 0.5 else int(rng.integers(0, len(b)))
        b = b[:n]
    elif kind == "random":
        b = bytearray(
            rng.integers(0, 256, int(rng.integers(0, 2 * len(data))), dtype=np.uint8).tobytes()
        )
        if rng.random() < 0.5 and len(b) >= 4:
            b[:4] = b"DCMP"
    elif kind == "header_field":
        off, size = [(4, 1), (5, 1), (6, 1), (7, 1), (12, 2), (14, 2), (20, 4), (24, 4), (28, 4)][
            int(rng.integers(9))
        ]
        val = [0, 2 ** (8 * size) - 1, int(rng.integers(0, 2 ** (8 * size)))][int(rng.integers(3))]
        b[off : off + size] = int(val).to_bytes(size, "little")
        if rng.random() < 0.5:  # make the CRC valid again so later checks see it
            b[32:36] = struct.pack("<I", zlib.crc32(bytes(b[36:]), zlib.crc32(bytes(b[:32]))))
    else:
        n_words = (len(b) - HEADER_BYTES) // 4
        if n_words:
            k = int(rng.integers(1, n_words + 1))
            idx = rng.choice(n_words, size=k, replace=False)
            for i in idx:
                o = HEADER_BYTES + 4 * int(i)
                b[o : o + 4] = rng.integers(0, 2**32, dtype=np.uint64).astype(np.uint32).tobytes()
        b[32:36] = struct.pack("<I", zlib.crc32(bytes(b[36:]), zlib.crc32(bytes(b[:32]))))
    return kind, bytes(b)


@dataclass
class FuzzReport:
    """Counts per :class:`BitstreamError` reason, how many mutants decoded to a valid image, and
    every other exception (each one a bug)."""

    counts: Counter = field(default_factory=Counter)
    decoded_ok: int = 0
    other_errors: list[str] = field(default_factory=list)
    n: int = 0


def fuzz_decoder(compressor: Any, data: bytes, n: int, seed: int = 0) -> FuzzReport:
    """Decode ``n`` mutations of ``data``: each must raise ``BitstreamError`` or decode to a uint8
    image of the header's size."""
    rng = np.random.default_rng(seed)
    rep = FuzzReport(n=n)
    for _ in range(n):
        kind, mutant = mutate_stream(data, rng)
        try:
            img = compressor.decompress(mutant)
            header = compressor.read_header(mutant)
            if img.dtype != np.uint8 or img.shape[:2] != (header.height, header.width):
                rep.other_errors.append(f"{kind}: bad output {img.dtype} {img.shape}")
            else:
                rep.decoded_ok += 1
        except BitstreamError as e:
            rep.counts[e.reason] += 1
        except Exception as e:  # noqa: BLE001 - every other exception is a finding
            rep.other_errors.append(f"{kind}: {type(e).__name__}: {e}")
    return rep


def assert_lossless_roundtrip(
    compressor: Any, images: list[np.ndarray], cross_process: bool = True
) -> None:
    """Every image's decoded ``z_sym``, ``y_sym`` and scale indices equal the encoder's, and
    (``cross_process``) a fresh Python process that loads the model from ``compressor.model_dir``
    decodes the same latents and the same MSE reconstruction bitwise."""
    for i, img in enumerate(images):
        enc = compressor.encode_symbols_of(img)
        lat = compressor.latents(enc["data"])
        for k in ("z_sym", "y_sym", "y_index"):
            if enc.get(k) is not None and not np.array_equal(lat[k], enc[k]):
                raise AssertionError(f"image {i}: decoded {k} differs from the encoder's")
        rec = compressor.decompress(enc["data"])
        if not cross_process:
            continue
        if compressor.model_dir is None:
            raise ValueError(
                "assert_lossless_roundtrip: cross_process needs a Compressor.load()ed model"
            )
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            (t / "s.dcmp").write_bytes(enc["data"])
            code = (
                "import sys, numpy as np\n"
                "from diff_compress import Compressor\n"
                "c = Compressor.load(sys.argv[1]); d = open(sys.argv[2] + '/s.dcmp', 'rb').read()\n"
                "lat = c.latents(d)\n"
                "[np.save(sys.argv[2] + f'/{k}.npy', v) for k, v in lat.items()]\n"
                "np.save(sys.argv[2] + '/rec.npy', c.decompress(d))\n"
            )
            subprocess.run(
                [sys.executable, "-c", code, str(compressor.model_dir), tmp],
                check=True,
                timeout=600,
            )
            for k in lat:
                if not np.array_equal(np.load(t / f"{k}.npy"), enc[k]):
                    raise AssertionError(f"image {i}: {k} decoded in another process differs")
            if not np.array_equal(np.load(t / "rec.npy"), rec):
                raise AssertionError(f"image {i}: the MSE reconstruction differs across processes")


def rate_accounting(compressor: Any, image: np.ndarray) -> dict[str, float]:
    """Estimate (continuous σ), ideal (table σ) and file bits of one image, and the overheads."""
    enc = compressor.encode_symbols_of(image)
    file_bits = 8 * len(enc["data"])
    est, ideal = enc["bits_estimate"], enc["bits_ideal"]
    payload = file_bits - 8 * HEADER_BYTES
    return {
        "bits_estimate": est,
        "bits_ideal": ideal,
        "bits_file": float(file_bits),
        "bits_payload": float(payload),
        "table_overhead": ideal / est - 1.0,
        "coder_overhead": payload / ideal - 1.0,
        "file_over_estimate": file_bits / est - 1.0,
        "header_share": 8 * HEADER_BYTES / file_bits,
        "pixels": float(math.prod(image.shape[:2])),
    }


def random_compressor(size: str = "tiny", seed: int = 0) -> Any:
    """A :class:`~diff_compress.Compressor` around a random-initialised codec of ``size`` (the
    bitstream, coding and lossless-ness properties hold for any weights)."""
    from flax import nnx

    from diff_compress.codec import CodecConfig, MSECodec, export_coding_tables
    from diff_compress.pipeline import Compressor

    codec = MSECodec(CodecConfig.named(size), nnx.Rngs(seed))
    return Compressor(codec, export_coding_tables(codec))
