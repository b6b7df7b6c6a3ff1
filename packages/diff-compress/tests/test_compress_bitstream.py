"""The container: round trip, every refusal reason, a hypothesis fuzz of the decoder (check 5),
determinism (check 6) and atomic outputs."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diff_compress import BitstreamError, Header, decompress_file, pack, unpack
from diff_compress.errors import REASONS
from diff_compress.testing import random_compressor as make_compressor


def _recrc(b: bytearray) -> bytes:
    b[32:36] = struct.pack("<I", zlib.crc32(bytes(b[36:]), zlib.crc32(bytes(b[:32]))))
    return bytes(b)


def test_pack_unpack_round_trip():
    h = Header(
        height=300,
        width=77,
        fingerprint=b"abcd",
        preset_id=2,
        coder="ans",
        grayscale=True,
        diffusion=True,
        seed=2**32 - 1,
        index_crc=123,
    )
    zw = np.arange(5, dtype=np.uint32)
    yw = np.array([2**32 - 1, 0, 7], np.uint32)
    data = pack(h, zw, yw)
    assert len(data) == 36 + 4 * 8
    h2, z2, y2 = unpack(data)
    assert (h2.height, h2.width, h2.coder, h2.grayscale, h2.diffusion, h2.seed, h2.preset_id) == (
        300,
        77,
        "ans",
        True,
        True,
        2**32 - 1,
        2,
    )
    np.testing.assert_array_equal(z2, zw)
    np.testing.assert_array_equal(y2, yw)


@pytest.mark.smoke
def test_each_refusal_reason_with_its_message(stream64):
    with pytest.raises(
        BitstreamError, match=r"too_short\): stream has 10 bytes, the header needs 36"
    ):
        unpack(stream64[:10])
    with pytest.raises(BitstreamError, match="bad_magic"):
        unpack(b"PNG!" + stream64[4:])
    b = bytearray(stream64)
    b[4] = 2
    with pytest.raises(BitstreamError, match="unsupported_version"):
        unpack(bytes(b))
    b = bytearray(stream64)
    b[5] |= 0x10
    with pytest.raises(BitstreamError, match="bad_flags"):
        unpack(bytes(b))
    b = bytearray(stream64)
    b[12:14] = b"\x00\x00"
    with pytest.raises(BitstreamError, match="bad_size"):
        unpack(bytes(b))
    n = len(stream64)
    with pytest.raises(
        BitstreamError, match=rf"length_mismatch\): header announces {n} bytes, file has {n - 3}"
    ):
        unpack(stream64[:-3])
    b = bytearray(stream64)
    b[-1] ^= 0x01
    with pytest.raises(BitstreamError, match=r"checksum\): CRC32 mismatch \(stored 0x"):
        unpack(bytes(b))
    assert unpack(stream64)[0].seed == 7


def test_model_mismatch_and_scale_index_mismatch(tiny, stream64):
    other = make_compressor("tiny", seed=1)
    with pytest.raises(BitstreamError) as e:
        other.decompress(stream64)
    assert e.value.reason == "model_mismatch"
    assert tiny.tables.short_fingerprint.hex() in str(
        e.value
    ) and other.tables.short_fingerprint.hex() in str(e.value)
    b = bytearray(stream64)
    b[28:32] = (int.from_bytes(b[28:32], "little") ^ 1).to_bytes(4, "little")
    with pytest.raises(BitstreamError) as e:
        tiny.decompress(_recrc(b))
    assert e.value.reason == "scale_index_mismatch"


def test_truncation_to_every_short_length(tiny, stream64):
    for n in range(0, 61):
        with pytest.raises(BitstreamError) as e:
            tiny.decompress(stream64[:n])
        assert e.value.reason in ("too_short", "length_mismatch")


def _check_one(tiny, data: bytes) -> None:
    try:
        img = tiny.decompress(data)
    except BitstreamError as e:
        assert e.reason in REASONS
        return
    h = unpack(data)[0]
    assert img.dtype == np.uint8 and img.shape[:2] == (h.height, h.width)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    pos=st.integers(0, 10**6),
    bit=st.integers(0, 7),
    cut=st.integers(0, 10**6),
    mode=st.sampled_from(["flip", "cut", "both"]),
)
def test_fuzz_bitflips_and_truncations(tiny, stream64, pos, bit, cut, mode):
    b = bytearray(stream64)
    if mode in ("flip", "both"):
        b[pos % len(b)] ^= 1 << bit
    if mode in ("cut", "both"):
        b = b[: cut % (len(b) + 1)]
    data = bytes(b)
    if data == stream64:
        return
    with pytest.raises(BitstreamError) as e:
        tiny.decompress(data)
    assert e.value.reason in (
        "checksum",
        "bad_magic",
        "bad_flags",
        "unsupported_version",
        "bad_size",
        "length_mismatch",
        "too_short",
    )


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    payload=st.binary(min_size=0, max_size=600),
    header_field=st.sampled_from([(12, 2), (14, 2), (16, 4), (20, 4), (24, 4), (28, 4)]),
    value=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["random", "recrc_payload", "recrc_field"]),
)
def test_fuzz_garbage_with_valid_crc(tiny, stream64, payload, header_field, value, kind):
    """Random bytes, garbage payload words with the CRC recomputed (entropy decoding sees garbage),
    header fields at arbitrary values with the CRC recomputed: a BitstreamError or a valid image."""
    if kind == "random":
        data = payload
    elif kind == "recrc_payload":
        b = bytearray(stream64)
        words = (len(b) - 36) // 4
        garbage = (
            (payload * (4 * words // max(len(payload), 1) + 1))[: 4 * words]
            if payload
            else bytes(4 * words)
        )
        b[36:] = garbage
        data = _recrc(b)
    else:
        off, size = header_field
        b = bytearray(stream64)
        b[off : off + size] = (value % 2 ** (8 * size)).to_bytes(size, "little")
        data = _recrc(b)
    _check_one(tiny, data)


def test_fuzz_mutations_in_a_subprocess_with_a_time_limit(tmp_path, stream64):
    """500 random mutations (check 5, fast variant) in a fresh process: a hang or a crash fails."""
    (tmp_path / "s.bin").write_bytes(stream64)
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from diff_compress.testing import random_compressor as make_compressor
        from diff_compress import fuzz_decoder
        c = make_compressor("tiny", 0)
        rep = fuzz_decoder(c, open({str(tmp_path / "s.bin")!r}, "rb").read(), 500, seed=3)
        print(dict(rep.counts), rep.decoded_ok, len(rep.other_errors))
        for e in rep.other_errors[:5]:
            print("OTHER", e)
        sys.exit(1 if rep.other_errors else 0)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "checksum" in r.stdout


def test_encoding_is_deterministic(tiny, photo64):
    assert tiny.compress(photo64, seed=5) == tiny.compress(photo64, seed=5)
    assert tiny.compress(photo64, coder="ans") != tiny.compress(photo64, coder="range")


def test_failed_decode_writes_no_file(tiny, stream64, tmp_path):
    bad = tmp_path / "bad.dcmp"
    bad.write_bytes(stream64[:-4])
    out = tmp_path / "out.png"
    with pytest.raises(BitstreamError):
        decompress_file(tiny, bad, out)
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]
