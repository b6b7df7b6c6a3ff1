"""Check 11: a learned diffusion decoder on digits pays a PSNR cost below the exact posterior
sampler's 3.01 dB and gives samples closer to the data distribution than the MSE reconstructions
(slow; gates in thresholds.json), and the figures' plumbing with a decoder whose samples are the
MSE reconstructions exactly (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import pytest

from diff_compress import DiffusionDecoderConfig
from diff_compress.digits import DIGITS_RECIPE, digits_decoder_figures, train_digits_models

GATES = json.loads(Path(__file__).with_name("thresholds.json").read_text())["check_11"]


@pytest.fixture(scope="module")
def classifier():
    from diff_pixel import train_digits_classifier

    return train_digits_classifier(8)


# ----------------------------------------------------------------------------------------------
# fast: the figures of a decoder that returns the MSE reconstruction


class _ZeroResidual:
    """v-prediction whose x̂ is 0 at every step: with the residual target the sample is exactly
    the condition, i.e. the MSE reconstruction."""

    prediction = "v"

    def __call__(self, z, logsnr, cond=None, *, dropout_key=None):
        lam = jnp.reshape(jnp.asarray(logsnr, z.dtype), (-1,) + (1,) * (z.ndim - 1))
        return jnp.exp(0.5 * lam) * z  # x̂ = α z − σ v = 0  ⇔  v = (α/σ) z


@pytest.fixture(scope="module")
def mse_sampler():
    from diff_compress import Compressor
    from diff_compress.testing import random_compressor

    rand = random_compressor("digits", 0)
    cfg = DiffusionDecoderConfig.for_crop(8, channels=1, target="residual", steps=3)
    return Compressor(rand.codec, rand.tables, _ZeroResidual(), cfg)


@pytest.fixture(scope="module")
def quick_classifier():
    """An untrained digits CNN: with samples equal to the reconstructions the ratio is 1 in any
    feature space."""
    from flax import nnx

    from diff_pixel.metrics import DigitsClassifier, DigitsCNN

    return DigitsClassifier(DigitsCNN(nnx.Rngs(0)), 0.0, {"image_size": 8})


def test_samples_equal_to_the_mse_reconstruction_give_no_drop_and_ratio_one(
    mse_sampler, quick_classifier
):
    f = digits_decoder_figures(mse_sampler, quick_classifier, samples=2, held_out=40)
    assert f["held_out_digits"] == 40 and f["steps"] == 3
    assert abs(f["psnr_drop"]) < 1e-5
    assert f["fd_pixel_ratio"] == pytest.approx(1.0, abs=1e-5)
    assert f["fd_digits_ratio"] == pytest.approx(1.0, abs=1e-4)
    # a random codec is far from the data: the distances are large, not 0
    assert f["fd_pixel_mse"] > 0.1
    # every stream is the 36-byte header plus at least one payload word
    assert f["bpp_file"] >= 8 * 40 / 64 and f["bpp_payload"] >= 0.5


def test_bad_arguments_name_themselves(mse_sampler, quick_classifier, tmp_path):
    from diff_compress.testing import random_compressor

    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        digits_decoder_figures(mse_sampler, quick_classifier, steps=0)
    with pytest.raises(TypeError, match="samples must be an integer >= 1"):
        digits_decoder_figures(mse_sampler, quick_classifier, samples=1.5)
    with pytest.raises(ValueError, match="held_out must be <= 360, got 400"):
        digits_decoder_figures(mse_sampler, quick_classifier, held_out=400)
    with pytest.raises(TypeError, match="classifier must be a diff_pixel DigitsClassifier"):
        digits_decoder_figures(mse_sampler, object())
    with pytest.raises(ValueError, match="model must hold a trained diffusion decoder"):
        digits_decoder_figures(random_compressor("digits", 0), quick_classifier)
    with pytest.raises(TypeError, match="model must be a Compressor or a model folder"):
        digits_decoder_figures(3, quick_classifier)
    with pytest.raises(ValueError, match="codec_from must be a model folder"):
        train_digits_models(
            tmp_path / "m", codec_steps=1, decoder_steps=1, codec_from=tmp_path / "none"
        )
    with pytest.raises(ValueError, match="decoder_steps must be an integer >= 1, got 0"):
        train_digits_models(tmp_path / "m", codec_steps=1, decoder_steps=0)


# ----------------------------------------------------------------------------------------------
# slow: check 11 with a trained decoder


@pytest.fixture(scope="module")
def figures(tmp_path_factory, classifier):
    d = train_digits_models(tmp_path_factory.mktemp("digits11") / "m", **DIGITS_RECIPE, seed=0)
    return digits_decoder_figures(d, classifier, steps=16, samples=4, seed=0)


@pytest.mark.slow
def test_psnr_drop_of_the_learned_decoder(figures, capsys):
    with capsys.disabled():
        keys = ("bpp_payload", "psnr_mse", "psnr_drop", "fd_pixel_ratio", "fd_digits_ratio")
        print("\ncheck 11:", {k: round(figures[k], 4) for k in keys})
    lo, hi = GATES["thresholds"]["psnr_drop_db_range"]
    # an exact posterior sampler loses 3.01 dB; 0 dB would be a decoder that copies x_mse
    assert lo <= figures["psnr_drop"] <= hi, figures["psnr_drop"]


def _assert_samples_within_ratio(figures, space: str) -> None:
    """FD of the samples <= the calibrated ratio x FD of the MSE reconstructions, in ``space``."""
    r = GATES["thresholds"][f"fd_{space}_ratio_max"]
    samples, mse = figures[f"fd_{space}_samples"], figures[f"fd_{space}_mse"]
    assert samples <= r * mse, (samples, mse)


@pytest.mark.slow
def test_samples_are_closer_to_the_digits_in_pixel_space(figures):
    _assert_samples_within_ratio(figures, "pixel")


@pytest.mark.slow
def test_samples_keep_the_class_evidence(figures):
    _assert_samples_within_ratio(figures, "digits")
