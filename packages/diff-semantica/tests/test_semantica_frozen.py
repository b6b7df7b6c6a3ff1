"""The encoder is frozen inside diff-pixel's trainer (check 3): no gradient, no optimiser state,
no EMA copy, bitwise unchanged after 50 steps; and guidance identities (check 2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diff_core import guided
from diff_pixel import Cond, TrainConfig, Trainer
from diff_pixel.losses import drop_mask, example_keys
from diff_semantica import ConvEncoder, PairConfig, PairLoader, sample_pairs, semantica_loss
from diff_semantica.encoders import _flat_arrays
from diff_semantica.testing import micro_model


def _paths(tree) -> list[str]:
    return ["/".join(map(str, p)) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


@pytest.mark.smoke
def test_encoder_frozen_in_trainer(train, tmp_path):
    conv = ConvEncoder((8, 8, 1), widths=(8, 16, 16), dim=12, seed=1)  # trainable Params
    model = micro_model(conv, seed=0)
    before = _flat_arrays(model.encoder)
    # gradients of the loss w.r.t. the trainable parameters hold no encoder leaf
    batch = {
        "x": jnp.asarray(train.images[:16]),
        "x_a": jnp.asarray(train.images[16:32]),
        "index": jnp.arange(16),
        "slot": jnp.arange(16),
    }
    grads = nnx.jit(nnx.grad(lambda m: semantica_loss(m, batch, jax.random.key(0))[0]))(model)
    assert _paths(grads) and not any("encoder" in p for p in _paths(grads))
    pairs = sample_pairs(train, PairConfig(pairs_per_epoch=2000), 0)
    cfg = TrainConfig(
        steps=50,
        batch_size=16,
        lr=1e-3,
        warmup_steps=5,
        ema_decay=0.99,
        out_dir=str(tmp_path),
        checkpoint_every=0,
        progress=False,
    )
    trainer = Trainer(model, semantica_loss, cfg, PairLoader(pairs, train, 16))
    opt_paths = _paths(trainer.state.opt) + _paths(trainer.state.ema)
    assert opt_paths and not any("encoder" in p for p in opt_paths)
    trainer.run()
    after = _flat_arrays(trainer.model().encoder)
    ema_enc = _flat_arrays(trainer.ema_model().encoder)
    assert set(before) == set(after)
    for k in before:
        assert before[k].tobytes() == after[k].tobytes() == ema_enc[k].tobytes(), k
    # the backbone did train
    raw = _flat_arrays(trainer.model().net)
    init = _flat_arrays(micro_model(conv, seed=0).net)
    assert any(raw[k].tobytes() != init[k].tobytes() for k in raw)


def test_guidance_identities(train, pca):
    model = micro_model(pca, seed=2, scale=0.2)
    z = jax.random.normal(jax.random.key(0), (8, 8, 8, 1))
    lam = jnp.full((8,), 1.5)
    cond = model.condition(train.images[:8])
    call = nnx.jit(lambda m, z, lam, c: m(z, lam, c))
    out_c = call(model, z, lam, cond)
    out_u = call(model, z, lam, model.null_cond(8))
    assert float(jnp.max(jnp.abs(out_c - out_u))) > 1e-3  # the condition acts
    g1 = nnx.jit(lambda m, z, lam, c: guided(m, 1.0, null_cond=Cond.null)(z, lam, c))
    g0 = nnx.jit(lambda m, z, lam, c: guided(m, 0.0, null_cond=Cond.null, batch=False)(z, lam, c))
    assert np.asarray(g1(model, z, lam, cond)).tobytes() == np.asarray(out_c).tobytes()
    assert np.asarray(g0(model, z, lam, cond)).tobytes() == np.asarray(out_u).tobytes()
    # Cond.null (drop all) is the model's null condition: tokens are ignored when dropped
    assert np.array_equal(np.asarray(call(model, z, lam, cond.null())), np.asarray(out_u))


def test_drop_rate():
    keys = example_keys(jax.random.key(11), jnp.arange(100_000))
    rate = float(jnp.mean(drop_mask(keys, 0.1)))
    assert abs(rate - 0.100) <= 0.003
