"""The encoder interface (check 3): PCA against numpy's SVD, storage round trips bitwise,
interchangeable encoders, clear errors."""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diff_semantica import (
    CallableEncoder,
    ConvEncoder,
    EmbeddingCache,
    PCAEncoder,
    RandomProjectionEncoder,
    load_encoder,
    save_encoder,
    semantica_loss,
)
from diff_semantica.testing import micro_model


@pytest.mark.smoke
def test_pca_matches_numpy_and_is_deterministic(train, pca):
    x = train.images.reshape(len(train), -1).astype(np.float64)
    mu = x.mean(0)
    _, sv, vt = np.linalg.svd(x - mu, full_matrices=False)
    proj = (x[:50] - mu) @ vt[:24].T
    tok = np.asarray(pca(train.images[:50]))[:, 0]
    # components agree up to sign
    np.testing.assert_allclose(np.abs(tok), np.abs(proj), atol=2e-4)
    again = PCAEncoder.fit(train.images, 24)
    assert np.array_equal(np.asarray(again(train.images[:50])), np.asarray(pca(train.images[:50])))
    pooled = np.asarray(pca.pooled(train.images[:50]))
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, rtol=1e-6)


def test_patch_tokens(train):
    enc = PCAEncoder.fit(train.images, 4, patch=2)
    t = np.asarray(enc(train.images[:3]))
    assert t.shape == (3, 1 + 16, 4) and enc.num_tokens == 17
    x = train.images[:3].astype(np.float64)
    patch = x[:, 2:4, 4:6, :].reshape(3, -1)  # patch (row 1, col 2) = token 1 + 1*4 + 2
    ref = (patch - np.asarray(enc.patch_mean[...])) @ np.asarray(enc.patch_basis[...])
    np.testing.assert_allclose(t[:, 7], ref, atol=1e-5)


@pytest.mark.parametrize("kind", ["pca", "random", "conv"])
def test_save_load_reproduces_tokens_bitwise(train, pca, tmp_path, kind):
    enc = {
        "pca": pca,
        "random": RandomProjectionEncoder((8, 8, 1), 16, seed=3),
        "conv": ConvEncoder((8, 8, 1), widths=(8, 16, 16), dim=12, seed=2),
    }[kind]
    save_encoder(enc, tmp_path / kind)
    back = load_encoder(tmp_path / kind)
    assert type(back) is type(enc) and back.fingerprint() == enc.fingerprint()
    assert np.array_equal(np.asarray(back(train.images[:17])), np.asarray(enc(train.images[:17])))


def test_load_refuses_pickles_and_damage(tmp_path, pca):
    (tmp_path / "enc.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(
        ValueError,
        match="load_encoder: expected config.json and params.safetensors in .*; pickles are not loaded",
    ):
        load_encoder(tmp_path / "enc.pkl")
    save_encoder(pca, tmp_path / "e")
    (tmp_path / "e" / "params.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="damaged encoder"):
        load_encoder(tmp_path / "e")
    with pytest.raises(TypeError, match="CallableEncoder"):
        save_encoder(
            CallableEncoder(lambda x: x[:, :1, :1, 0], 1, 1, image_shape=(8, 8, 1)), tmp_path / "c"
        )


@pytest.mark.slow
def test_callable_encoder_gives_bitwise_identical_losses(train, pca):
    wrapped = CallableEncoder(lambda x: pca._tokens(x), 1, 24, "pca-fn", image_shape=(8, 8, 1))
    batch = {
        "x": jnp.asarray(train.images[:32]),
        "x_a": jnp.asarray(train.images[32:64]),
        "index": jnp.arange(32),
        "slot": jnp.arange(32),
    }
    key = jax.random.key(5)
    loss = nnx.jit(lambda m, b, k: semantica_loss(m, b, k)[0])
    la = loss(micro_model(pca, seed=1), batch, key)
    lb = loss(micro_model(wrapped, seed=1), batch, key)
    assert float(la) > 0 and np.asarray(la).tobytes() == np.asarray(lb).tobytes()


def test_token_shape_errors(train, pca):
    flat = CallableEncoder(
        lambda x: x.reshape(x.shape[0], -1)[:, :24], 1, 24, image_shape=(8, 8, 1)
    )
    with pytest.raises(
        TypeError, match=r"CallableEncoder: fn must return tokens of shape \(B, K, D\)"
    ):
        flat(train.images[:64])
    model = micro_model(pca)
    with pytest.raises(
        TypeError,
        match=r"SemanticaDenoiser: encoder tokens must have shape \(B, K, D\), got \(64, 24\)",
    ):
        model.make_cond(jnp.zeros((64, 24)))
    with pytest.raises(ValueError, match=r"images must have shape \(B, 8, 8, 1\)"):
        pca(np.zeros((2, 16, 16, 1), np.float32))


def test_embedding_cache_hits(train, pca):
    cache = EmbeddingCache()
    a = cache.get(pca, train.images)
    b = cache.get(pca, train.images)
    assert a is b and cache.hits == 1 and cache.misses == 1
    np.testing.assert_allclose(a[:5], np.asarray(pca.pooled(train.images[:5])), atol=1e-6)
