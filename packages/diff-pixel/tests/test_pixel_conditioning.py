"""The conditioning interface (spec check 6, §5.5 frames): every mode, null handling, batch and
frame independence, and bad conditions."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diff_pixel.models import Cond, ResidualUViT, UViTConfig
from diff_pixel.testing import (
    assert_drop_ignores_condition,
    assert_example_independent,
    jit_forward,
    perturb,
    random_inputs,
)

BASE = UViTConfig(
    8,
    2,
    channels=(8, 16, 32),
    blocks=(1, 1),
    block_types=("res", "attn"),
    mid_blocks=1,
    head_dim=8,
    dropout=(0.0, 0.0, 0.0),
)
# Every built-in embedder, the spatial map also injected at every level.
FULL = BASE.replace(
    num_classes=5, vector_dim=3, token_dim=4, spatial_channels=2, spatial_levels=True
)


def _model(cfg, seed=0):
    model = ResidualUViT(cfg, nnx.Rngs(seed))
    perturb(model, seed + 100, 0.1)  # away from zero-init so that every condition acts
    return model


@pytest.fixture(scope="module")
def full():
    model = _model(FULL)
    z, lam, cond = random_inputs(FULL, 4, 1, frames=None)
    return model, jit_forward(model), z, lam, cond


def test_drop_ignores_every_condition(full):
    model, fwd, z, lam, cond = full
    assert_drop_ignores_condition(model, z, lam, cond)  # (a), bitwise
    # ... and the conditions do act when not dropped.
    a = fwd(z, lam, cond)
    b = fwd(z, lam, cond.replace(drop=jnp.ones(4, bool)))
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3


def test_no_coupling_across_the_batch(full):
    model, fwd, z, lam, cond = full
    for fields in (("label",), ("vector",), ("tokens",), ("spatial",), ("z", "logsnr")):
        assert_example_independent(model, z, lam, cond, index=0, fields=fields, atol=1e-6)  # (c)


def test_padding_tokens_are_ignored(full):
    _, fwd, z, lam, cond = full
    k = cond.tokens.shape[1]
    lengths = jnp.array([1, 2, 4, 0])
    noise = jnp.asarray(
        np.random.default_rng(7).standard_normal(cond.tokens.shape) * 5, jnp.float32
    )
    valid = jnp.arange(k)[None, :, None] < lengths[:, None, None]
    a = fwd(z, lam, cond.replace(token_lengths=lengths))
    b = fwd(
        z, lam, cond.replace(token_lengths=lengths, tokens=jnp.where(valid, cond.tokens, noise))
    )
    assert float(jnp.max(jnp.abs(a - b))) <= 1e-6  # (d)
    c = fwd(z, lam, cond.replace(token_lengths=jnp.array([4, 2, 4, 0])))
    assert float(jnp.max(jnp.abs(c[0] - a[0]))) > 1e-4  # valid tokens do matter


def test_drop_equals_null_label():
    model = _model(BASE.replace(num_classes=3), seed=1)
    fwd = jit_forward(model)
    z, lam, cond = random_inputs(model.config, 3, 2)
    dropped = fwd(z, lam, Cond(label=cond.label, drop=jnp.array([True, False, True])))
    null = fwd(z, lam, Cond(label=jnp.array([3, cond.label[1], 3]), drop=jnp.zeros(3, bool)))
    np.testing.assert_array_equal(dropped, null)  # (b), bitwise


def test_bad_conditions_name_the_field(full):
    model, _, z, lam, cond = full
    with pytest.raises(
        ValueError, match=r"cond.spatial must be of shape \(4, 8, 8, 2\) matching z"
    ):
        model(z, lam, cond.replace(spatial=jnp.zeros((4, 4, 4, 2))))
    with pytest.raises(ValueError, match=r"cond.label must be in \[0, num_classes=5\]"):
        model(z, lam, cond.replace(label=jnp.array([0, 1, 6, 2])))
    with pytest.raises(ValueError, match=r"cond.label must be in .*got values in \[-1"):
        model(z, lam, cond.replace(label=jnp.array([0, -1, 2, 2])))
    with pytest.raises(ValueError, match="cond.vector must be given"):
        model(z, lam, cond.replace(vector=None))
    with pytest.raises(ValueError, match=r"cond.tokens must be of shape \(4, K, 4\)"):
        model(z, lam, cond.replace(tokens=jnp.zeros((4, 3, 5))))
    with pytest.raises(ValueError, match=r"cond.drop must be a bool array of shape \(4,\)"):
        model(z, lam, cond.replace(drop=jnp.zeros(4)))
    label_only = ResidualUViT(BASE.replace(num_classes=3), nnx.Rngs(0))
    zz = jnp.zeros((2, 8, 8, 2))
    with pytest.raises(
        ValueError,
        match=r"cond.vector must be None: the model has no embedder for it \(built with "
        r"vector_dim=0\), got an array",
    ):
        label_only(zz, 0.0, Cond(label=jnp.zeros(2, jnp.int32), vector=jnp.zeros((2, 3))))
    with pytest.raises(ValueError, match="cond.spatial must be None"):
        label_only(zz, 0.0, Cond(label=jnp.zeros(2, jnp.int32), spatial=jnp.zeros((2, 8, 8, 1))))


FRAMES = BASE.replace(frame_axis=True, vector_dim=3, spatial_channels=1, spatial_levels=True)


def _frame_inputs(f=4):
    rng = np.random.default_rng(3)
    z = jnp.asarray(rng.standard_normal((2, f, 8, 8, 2)), jnp.float32)
    lam = jnp.asarray(rng.uniform(-5, 5, (2, f)), jnp.float32)
    cond = Cond(
        vector=jnp.asarray(rng.standard_normal((2, f, 3)), jnp.float32),
        spatial=jnp.asarray(rng.standard_normal((2, f, 8, 8, 1)), jnp.float32),
    )
    return z, lam, cond


def test_frame_attention_modes():
    z, lam, cond = _frame_inputs()
    z2 = z.at[:, 2].add(1.0)
    lam2 = lam.at[:, 2].add(2.0)
    others = jnp.array([0, 1, 3])
    for mode, coupled in (("none", False), ("factorized", True)):
        fwd = jit_forward(_model(FRAMES.replace(frame_attention=mode), seed=2))
        base = fwd(z, lam, cond)
        for zz, ll in ((z2, lam), (z, lam2)):
            d = float(jnp.max(jnp.abs(fwd(zz, ll, cond)[:, others] - base[:, others])))
            if coupled:
                assert d > 1e-3, (mode, d)  # (e)
            else:
                assert d <= 1e-6, (mode, d)
        if mode == "none":
            # (f) per-frame logsnr with all frames equal reproduces a (B,) logsnr.
            flat = jnp.array([-1.5, 3.0])
            a = fwd(z, jnp.broadcast_to(flat[:, None], (2, 4)), cond)
            b = fwd(z, flat, cond)
            assert float(jnp.max(jnp.abs(a - b))) <= 1e-6


def test_frames_without_positions_are_permutation_equivariant():
    perm = jnp.array([2, 0, 3, 1])
    z, lam, cond = _frame_inputs()
    for mode in ("joint",):  # factorized is exercised by test_frame_attention_modes
        cfg = FRAMES.replace(frame_attention=mode, frame_positions=False)
        fwd = jit_forward(_model(cfg, seed=4))
        out = fwd(z, lam, cond)
        permuted = fwd(
            z[:, perm],
            lam[:, perm],
            cond.replace(vector=cond.vector[:, perm], spatial=cond.spatial[:, perm]),
        )
        assert float(jnp.max(jnp.abs(permuted - out[:, perm]))) <= 1e-5, mode
    # With frame positions (default) the frame index enters and equivariance is broken.
    fwd = jit_forward(_model(FRAMES, seed=4))
    out = fwd(z, lam, cond)
    permuted = fwd(
        z[:, perm],
        lam[:, perm],
        cond.replace(vector=cond.vector[:, perm], spatial=cond.spatial[:, perm]),
    )
    assert float(jnp.max(jnp.abs(permuted - out[:, perm]))) > 1e-3
