"""Backbones: identity at initialisation, zero-init layers learn, dropout placement, validation
(spec checks 3, 4, 5 and the bad-input table)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from diff_pixel.models import (
    PRESETS,
    Cond,
    ResidualUViT,
    UViT,
    UViTConfig,
    abstract_model,
    build_model,
)
from diff_pixel.testing import (
    assert_identity_at_init,
    forward_fn,
    jit_forward,
    perturb,
    random_inputs,
)

TWO_LEVEL = UViTConfig(
    8,
    2,
    channels=(8, 16, 32),
    blocks=(1, 1),
    block_types=("res", "attn"),
    mid_blocks=1,
    head_dim=8,
    dropout=(0.3, 0.3, 0.3),
)


def rnd(seed, shape, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


@pytest.fixture(scope="module")
def tiny():
    return build_model("tiny-16", dropout=(0.0, 0.0, 0.5, 0.5))


@pytest.fixture(scope="module")
def inputs():
    z = rnd(0, (4, 16, 16, 1))
    lam = jnp.array([-8.0, -1.0, 2.0, 7.0])
    return z, lam, Cond(label=jnp.array([0, 3, 7, 10]))


def test_identity_at_init_tiny_and_two_level(tiny, inputs):
    z, lam, cond = inputs
    assert_identity_at_init(tiny, z, lam, cond)  # with and without an active dropout key
    assert_identity_at_init(ResidualUViT(TWO_LEVEL, nnx.Rngs(1)))


def _zero_kernels(model):
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {
        "/".join(map(str, path)): v
        for path, v in flat
        if path[-1] == "kernel" and not bool(jnp.any(v[...] != 0))
    }


@pytest.mark.slow
def test_zero_initialised_layers_learn():
    model = ResidualUViT(TWO_LEVEL, nnx.Rngs(2))
    zero = set(_zero_kernels(model))
    kinds = {k.split("/")[-2] for k in zero}
    # AdaLN gates/shift/scale and FiLM (both `proj` of an AdaLN), the ResBlocks' last convs and
    # PatchUnembed's projection.
    assert any("adaln" in k for k in zero) and any("film" in k for k in zero)
    assert any(k.endswith("conv2/kernel") for k in zero) and "unembed/proj/kernel" in zero
    assert kinds <= {"proj", "conv2"}

    opt = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
    z = rnd(1, (4, 8, 8, 2))
    target = rnd(2, z.shape)
    lam = jnp.linspace(-5, 5, 4)

    def loss_fn(m):
        return jnp.mean((m(z, lam) - target) ** 2)

    @nnx.jit
    def step(m, o):
        loss, grads = nnx.value_and_grad(loss_fn)(m)
        o.update(m, grads)
        return grads

    # Zero-initialised layers are chained (PatchUnembed <- block output layers <- FiLM), so each
    # update opens the next link: after two AdamW steps every one of them receives a gradient
    # (the third call returns the gradient at the point reached by two updates).
    step(model, opt)
    step(model, opt)
    grads = step(model, opt)
    gflat = {"/".join(map(str, p)): v for p, v in nnx.to_flat_state(grads)}
    dead = [k for k in zero if not bool(jnp.any(gflat[k][...] != 0))]
    assert not dead, dead
    g, s = nnx.split(model)
    feats = forward_fn(g)(s, z, lam, None, None)[1]
    assert float(jnp.max(jnp.abs(feats["pre_unembed"] - feats["embed"]))) > 1e-6


def test_dropout_placement(tiny, inputs):
    assert tiny.active_dropout_sites() == 2 * (2 + 2) == 8
    assert abstract_model("sid2-256-p2").active_dropout_sites() == 2 * (6 + 16) == 44
    model = build_model("tiny-16", dropout=(0.0, 0.0, 0.5, 0.5), seed=3)
    perturb(model, 5, 0.05)
    z, lam, cond = inputs
    g, s = nnx.split(model)
    a = forward_fn(g)(s, z, lam, cond, jax.random.key(10))[1]
    b = forward_fn(g)(s, z, lam, cond, jax.random.key(11))[1]
    for name in ("embed", "down_0", "down_1"):
        np.testing.assert_array_equal(a[name], b[name])
    for name in ("down_2", "mid", "up_2", "pre_unembed"):
        assert float(jnp.max(jnp.abs(a[name] - b[name]))) > 1e-4, name
    fwd = jit_forward(model)
    np.testing.assert_array_equal(fwd(z, lam, cond), fwd(z, lam, cond))


def test_uvit_forward_and_wavelet_stem():
    # SiD's U-ViT with a spatial map injected at the start of every level.
    sid = build_model("sid-tiny-16", seed=1, spatial_channels=1, spatial_levels=True)
    assert list(sid.level_proj) == ["down_0", "down_1", "down_2", "mid", "up_2", "up_1", "up_0"]
    perturb(sid, 0, 0.05)
    z, lam, cond = random_inputs(sid.config, 2, 1)
    g, s = nnx.split(sid)
    out, feats, left = forward_fn(g)(s, z, lam, cond, None)
    assert int(left) == 0 and out.shape == z.shape and out.dtype == jnp.float32
    assert feats["mid"].shape == (2, 2, 2, 128) and feats["up_0"].shape == (2, 16, 16, 16)
    assert bool(jnp.all(jnp.isfinite(out))) and float(jnp.std(out)) > 1e-3
    # With the stem blind to the map (its kernel rows for map and mask zeroed), the map still
    # acts, through the level injections.
    sid.embed.conv.kernel[...] = sid.embed.conv.kernel[...].at[:, :, 1:, :].set(0.0)
    fwd = jit_forward(sid)
    moved = cond.replace(spatial=cond.spatial + 1.0)
    assert float(jnp.max(jnp.abs(fwd(z, lam, moved) - fwd(z, lam, cond)))) > 1e-4
    # The 5/3 wavelet stem keeps the identity at initialisation.
    dwt = ResidualUViT(TWO_LEVEL.replace(image_size=16, dwt_levels=1), nnx.Rngs(6))
    assert dwt.embed.in_ch == 8
    assert_identity_at_init(dwt)


@pytest.mark.slow
def test_small_input_presets_build_run_and_start_as_identity():
    """The 8×8, 16×16 and 32×32 CPU presets, one-level ones included (stem → transformer blocks
    → head), in both architectures."""
    expected = {  # name: (grid of the transformer blocks, channels, parameters)
        "tiny-8": ((4, 4), 64, 307_425),
        "tiny-8-l1": ((8, 8), 64, 431_553),
        "tiny-16-l1": ((8, 8), 64, 728_772),
        "tiny-32-l1": ((8, 8), 64, 727_504),
    }
    for name, (grid, channels, params) in expected.items():
        model = build_model(name, seed=1)
        cfg = model.config
        assert cfg.grid(cfg.num_levels) == grid and cfg.channels[-1] == channels
        assert sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))) == params
        assert model.active_dropout_sites() == 2 * cfg.mid_blocks  # the middle level only
        z, lam, cond = random_inputs(cfg, 2, 3)
        g, s = nnx.split(model)
        out, feats, left = forward_fn(g)(s, z, lam, cond, jax.random.key(4))
        assert out.shape == z.shape and int(left) == 0 and bool(jnp.all(jnp.isfinite(out)))
        assert feats["mid"].shape == (2, *grid, channels)
        # Identity at initialisation, with dropout active (the same compiled function).
        assert_identity_at_init(model, z, lam, cond, dropout_key=jax.random.key(4), eval_pass=False)
    # A one-level SiD U-ViT: no ResBlock level, no skip.
    flat = build_model("tiny-8-l1", arch="uvit")
    assert isinstance(flat, UViT) and not flat.down and not flat.up
    assert_identity_at_init(flat, eval_pass=False)


@pytest.mark.slow
def test_remat_and_bf16_compute():
    two = ResidualUViT(TWO_LEVEL, nnx.Rngs(3))
    perturb(two, 4, 0.05)
    z2, lam2, _ = random_inputs(TWO_LEVEL, 2, 5)
    ref = jit_forward(two)(z2, lam2)
    # nnx.remat per block changes memory, not values (up to XLA's fusion rounding).
    two_remat = ResidualUViT(TWO_LEVEL.replace(remat=True), nnx.Rngs(3))
    nnx.update(two_remat, nnx.state(two))
    np.testing.assert_allclose(jit_forward(two_remat)(z2, lam2), ref, atol=2e-5)
    # bf16 compute: float32 params and output, close to the float32 result.
    bf = ResidualUViT(TWO_LEVEL.replace(compute_dtype="bfloat16"), nnx.Rngs(3))
    nnx.update(bf, nnx.state(two))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(bf, nnx.Param)))
    out_bf = jit_forward(bf)(z2, lam2)
    assert out_bf.dtype == jnp.float32
    rel = float(jnp.linalg.norm(out_bf - ref) / jnp.linalg.norm(ref))
    assert 0 < rel < 0.05, rel


def test_config_round_trip_and_bad_input(tiny):
    cfg = PRESETS["sid2-256-p2"]
    assert UViTConfig.from_json(cfg.to_json()) == cfg
    assert UViTConfig.from_dict(cfg.to_dict()) == cfg
    cases = [
        (dict(image_size=20), "image_size must be divisible by .* = 8"),
        (dict(blocks=(1, 1)), "blocks must be a tuple of len"),
        (dict(dropout=(0.0, 0.1)), "dropout must be a tuple of len"),
        (dict(head_dim=48), "channels must be divisible by head_dim=48"),
        (dict(arch="uvit"), "block_types must be all 'res'"),
        (dict(in_channels=0), "in_channels must be a positive int"),
        (dict(channels=()), "channels must be a tuple of at least 1 positive int"),
        (dict(channels=(16,)), r"blocks must be a tuple of len\(channels\) - 1 = 0 ints"),
    ]
    for overrides, msg in cases:
        with pytest.raises(ValueError, match=msg):
            PRESETS["tiny-16"].replace(**overrides)
    with pytest.raises(ValueError, match="preset must be one of .*got 'nope'"):
        build_model("nope")
    with pytest.raises(TypeError, match="unknown"):
        UViTConfig.from_dict({"image_size": 16, "foo": 1})
    lab = Cond(label=jnp.zeros(2, jnp.int32))
    with pytest.raises(
        ValueError, match=r"z must be of shape \(B, 16, 16, 1\), got \(2, 16, 16, 3\)"
    ):
        tiny(jnp.zeros((2, 16, 16, 3)), 0.0, lab)
    with pytest.raises(ValueError, match=r"z must be of shape .* got \(2, 12, 12, 1\)"):
        tiny(jnp.zeros((2, 12, 12, 1)), 0.0, lab)
    with pytest.raises(ValueError, match=r"cond.label must be in \[0, num_classes=10\]"):
        tiny(jnp.zeros((2, 16, 16, 1)), 0.0, Cond(label=jnp.array([3, 11])))
    with pytest.raises(ValueError, match="cond.label must be given"):
        tiny(jnp.zeros((2, 16, 16, 1)), 0.0, None)
    with pytest.raises(ValueError, match=r"logsnr must be a scalar or of shape \(2,\)"):
        tiny(jnp.zeros((2, 16, 16, 1)), jnp.zeros(3), lab)
    with pytest.raises(TypeError, match="cond.label must be an integer array"):
        tiny(jnp.zeros((2, 16, 16, 1)), 0.0, Cond(label=jnp.zeros(2)))
