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
    feature_distance,
    hf_energy_ratio,
    ms_ssim,
    psnr,
    rate_accounting,
    ssim,
)
from diff_compress.metrics import MS_SSIM_WEIGHTS
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


@pytest.fixture(scope="module")
def astronaut():
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut())  # 512×512×3


def _noisy(x, amp, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(x.astype(int) + rng.integers(-amp, amp + 1, x.shape), 0, 255).astype(np.uint8)


def test_ms_ssim_identity_and_one_scale_is_skimage_ssim(astronaut):
    from skimage.metrics import structural_similarity

    x = astronaut[100:292, 150:342]  # 192×192: all 5 scales
    r = ms_ssim(x, x)
    assert r.scales == 5 and r.weights == MS_SSIM_WEIGHTS
    assert r.value == pytest.approx(1.0, abs=1e-12) and float(r) == r.value
    y = _noisy(x, 30)
    for a, b in ((x, y), (x[..., 1], y[..., 1])):
        ref = structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
            channel_axis=-1 if a.ndim == 3 else None,
        )
        one = ms_ssim(a, b, scales=1)
        assert one.scales == 1 and one.weights == (1.0,)
        assert one.value == pytest.approx(ref, abs=1e-6)
        assert one.value == pytest.approx(ssim(a, b), abs=1e-6)
    assert 0 < ms_ssim(x, y).value < 1


def test_ms_ssim_drops_scales_on_small_images(astronaut):
    x = astronaut[:100, :140]  # short side 100: 4 scales (needs 88), not 5 (needs 176)
    y = _noisy(x, 10)
    r = ms_ssim(x, y)
    w4 = np.array(MS_SSIM_WEIGHTS[:4]) / sum(MS_SSIM_WEIGHTS[:4])
    assert r.scales == 4 and np.allclose(r.weights, w4, rtol=0, atol=1e-15)
    assert sum(r.weights) == pytest.approx(1.0, abs=1e-12)
    for side, n in ((176, 5), (175, 4), (88, 4), (87, 3), (44, 3), (22, 2), (21, 1), (11, 1)):
        assert ms_ssim(astronaut[:side, :200], astronaut[:side, :200]).scales == n, side
    with pytest.raises(ValueError, match=r"ms_ssim: scales=5 needs a short side of at least 176"):
        ms_ssim(x, y, scales=5)
    assert ms_ssim(x, y, scales=2).scales == 2


def _ms_ssim_reference(a, b):
    """MS-SSIM written independently: scipy's gaussian_filter (σ 1.5, truncate 3.5 = an 11×11
    window) on the whole image with the 5-px border cut off afterwards (the valid region),
    pooling by adding the four phases of each 2×2 block."""
    from scipy.ndimage import gaussian_filter

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a, b = a.astype(np.float64), b.astype(np.float64)
    short = min(a.shape[:2])
    n = 5
    while short < 11 * 2 ** (n - 1):
        n -= 1
    w = np.array(MS_SSIM_WEIGHTS[:n])
    if n < 5:
        w /= w.sum()
    out = []
    for c in range(a.shape[2]):
        x, y = a[..., c], b[..., c]
        value = 1.0
        for j in range(n):

            def f(z):
                return gaussian_filter(z, 1.5, truncate=3.5)[5:-5, 5:-5]

            mx, my = f(x), f(y)
            sxx, syy, sxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
            cs = (2 * sxy + c2) / (sxx + syy + c2)
            if j < n - 1:
                value *= max(cs.mean(), 0.0) ** w[j]
                h, wd = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
                x, y = (
                    (z[0:h:2, 0:wd:2] + z[1:h:2, 0:wd:2] + z[0:h:2, 1:wd:2] + z[1:h:2, 1:wd:2]) / 4
                    for z in (x, y)
                )
            else:
                lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
                value *= max((lum * cs).mean(), 0.0) ** w[j]
        out.append(value)
    return float(np.mean(out))


