"""Check 5 of dorsal.md §9: the DORSal decoder's conditioning (``lite``, random weights with the
AdaLN gates set to 1), plus compact_slots, validation messages and guidance."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diff_core.guidance import guided
from diff_dorsal import testing
from diff_dorsal.denoiser import (
    DecoderConfig,
    DorsalDenoiser,
    build_denoiser,
    compact_slots,
    denoiser_from_config,
    null_slot_cond,
)
from diff_dorsal.sampling import sample_views
from diff_dorsal.testing import (
    check_mask_equals_removal,
    check_slot_order_invariance,
    check_view_permutation,
    random_condition,
)
from diff_pixel.testing import perturb


def _gates_to_one(model: DorsalDenoiser) -> int:
    """Set the gate chunks of every AdaLN (bias of chunks 2 and 5 of (shift, scale, gate) × 2, and
    8 for factorised frame attention) to 1; returns how many AdaLNs were changed."""
    n = 0
    for _, module in nnx.iter_modules(model):
        if type(module).__name__ != "AdaLN":
            continue
        c, chunks = module.dim, module.chunks
        gates = [2, 5] + ([8] if chunks == 9 else [])
        bias = module.proj.bias[...]
        for g in gates:
            bias = bias.at[g * c : (g + 1) * c].set(1.0)
        module.proj.bias[...] = bias
        n += 1
    return n


@pytest.fixture(scope="module")
def lite():
    model = build_denoiser(DecoderConfig("lite"), slot_dim=16, rngs=nnx.Rngs(0))
    perturb(model, seed=1, scale=0.05)  # zero-initialised layers (head, cross-attn out) act
    assert _gates_to_one(model) == 4
    return model


@pytest.fixture(scope="module")
def inputs(lite):
    return random_condition(lite, batch=2, views=5, num_slots=6, seed=0)


_apply = testing._apply  # the jitted forward the check_* functions use (one compilation)


@jax.jit
def _guidance_outputs(model, z, lam, cond):
    """In one executable: the conditional and unconditional outputs, guided(scale 0 / 1) and the
    backbone with ``Cond.drop`` (which also nulls the cameras)."""
    null = null_slot_cond(cond)
    out_c = model(z, lam, cond)
    out_u = model(z, lam, null)
    g1 = guided(model, 1.0, null_cond=null_slot_cond, batch=False)(z, lam, cond)
    g0 = guided(model, 0.0, null_cond=null_slot_cond, batch=False)(z, lam, cond)
    g2 = guided(model, 2.0, null_cond=null_slot_cond, batch=False)(z, lam, cond)
    bc = model.backbone_cond(null)
    drop = model.net(z, lam, bc.replace(drop=jnp.ones((z.shape[0],), bool)))
    return out_c, out_u, g0, g1, g2, drop


def test_lite_preset_size_and_config_roundtrip(lite):
    n = sum(x.size for x in jax.tree.leaves(nnx.state(lite, nnx.Param)))
    assert 2.9e6 < n < 3.4e6  # AMENDMENTS: ≈ 3.1 M
    cfg = lite.net.config
    assert cfg.frame_axis and not cfg.frame_positions and cfg.frame_attention == "joint"
    assert cfg.grid(1) == (8, 8) and cfg.spatial_channels == 60 and cfg.token_dim == 128
    again = denoiser_from_config({"type": "DorsalDenoiser", "config": lite.config})
    assert again.net.config == cfg and again.slot_dim == 16
    msn = DecoderConfig("msn").backbone()
    assert msn.frame_attention == "factorized" and msn.channels == (256, 768)
    assert msn.mid_blocks == 12 and msn.image_size == 64


@pytest.mark.smoke
def test_check5_slots_and_views(lite, inputs):
    z, lam, cond = inputs
    # slot-order invariance, masking = removal, view permutation (all within 1e-5)
    assert check_slot_order_invariance(lite, inputs) <= 1e-5
    assert check_mask_equals_removal(lite, inputs, slot=2) <= 1e-5
    assert check_view_permutation(lite, inputs) <= 1e-5
    base = np.asarray(_apply(lite, z, lam, cond))
    assert np.isfinite(base).all() and base.std() > 1e-2
    # the slots reach the output (otherwise the checks above would be empty)
    other = dict(cond, slots=cond["slots"] + 0.5)
    assert np.abs(np.asarray(_apply(lite, z, lam, other)) - base).max() > 1e-3
    # moving view 1's camera changes view 1 (> 1e-3) and, through cross-view attention, view 3
    moved = dict(cond, origins=cond["origins"].at[:, 1].add(jnp.asarray([0.7, -0.4, 0.3])))
    out = np.asarray(_apply(lite, z, lam, moved))
    d = np.abs(out - base).max(axis=(0, 2, 3, 4))
    assert d[1] > 1e-3 and d[3] > 1e-4, d


def test_check5_all_masked_is_the_null_condition_and_guidance(lite, inputs):
    z, lam, cond = inputs
    null = null_slot_cond(cond)
    assert not bool(null["slot_mask"].any())
    out_null = np.asarray(_apply(lite, z, lam, null))
    # the all-masked output does not depend on the slot values (only the null token is attended)
    other = dict(null, slots=jnp.asarray(np.random.default_rng(5).normal(size=cond["slots"].shape)))
    np.testing.assert_array_equal(np.asarray(_apply(lite, z, lam, other)), out_null)
    # the loss's p_uncond mask (mask & ~drop) gives that same condition bitwise
    dropped = dict(cond, slot_mask=cond["slot_mask"] & jnp.zeros((2, 1), bool))
    np.testing.assert_array_equal(np.asarray(_apply(lite, z, lam, dropped)), out_null)
    # guidance: scale 1 is the conditional output and 0 the unconditional one, bitwise; Cond.drop
    # (which also nulls the cameras) is a different model input
    out_c, out_u, g0, g1, g2, out_drop = map(np.asarray, _guidance_outputs(lite, z, lam, cond))
    np.testing.assert_array_equal(g1, out_c)
    np.testing.assert_array_equal(g0, out_u)
    np.testing.assert_allclose(g2, 2 * out_c - out_u, rtol=0, atol=1e-5)
    assert np.abs(out_c - out_u).max() > 1e-3
    assert np.abs(out_drop - out_u).max() > 1e-3
    np.testing.assert_allclose(out_u, out_null, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"sample_views: guidance must be >= 0, got -1.0"):
        sample_views(
            lite,
            cond["slots"],
            cond["slot_mask"],
            cond["origins"],
            cond["directions"],
            0,
            guidance=-1.0,
        )


def test_compact_slots_moves_kept_slots_to_the_front():
    slots = jnp.arange(2 * 4 * 2, dtype=jnp.float32).reshape(2, 4, 2)
    mask = jnp.asarray([[False, True, False, True], [False, False, False, False]])
    out, lengths = compact_slots(slots, mask)
    np.testing.assert_array_equal(np.asarray(lengths), [2, 0])
    np.testing.assert_array_equal(np.asarray(out[0, :2]), np.asarray(slots[0, [1, 3]]))
    assert not np.asarray(out[0, 2:]).any() and not np.asarray(out[1]).any()
    with pytest.raises(ValueError, match=r"compact_slots: slot_mask must be of shape \(2, 4\)"):
        compact_slots(slots, mask[:, :3])


def test_validation_messages(lite, inputs):
    z, lam, cond = inputs
    with pytest.raises(ValueError, match=r"cond\['slots'\] last axis must be 16, got 96"):
        lite(z, lam, dict(cond, slots=jnp.zeros((2, 6, 96))))
    with pytest.raises(
        ValueError,
        match=r"DorsalDenoiser: cond\['origins'\] shape \(2, 4, 32, 32, 3\) must be "
        r"\(2, 5, 32, 32, 3\)",
    ):
        lite(z, lam, dict(cond, origins=cond["origins"][:, :4]))
    with pytest.raises(ValueError, match=r"cond must have keys \['directions'\]"):
        lite(z, lam, {k: v for k, v in cond.items() if k != "directions"})
    with pytest.raises(ValueError, match=r"logsnr must be a scalar or of shape \(2,\)"):
        lite(z, jnp.zeros((2, 5)), cond)
    with pytest.raises(TypeError, match=r"slot_mask'\] must be booleans"):
        lite(z, lam, dict(cond, slot_mask=cond["slot_mask"].astype(jnp.int32)))
    with pytest.raises(ValueError, match=r"DecoderConfig: preset must be one of"):
        DecoderConfig("huge")


def test_sample_views_fixed_noise_and_null_condition():
    """sample_views with a (tiny) DorsalDenoiser: the same key gives the same samples, guidance 0
    is the all-masked condition bitwise, and the slots change the samples."""
    cfg = DecoderConfig(
        "lite",
        image_size=8,
        token_dim=16,
        overrides=dict(channels=(16, 16), mid_blocks=1, head_dim=8),
    )
    model = build_denoiser(cfg, slot_dim=4, rngs=nnx.Rngs(0))
    perturb(model, seed=2, scale=0.1)
    z, lam, cond = random_condition(model, batch=2, views=3, num_slots=3, seed=1)
    args = (cond["slots"], cond["slot_mask"], cond["origins"], cond["directions"])
    key = jax.random.key(11)
    a = np.asarray(sample_views(model, *args, key, steps=3))
    b = np.asarray(sample_views(model, *args, key, steps=3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 3, 8, 8, 3) and 0.0 <= a.min() and a.max() <= 1.0
    u = np.asarray(sample_views(model, *args, key, steps=3, guidance=0.0))
    empty = np.zeros_like(np.asarray(cond["slot_mask"]))
    u2 = np.asarray(sample_views(model, args[0], empty, *args[2:], key, steps=3))
    np.testing.assert_array_equal(u, u2)
    assert np.abs(a - u).max() > 1e-4
    c = np.asarray(sample_views(model, *args, jax.random.key(12), steps=3))
    assert np.abs(a - c).max() > 1e-2
