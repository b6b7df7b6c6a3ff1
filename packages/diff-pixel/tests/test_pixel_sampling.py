"""Sampling through the jitted loop (spec checks 12, 13, 14) with diff-core's exact denoisers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diff_core import samplers
from diff_core.grids import uniform_t
from diff_core.schedules import CosineSchedule
from diff_core.testing import ConditionalMixture, GaussianMixture, gaussian, output_moments_gaussian
from diff_pixel.models import Cond, ResidualUViT, UViTConfig
from diff_pixel.sampling import sample, sample_to_npz
from diff_pixel.testing import perturb

COSINE = CosineSchedule(-15.0, 15.0)


def test_gaussian_moments_ancestral_and_ddim():
    den = gaussian(np.full((4, 4, 1), 0.5), np.full((4, 4, 1), 0.7)).denoiser("eps")
    shape = (4096, 4, 4, 1)
    x = np.asarray(
        sample(den, shape=shape, key=jax.random.key(0), schedule=COSINE, steps=256, x_clip=None)
    )
    assert abs(x.mean() - 0.5) < 0.01, x.mean()
    assert abs(x.std() / 0.7 - 1) < 0.02, x.std()
    # DDIM-64 on this grid under-disperses by 2.0% in exact arithmetic (diff-core's linear-response
    # moments), so its samples are compared with that exact output law, to 1%.
    exact = output_moments_gaussian(samplers.ddim(), uniform_t(COSINE, 64), 0.5, 0.7, "denoise")
    assert abs(math.sqrt(exact.var) / 0.7 - 1 + 0.0203) < 1e-3
    x = np.asarray(
        sample(
            den,
            shape=shape,
            key=jax.random.key(1),
            schedule=COSINE,
            steps=64,
            sampler="ddim",
            x_clip=None,
        )
    )
    assert abs(x.mean() - exact.mean) < 0.01, x.mean()
    assert abs(x.std() / math.sqrt(exact.var) - 1) < 0.01, (x.std(), math.sqrt(exact.var))


@pytest.fixture(scope="module")
def two_classes():
    def comp(a, b):
        return GaussianMixture([0.5, 0.5], [[a], [b]], [0.25, 0.25])

    return ConditionalMixture([comp(-3.0, 1.0), comp(-1.0, 3.0)], [0.5, 0.5], null_label=-1)


def _mode_weights(x):
    left = float(np.mean(np.asarray(x)[:, 0] < -1.0))  # class A: modes −3 and +1
    return left, 1 - left


def test_guidance_interval(two_classes):
    den = two_classes.denoiser("x")
    n = 20000
    label = jnp.zeros((n,), jnp.int32)  # class A
    kw = dict(
        shape=(n, 1),
        key=jax.random.key(2),
        schedule=COSINE,
        steps=256,
        x_clip=None,
        cond=label,
        null_cond=-1,
    )
    plain = sample(den, **kw)
    w_plain = _mode_weights(plain)
    assert all(abs(w - 0.5) < 0.02 for w in w_plain), w_plain
    guided, stats = sample(den, guidance=4.0, return_stats=True, **kw)
    w_guided = sorted(_mode_weights(guided))
    assert abs(w_guided[1] - 0.83) < 0.03 and abs(w_guided[0] - 0.17) < 0.03, w_guided
    assert stats["evaluations"] == 512
    interval = (-1.0, 4.0)
    limited, stats = sample(den, guidance=4.0, interval=interval, return_stats=True, **kw)
    w_limited = _mode_weights(limited)
    assert all(abs(w - 0.5) < 0.05 for w in w_limited), w_limited
    lam = uniform_t(COSINE, 256).logsnr[:256]
    inside = int(np.sum((lam >= -1.0) & (lam < 4.0)))
    assert 0 < inside < 256 and stats["evaluations"] == 256 + inside
    # w = 1 is the conditional sampler and w = 0 the unconditional one, bitwise.
    np.testing.assert_array_equal(sample(den, guidance=1.0, interval=interval, **kw), plain)
    uncond = sample(den, **{**kw, "cond": jnp.full((n,), -1, jnp.int32)})
    np.testing.assert_array_equal(sample(den, guidance=0.0, **kw), uncond)


@pytest.fixture(scope="module")
def tiny_model():
    cfg = UViTConfig(
        8,
        1,
        channels=(8, 16, 32),
        blocks=(1, 1),
        block_types=("res", "attn"),
        mid_blocks=1,
        head_dim=8,
        dropout=(0.0, 0.2, 0.2),
        num_classes=3,
    )
    model = ResidualUViT(cfg, nnx.Rngs(0))
    perturb(model, 1, 0.05)
    return model


@pytest.mark.smoke
def test_per_example_determinism():
    den = GaussianMixture([0.3, 0.7], np.array([[-0.5] * 4, [0.6] * 4]), [0.2, 0.3]).denoiser("eps")
    kw = dict(key=jax.random.key(5), schedule=COSINE, steps=24)
    full = sample(den, shape=(8, 4), **kw)
    halves = [sample(den, shape=(4, 4), first_index=i, **kw) for i in (0, 4)]
    assert float(jnp.max(jnp.abs(jnp.concatenate(halves) - full))) <= 1e-5
    np.testing.assert_array_equal(sample(den, shape=(8, 4), **kw), full)
    other = sample(den, shape=(8, 4), **{**kw, "key": jax.random.key(6)})
    assert float(jnp.min(jnp.max(jnp.abs(other - full), axis=1))) > 1e-3  # every row changes


def test_key_must_be_a_prng_key():
    den = gaussian(0.0, 1.0).denoiser("x")
    kw = dict(shape=(2, 1), schedule=COSINE, steps=2)
    with pytest.raises(TypeError, match=r"sample: key must be a JAX PRNG key .*got int 0"):
        sample(den, key=0, **kw)
    with pytest.raises(TypeError, match=r"key must be a JAX PRNG key .*dtype float32"):
        sample(den, key=jnp.zeros(2), **kw)
    legacy = sample(den, key=jax.random.PRNGKey(0), **kw)  # raw uint32 keys still work
    assert legacy.shape == (2, 1)


def test_guided_sampling_of_a_backbone(tiny_model, tmp_path):
    label = jnp.array([0, 1, 2, 0, 1, 2, 0, 1])
    cond = Cond(label=label, drop=jnp.zeros(8, bool))
    kw = dict(key=jax.random.key(5), schedule=COSINE, steps=12, guidance=3.0, interval=(-2.0, 6.0))
    full, stats = sample(tiny_model, shape=(8, 8, 8, 1), cond=cond, return_stats=True, **kw)
    assert full.dtype == jnp.float32 and float(jnp.max(jnp.abs(full))) <= 1.0
    lam = uniform_t(COSINE, 12).logsnr[:12]
    assert stats["evaluations"] == 12 + int(np.sum((lam >= -2.0) & (lam < 6.0)))
    # The same call on a (graphdef, state) pair is bitwise the same.
    np.testing.assert_array_equal(
        sample(nnx.split(tiny_model), shape=(8, 8, 8, 1), cond=cond, **kw), full
    )
    # Guidance acts, and w = 0 everywhere is the null-label sampler.
    unguided = sample(tiny_model, shape=(8, 8, 8, 1), cond=cond, **{**kw, "guidance": 1.0})
    assert float(jnp.max(jnp.abs(unguided - full))) > 1e-4
    null = Cond(label=jnp.full((8,), 3, jnp.int32), drop=jnp.zeros(8, bool))
    everywhere = (-math.inf, math.inf)
    w0 = sample(
        tiny_model, shape=(8, 8, 8, 1), cond=cond, **{**kw, "guidance": 0.0, "interval": everywhere}
    )
    ref = sample(tiny_model, shape=(8, 8, 8, 1), cond=null, **{**kw, "guidance": 1.0})
    np.testing.assert_array_equal(w0, ref)
    path = sample_to_npz(str(tmp_path / "s.npz"), full, label, seed=5)
    with np.load(path) as data:
        np.testing.assert_array_equal(data["samples"], np.asarray(full))
        np.testing.assert_array_equal(data["index"], np.arange(8))
    with pytest.raises(ValueError, match="path must not exist"):
        sample_to_npz(path, full)
    with pytest.raises(ValueError, match="null_cond must be given"):
        sample(
            gaussian(0.0, 1.0).denoiser("x"),
            shape=(2, 1),
            key=kw["key"],
            schedule=COSINE,
            cond=jnp.zeros(2),
            guidance=2.0,
        )