def test_ms_ssim_matches_an_independent_implementation_and_a_hand_value(astronaut):
    # odd sizes exercise the dropped last row/column of the pooling; 181 px: 5 scales
    for x in (astronaut[5:186, 7:210], astronaut[:100, :123]):
        for amp in (8, 60):
            y = _noisy(x, amp, seed=amp)
            assert ms_ssim(x, y).value == pytest.approx(_ms_ssim_reference(x, y), abs=1e-10)
    # constant images: cs = C2 / C2 = 1 at every scale, so MS-SSIM = l^(w of the coarsest scale)
    # with l = (2·100·120 + C1) / (100² + 120² + C1)
    c1 = (0.01 * 255) ** 2
    lum = (2 * 100 * 120 + c1) / (100**2 + 120**2 + c1)
    a, b = np.full((176, 180, 3), 100, np.uint8), np.full((176, 180, 3), 120, np.uint8)
    assert ms_ssim(a, b).value == pytest.approx(lum**0.1333, abs=1e-12)
    r4 = ms_ssim(a[:100], b[:100])
    assert r4.value == pytest.approx(
        lum ** (0.2363 / (0.0448 + 0.2856 + 0.3001 + 0.2363)), abs=1e-12
    )
    # anti-correlated images: negative cs is clipped to 0 (relu, as tf.image.ssim_multiscale)
    x = astronaut[:176, :176, 0]
    assert ms_ssim(x, 255 - x).value == 0.0


def test_ms_ssim_bad_inputs_name_the_argument():
    x = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(TypeError, match="ms_ssim: a must be uint8, got float64"):
        ms_ssim(x.astype(np.float64), x)
    with pytest.raises(TypeError, match="ms_ssim: b must be uint8, got int64"):
        ms_ssim(x, x.astype(np.int64))
    with pytest.raises(ValueError, match=r"ms_ssim: b must have the shape of a \(32, 32, 3\), got"):
        ms_ssim(x, x[:31])
    with pytest.raises(ValueError, match=r"a must be a grey \(H, W\) or colour \(H, W, 3\)"):
        ms_ssim(np.zeros((32, 32, 4), np.uint8), np.zeros((32, 32, 4), np.uint8))
    with pytest.raises(ValueError, match="at least 11×11 pixels.*got 10×32"):
        ms_ssim(x[:10], x[:10])
    with pytest.raises(ValueError, match=r"scales must be None or an int in 1..5, got 6"):
        ms_ssim(x, x, scales=6)
    with pytest.raises(TypeError, match=r"scales must be None or an int in 1..5, got 2.0"):
        ms_ssim(x, x, scales=2.0)


def test_feature_distance_identity_and_blur(astronaut):
    from scipy.ndimage import gaussian_filter

    # the whole photo: 15×15 = 225 patches of 64 px (stride 32), a full-rank 64-d covariance
    assert abs(feature_distance(astronaut, astronaut)) < 1e-9
    x = astronaut[100:292, 150:342]  # 192×192: 25 patches
    d = [
        feature_distance(gaussian_filter(x, (s, s, 0)), x, patch=64, stride=32)
        for s in (0.7, 1.5, 3.0)
    ]
    assert 0 < d[0] < d[1] < d[2], d

    # a user's features (a callable; the user names the metric): patch mean and spread per
    # channel, on the list form of the arguments
    def stats(p):
        return np.concatenate([p.mean(axis=(1, 2)), p.std(axis=(1, 2))], axis=1)

    assert abs(feature_distance([x, x], [x, x], features=stats, patch=32, stride=16)) < 1e-12
    blur = gaussian_filter(x, (3, 3, 0))
    assert feature_distance([x], [blur], features=stats, patch=32, stride=16) > 1e-4


