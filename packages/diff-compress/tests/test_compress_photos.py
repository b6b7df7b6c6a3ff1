"""Slow tier: the photo codec (checks 1, 3, 4, 8), R-D monotonicity on digits (check 7) and the
10,000-stream fuzz (check 5). Training lengths are stated in steps; nothing asserts on wall time."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from diff_compress import (
    CodecConfig,
    Compressor,
    assert_lossless_roundtrip,
    fuzz_decoder,
    offline_photos,
    psnr,
    rate_accounting,
    train_codec,
)
from diff_compress.entropy_models import gaussian_likelihood_np
from diff_compress.evaluate import jpeg_matched

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def photo_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("photo") / "q3"
    train_codec(
        CodecConfig.named("cpu", "q3"),
        "offline",
        d,
        1500,
        crop=64,
        batch=8,
        seed=0,
        checkpoint_every=500,
        progress=False,
    )
    return d


@pytest.fixture(scope="session")
def photos():
    return offline_photos("test")


def test_learning_curve_and_held_out_quality(photo_model, photos, capsys):
    rows = [
        json.loads(line)
        for line in (photo_model / "codec" / "metrics.jsonl").read_text().splitlines()
    ]

    def avg(a: int, b: int) -> float:
        return float(np.mean([r["loss"] for r in rows if a < r["step"] <= b]))

    ratio = avg(1250, 1500) / avg(200, 300)
    comp = Compressor.load(photo_model)
    ps, bpps, jpeg = [], [], []
    for img in photos.values():
        data = comp.compress(img)
        bpp = 8 * len(data) / (img.shape[0] * img.shape[1])
        ps.append(psnr(img, comp.decompress(data)))
        bpps.append(bpp)
        jpeg.append(jpeg_matched(img, bpp)["psnr"])
    with capsys.disabled():
        print(
            f"\nlearning-curve ratio {ratio:.3f}; PSNR {ps} at bpp {bpps}; JPEG at matched bpp {jpeg}"
        )
    assert np.mean(ps) >= 19.5
    assert 0.3 <= np.mean(bpps) <= 1.2


@pytest.mark.xfail(
    strict=True,
    reason="spec check 8's learning-curve gate (loss over steps 1250-1500 / 200-300 <= 0.5) is "
    "missed: measured 0.564 / 0.547 / 0.514 (seeds 0 / 1 / 2, 64-pixel crops; "
    "benchmarks/calibrate_photo_codec.py); recorded, not loosened (README)",
)
def test_learning_curve_ratio(photo_model):
    rows = [
        json.loads(line)
        for line in (photo_model / "codec" / "metrics.jsonl").read_text().splitlines()
    ]

    def avg(a: int, b: int) -> float:
        return float(np.mean([r["loss"] for r in rows if a < r["step"] <= b]))

    assert avg(1250, 1500) / avg(200, 300) <= 0.5


def test_file_rate_within_one_percent_of_the_estimate(photo_model, photos):
    comp = Compressor.load(photo_model)
    for name, img in photos.items():
        r = rate_accounting(comp, img)
        est, file = r["bits_estimate"], r["bits_file"]
        assert est >= 20_000, f"{name}: estimate {est} bits is below both size conditions"
        if est >= 50_000:
            assert abs(file - est) <= 0.01 * est, (name, file, est)
        assert abs(file - 288 - est) <= 0.004 * est + 64, (name, file, est)


def test_no_clamping(photo_model, photos):
    comp = Compressor.load(photo_model)
    for name, img in photos.items():
        st = comp.encode_stats(img)
        assert st.z_clamped == 0 and st.y_clamped == 0, name


@pytest.mark.xfail(
    strict=True,
    reason="spec check 4's second half is missed: the trained hyperprior's bits are 1.37-1.51x "
    "those of a per-channel zero-mean Gaussian (64-pixel training crops leave z at 1x1, so h_s "
    "never sees spatial context and underestimates sigma); see the README",
)
def test_the_hyperprior_pays_for_itself(photo_model, photos):
    comp = Compressor.load(photo_model)
    for name, img in photos.items():
        enc = comp.encode_symbols_of(img)
        ys = enc["y_sym"].astype(np.float64)
        std = np.maximum(ys.reshape(-1, ys.shape[-1]).std(axis=0), 0.11)
        naive = -np.log2(gaussian_likelihood_np(ys, np.broadcast_to(std, ys.shape))).sum()
        assert enc["bits_estimate"] < naive, (name, enc["bits_estimate"], naive)


def test_lossless_across_processes(photo_model, photos):
    comp = Compressor.load(photo_model)
    assert_lossless_roundtrip(comp, list(photos.values()), cross_process=True)


def test_rd_monotone_in_lambda_on_digits(tmp_path):
    import diff_pixel

    test = (
        ((diff_pixel.digits(8, split="test").images[..., 0] + 1) * 127.5).round().astype(np.uint8)
    )
    bpp, ps = [], []
    for preset in ("q1", "q3", "q5"):
        d = tmp_path / preset
        train_codec(
            CodecConfig.named("digits", preset), "digits", d, 1000, crop=8, batch=64, progress=False
        )
        comp = Compressor.load(d)
        bits = sum(8 * len(comp.compress(x)) for x in test)
        bpp.append(bits / (64 * len(test)))
        ps.append(float(np.mean([psnr(x, comp.decompress(comp.compress(x))) for x in test])))
    assert bpp[0] < bpp[1] < bpp[2]
    assert ps[0] < ps[1] < ps[2]


def test_fuzz_ten_thousand_streams():
    from diff_compress.testing import random_compressor

    comp = random_compressor("tiny", 0)
    img = np.ascontiguousarray(offline_photos("test")["coffee"][:64, :64])
    rep = fuzz_decoder(comp, comp.compress(img), 10_000, seed=11)
    assert not rep.other_errors, rep.other_errors[:5]
    assert math.fsum(rep.counts.values()) + rep.decoded_ok == 10_000
