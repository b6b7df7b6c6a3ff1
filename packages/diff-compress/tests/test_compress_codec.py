"""The pipeline on a random-initialised codec: lossless latents (check 1, fast variant), rate
accounting of a real image, the bad-input table of the spec, and the codec metrics (check 16)."""

from __future__ import annotations

import numpy as np
import pytest

from diff_compress import (
    CodecConfig,
    NonFiniteError,
    assert_lossless_roundtrip,
    bits_per_pixel,
    hf_energy_ratio,
    psnr,
    rate_accounting,
    ssim,
)
from diff_compress.testing import random_compressor


@pytest.fixture(scope="module")
def cpu_codec():
    return random_compressor("cpu", 0)


@pytest.fixture(scope="module")
def crop():
    import skimage.data

    return np.ascontiguousarray(skimage.data.chelsea()[50:146, 100:228])  # 96×128


@pytest.mark.smoke
@pytest.mark.parametrize("coder", ["range", "ans"])
def test_latents_round_trip_losslessly(cpu_codec, crop, coder):
    enc = cpu_codec.encode_symbols_of(crop, coder=coder)
    lat = cpu_codec.latents(enc["data"])
    for k in ("z_sym", "y_sym", "y_index"):
        np.testing.assert_array_equal(lat[k], enc[k])
    a = cpu_codec.decompress(enc["data"])
    b = cpu_codec.decompress(enc["data"])
    assert a.shape == crop.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert_lossless_roundtrip(cpu_codec, [crop], cross_process=False)


def test_rate_accounting_of_one_image(cpu_codec, crop):
    r = rate_accounting(cpu_codec, crop)
    # coder overhead over the ideal (table σ) bits: ≤ 0.2% + 64 bits
    assert r["bits_payload"] <= r["bits_ideal"] * 1.002 + 64
    assert abs(r["table_overhead"]) < 0.002
    assert abs(r["bits_file"] - 288 - r["bits_estimate"]) <= 0.004 * r["bits_estimate"] + 64


def test_grayscale_is_flagged_and_comes_back_grey(cpu_codec, crop):
    g = np.ascontiguousarray(crop[..., 1])
    data = cpu_codec.compress(g)
    assert cpu_codec.read_header(data).grayscale
    out = cpu_codec.decompress(data)
    assert out.shape == g.shape


def test_bad_inputs_have_the_spec_messages(cpu_codec):
    c = cpu_codec
    with pytest.raises(
        ValueError, match=r"compress: image must have height and width >= 1, got shape \(0, 5, 3\)"
    ):
        c.compress(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(
        TypeError,
        match=r"compress: image must be uint8 \(use to_uint8 for floats in \[0, 1\]\), got float64",
    ):
        c.compress(np.zeros((4, 4, 3)))
    with pytest.raises(
        ValueError, match=r"compress: image has 4 channels \(RGBA\); pass drop_alpha=True"
    ):
        c.compress(np.zeros((4, 4, 4), np.uint8))
    assert c.compress(np.zeros((4, 4, 4), np.uint8), drop_alpha=True)
    with pytest.raises(ValueError, match="compress: image height must be <= 65535, got 70000"):
        c.compress(np.zeros((70000, 1, 3), np.uint8))
    with pytest.raises(
        ValueError,
        match="entropy_model must be 'hyperprior' or 'factorized', got 'charm'",
    ):
        CodecConfig(entropy_model="charm")
    with pytest.raises(ValueError, match="lmbda must equal PRESETS"):
        CodecConfig(preset="q1", lmbda=0.5)


def test_non_finite_analysis_is_reported():
    import jax.numpy as jnp

    comp = random_compressor("tiny", 3)
    bias = comp.codec.g_a.convs[0].bias
    bias[...] = jnp.full_like(bias[...], jnp.nan)
    comp2 = type(comp)(comp.codec, comp.tables)
    with pytest.raises(NonFiniteError, match="compress: analysis transform output is not finite"):
        comp2.compress(np.zeros((16, 16, 3), np.uint8))


def test_metrics_identities():
    a = np.full((10, 12, 3), 100, np.uint8)
    assert psnr(a, a + 1) == pytest.approx(48.1308, abs=1e-4)
    assert psnr(a, a) == float("inf")
    assert bits_per_pixel(b"x" * 1000, 100, 80) == 1.0
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert hf_energy_ratio(x, x) == pytest.approx(1.0, abs=1e-12)
    from scipy.ndimage import uniform_filter

    blur = uniform_filter(x.astype(float), size=(5, 5, 1)).round().astype(np.uint8)
    assert hf_energy_ratio(blur, x) < 0.2


def test_user_image_folder_is_a_training_source(tmp_path):
    from PIL import Image

    from diff_compress import codec_source
    from diff_pixel import Loader

    rng = np.random.default_rng(0)
    for i, size in enumerate([(40, 50), (64, 33)]):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png"
        )
    batch = next(Loader(codec_source(tmp_path, 32), 4, seed=0))
    assert batch["x"].shape == (4, 32, 32, 3) and -1 <= batch["x"].min() and batch["x"].max() <= 1
    with pytest.raises(ValueError, match="data must be 'offline'"):
        codec_source(tmp_path / "missing", 32)