def test_evaluate_rows_carry_ms_ssim_and_pfd_rand(astronaut, tmp_path):
    """The evaluation's per-image rows and metrics.md (without running a codec)."""
    from diff_compress.evaluate import _markdown, _pfd_patches, _row

    x = astronaut[:96, :128]
    rec = _noisy(x, 20)
    row = _row(x, rec, _pfd_patches(x) >= 2)
    assert _pfd_patches(x) == 6 and _pfd_patches(x[:63]) == 0 and _pfd_patches(x[:64, :95]) == 1
    assert row["ms_ssim"] == ms_ssim(x, rec).value and row["ms_ssim_scales"] == 4
    assert row["pfd_rand"] == pytest.approx(feature_distance(rec, x), abs=1e-12)
    small = _row(x[:48], rec[:48], _pfd_patches(x[:48]) >= 2)
    assert small["pfd_rand"] is None and small["ms_ssim_scales"] == 3
    results = {
        "models": {
            "m": {
                "crop": {
                    "bpp": 1.0,
                    "bpp_estimate": 0.99,
                    "mse": row,
                    "jpeg_matched": row | {"bpp": 1.1},
                },
                "small": {
                    "bpp": 2.0,
                    "bpp_estimate": 1.9,
                    "mse": small,
                    "jpeg_matched": small | {"bpp": 2.1},
                },
            }
        }
    }
    _markdown(results, tmp_path / "metrics.md")
    md = (tmp_path / "metrics.md").read_text()
    assert "| MS-SSIM (scales) | hf ratio | PFD-rand |" in md
    assert f"| {row['ms_ssim']:.4f} (4) |" in md and f"| {row['pfd_rand']:.4g} |" in md
    assert md.count("| — |") == 2 and "not FID" in md


def test_reference_curves_are_pillow_files(astronaut):
    """JPEG and WebP reference points: the bpp of the file Pillow writes (container included) and
    the PSNR of what Pillow decodes from it; rate grows with quality on a photo."""
    import io

    from PIL import Image

    from diff_compress.evaluate import jpeg_curve, webp_curve

    x = astronaut[:96, :128]
    for fmt, curve in (
        ("JPEG", jpeg_curve(x, (10, 50, 90))),
        ("WEBP", webp_curve(x, (10, 50, 90))),
    ):
        assert [p["quality"] for p in curve] == [10, 50, 90]
        for p in curve:
            buf = io.BytesIO()
            Image.fromarray(x).save(buf, format=fmt, quality=p["quality"])
            with Image.open(io.BytesIO(buf.getvalue())) as im:
                assert im.format == fmt
                dec = np.asarray(im.convert("RGB"))
            assert p["bpp"] == 8 * len(buf.getvalue()) / (96 * 128)
            assert p["psnr"] == psnr(x, dec)
        assert curve[0]["bpp"] < curve[1]["bpp"] < curve[2]["bpp"], (fmt, curve)
        assert curve[0]["psnr"] < curve[2]["psnr"], (fmt, curve)


def test_feature_distance_bad_inputs_name_the_argument(astronaut):
    x = astronaut[:128, :128]
    with pytest.raises(TypeError, match="feature_distance: b must be uint8 .*got float32"):
        feature_distance(x, x.astype(np.float32))
    with pytest.raises(TypeError, match=r"feature_distance: a\[1\] must be uint8"):
        feature_distance([x, x.astype(np.int32)], x)
    with pytest.raises(ValueError, match="at least patch=64 px on each side, got 40×128"):
        feature_distance(x, x[:40])
    with pytest.raises(ValueError, match="a must give at least 2 patches.*got 1"):
        feature_distance(x[:64, :64], x)
    with pytest.raises(ValueError, match=r"channel count of a\[0\] \(3\), got 1 \(b\[0\]\)"):
        feature_distance(x, x[..., 0])
    with pytest.raises(ValueError, match="features must be 'random-conv' or a callable"):
        feature_distance(x, x, features="digits-classifier")
    with pytest.raises(ValueError, match="patch must be an integer >= 8, got 4"):
        feature_distance(x, x, patch=4)
    with pytest.raises(TypeError, match="stride must be an integer >= 1, got 1.5"):
        feature_distance(x, x, stride=1.5)
    with pytest.raises(ValueError, match=r"features must return a real \(N, D\) array"):
        feature_distance(x, x, features=lambda p: p.mean())


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
