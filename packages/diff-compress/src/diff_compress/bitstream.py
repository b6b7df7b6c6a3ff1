"""The container of a compressed image (format version 1, little-endian).

| offset | bytes | field |
|---|---|---|
| 0 | 4 | magic ``b"DCMP"`` |
| 4 | 1 | format version = 1 |
| 5 | 1 | flags: bit 0 coder (0 range, 1 ANS), bit 1 greyscale, bit 2 diffusion; bits 3–7 zero |
| 6 | 1 | preset id (index into ``PRESETS``, 255 = custom λ) |
| 7 | 1 | reserved, zero |
| 8 | 4 | model fingerprint (first 4 bytes of ``CodingTables.fingerprint``) |
| 12 | 2 + 2 | original height H, width W (1..65535) |
| 16 | 4 | diffusion decoder seed (u32) |
| 20 | 4 + 4 | ``n_z_words``, ``n_y_words`` (u32) |
| 28 | 4 | CRC32 of the y scale-index array (uint8, C order) |
| 32 | 4 | CRC32 of bytes 0–31 followed by the payload |
| 36 | 4·(n_z + n_y) | z words then y words (uint32 LE) |

constriction itself detects nothing (a truncated or bit-flipped word array decodes silently to wrong
symbols), so :func:`unpack` validates everything it can before any entropy decoding, in a fixed
order, and raises :class:`~diff_compress.errors.BitstreamError` at the first failure.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from diff_compress.errors import BitstreamError

__all__ = ["HEADER_BYTES", "MAGIC", "VERSION", "Header", "pack", "unpack"]

MAGIC = b"DCMP"
VERSION = 1
HEADER_BYTES = 36
_FMT = "<4sBBBB4sHHIIII"  # up to and including the index CRC: 32 bytes
_CODERS = ("range", "ans")


@dataclass(frozen=True)
class Header:
    """The fields of a stream's header (see the module docstring)."""

    height: int
    width: int
    fingerprint: bytes
    preset_id: int = 255
    coder: str = "range"
    grayscale: bool = False
    diffusion: bool = False
    seed: int = 0
    index_crc: int = 0
    n_z_words: int = 0
    n_y_words: int = 0
    version: int = VERSION

    def flags(self) -> int:
        return (
            (1 if self.coder == "ans" else 0)
            | (2 if self.grayscale else 0)
            | (4 if self.diffusion else 0)
        )


def _u32_words(name: str, words: np.ndarray) -> np.ndarray:
    w = np.asarray(words)
    if w.ndim != 1 or w.dtype != np.uint32:
        raise TypeError(f"pack: {name} must be a 1-D uint32 array, got {w.dtype} {w.shape}")
    return w.astype("<u4", copy=False)


def pack(header: Header, z_words: np.ndarray, y_words: np.ndarray) -> bytes:
    """Serialise ``header`` and the two word arrays (``n_*_words`` and the CRC are filled in)."""
    if header.coder not in _CODERS:
        raise ValueError(f"pack: header.coder must be 'range' or 'ans', got {header.coder!r}")
    if not (1 <= header.height <= 65535 and 1 <= header.width <= 65535):
        raise ValueError(
            f"pack: header height and width must lie in 1..65535, "
            f"got {header.height}×{header.width}"
        )
    if len(header.fingerprint) != 4:
        raise ValueError(f"pack: header.fingerprint must be 4 bytes, got {len(header.fingerprint)}")
    if not (0 <= header.preset_id <= 255) or not (0 <= header.seed < 2**32):
        raise ValueError(
            f"pack: preset_id must be a byte and seed a u32, got {header.preset_id}, {header.seed}"
        )
    zw, yw = _u32_words("z_words", z_words), _u32_words("y_words", y_words)
    head = struct.pack(
        _FMT,
        MAGIC,
        VERSION,
        header.flags(),
        header.preset_id,
        0,
        header.fingerprint,
        header.height,
        header.width,
        header.seed,
        len(zw),
        len(yw),
        header.index_crc & 0xFFFFFFFF,
    )
    payload = zw.tobytes() + yw.tobytes()
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + struct.pack("<I", crc) + payload


def unpack(data: bytes, *, max_pixels: int = 2**26) -> tuple[Header, np.ndarray, np.ndarray]:
    """Parse and validate a stream; ``(header, z_words, y_words)``.

    Checks, in order (the first failure raises ``BitstreamError(reason, ...)``): ``too_short``,
    ``bad_magic``, ``unsupported_version``, ``bad_flags``, ``bad_size`` (H or W = 0, or
    H·W > ``max_pixels``), ``length_mismatch`` (file size ≠ 36 + 4(n_z + n_y)), ``checksum``.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"unpack: data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    n = len(data)
    if n < HEADER_BYTES:
        raise BitstreamError("too_short", f"stream has {n} bytes, the header needs {HEADER_BYTES}")
    (magic, version, flags, preset, reserved, fp, h, w, seed, nz, ny, idx_crc) = struct.unpack(
        _FMT, data[:32]
    )
    if magic != MAGIC:
        raise BitstreamError(
            "bad_magic", f"expected magic {MAGIC!r}, got {magic!r}: not a diff-compress stream"
        )
    if version != VERSION:
        raise BitstreamError(
            "unsupported_version", f"format version {version} (this reader supports {VERSION})"
        )
    if flags & 0xF8 or reserved:
        raise BitstreamError(
            "bad_flags", f"reserved bits set (flags 0x{flags:02x}, reserved byte 0x{reserved:02x})"
        )
    if h == 0 or w == 0 or h * w > max_pixels:
        raise BitstreamError(
            "bad_size", f"image size {h}×{w} must be >= 1 and at most {max_pixels} pixels"
        )
    expected = HEADER_BYTES + 4 * (nz + ny)
    if n != expected:
        raise BitstreamError("length_mismatch", f"header announces {expected} bytes, file has {n}")
    (stored,) = struct.unpack("<I", data[32:36])
    computed = zlib.crc32(data[36:], zlib.crc32(data[:32]))
    if stored != computed:
        raise BitstreamError(
            "checksum", f"CRC32 mismatch (stored 0x{stored:08x}, computed 0x{computed:08x})"
        )
    words = np.frombuffer(data, dtype="<u4", offset=HEADER_BYTES).astype(np.uint32)
    header = Header(
        height=h,
        width=w,
        fingerprint=fp,
        preset_id=preset,
        coder=_CODERS[flags & 1],
        grayscale=bool(flags & 2),
        diffusion=bool(flags & 4),
        seed=seed,
        index_crc=idx_crc,
        n_z_words=nz,
        n_y_words=ny,
    )
    return header, words[:nz].copy(), words[nz:].copy()
