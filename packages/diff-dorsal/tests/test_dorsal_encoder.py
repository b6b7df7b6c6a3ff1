"""Stage-1 networks: slot attention symmetries and the slot-mixer decoder (check 4), oracle slots,
presets and bad inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diff_dorsal.encoder import (
    ENCODER_PRESETS,
    ORACLE_SLOT_DIM,
    EncoderConfig,
    ObjectSlots,
    SlotAttention,
    SlotEncoder,
    object_slots,
)
from diff_dorsal.osrt import OSRTLite, SlotMixerDecoder

TINY = EncoderConfig(
    "lite",
    conv_channels=(8, 8),
    dim=16,
    n_layers=1,
    heads=2,
    mlp_ratio=2,
    num_slots=3,
    slot_dim=16,
    slot_iters=2,
    slot_mlp_hidden=16,
    decoder_dim=16,
    decoder_heads=2,
    decoder_hidden=(16, 16),
)


# one jitted program per call shape: much faster than op-by-op dispatch in a fresh process
_call = nnx.jit(lambda m, *args: m(*args))
_sa = nnx.jit(lambda m, x, slots: m(x, slots=slots))
_render = nnx.jit(lambda m, *args: m.render(*args))


def _rays(rng, shape):
    o = rng.normal(size=(*shape, 3)).astype(np.float32) * 3.0
    d = rng.normal(size=(*shape, 3)).astype(np.float32)
    return o, d / np.linalg.norm(d, axis=-1, keepdims=True)


def _views(rng, b, v, res):
    images = rng.random((b, v, res, res, 3), dtype=np.float32)
    o, d = _rays(rng, (b, v, res, res))
    return images, o, d


@pytest.mark.smoke
def test_sampled_slot_attention_is_equivariant_to_slots_and_invariant_to_inputs():
    sa = SlotAttention(
        5, 16, iters=3, mlp_hidden=32, input_dim=24, init="sampled", rngs=nnx.Rngs(1)
    )
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 40, 24)), jnp.float32)
    init = sa.initial_slots(2, jax.random.key(3))
    assert init.shape == (2, 5, 16)
    out = np.asarray(_sa(sa, x, init))
    perm = np.array([3, 0, 4, 1, 2])
    out_p = np.asarray(_sa(sa, x, init[:, perm]))
    assert np.max(np.abs(out_p - out[:, perm])) <= 1e-5
    tokens = rng.permutation(40)
    out_t = np.asarray(_sa(sa, x[:, tokens], init))
    assert np.max(np.abs(out_t - out)) <= 1e-5
    # a key draws the same slots as initial_slots with that key
    keyed = nnx.jit(lambda m, x, k: m(x, key=k))(sa, x, jax.random.key(3))
    np.testing.assert_allclose(np.asarray(keyed), out, atol=1e-5)
    # the slots actually move away from the initial ones
    assert np.max(np.abs(out - np.asarray(init))) > 1e-2


def test_learned_init_slots_do_not_depend_on_view_order():
    enc = SlotEncoder(TINY, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    images, o, d = _views(rng, 2, 4, 8)
    slots = np.asarray(_call(enc, images, o, d))
    assert slots.shape == (2, 3, 16)
    perm = np.array([2, 0, 3, 1])
    slots_p = np.asarray(_call(enc, images[:, perm], o[:, perm], d[:, perm]))
    assert np.max(np.abs(slots_p - slots)) <= 1e-5
    # deterministic (no key needed) and sensitive to the content of the views
    np.testing.assert_array_equal(np.asarray(_call(enc, images, o, d)), slots)
    other = np.asarray(_call(enc, images[::-1], o[::-1], d[::-1]))
    assert np.max(np.abs(other - slots[::-1])) <= 1e-5
    assert np.max(np.abs(other - slots)) > 1e-4


@pytest.mark.smoke
def test_slot_mixer_rgb_is_invariant_to_slot_order_lite():
    cfg = EncoderConfig("lite")
    dec = SlotMixerDecoder(cfg, rngs=nnx.Rngs(2))
    rng = np.random.default_rng(2)
    slots = jnp.asarray(rng.normal(size=(2, 6, 128)), jnp.float32)
    o, d = _rays(rng, (2, 256))
    rgb, w = _call(dec, slots, o, d)
    assert rgb.shape == (2, 256, 3) and w.shape == (2, 256, 6)
    assert float(jnp.min(rgb)) > 0.0 and float(jnp.max(rgb)) < 1.0
    np.testing.assert_allclose(np.asarray(w.sum(-1)), 1.0, atol=1e-6)
    perm = np.array([5, 2, 0, 4, 1, 3])
    rgb_p, w_p = _call(dec, slots[:, perm], o, d)
    assert float(jnp.max(jnp.abs(rgb_p - rgb))) <= 1e-6
    assert float(jnp.max(jnp.abs(w_p - w[..., perm]))) <= 1e-6
    # the decoder reads the slots (a plain attention, no null token)
    rgb_o, _ = _call(dec, slots + 1.0, o, d)
    assert float(jnp.max(jnp.abs(rgb_o - rgb))) > 1e-3


def test_osrt_lite_shapes_and_param_counts():
    # abstract parameters (shapes only): counting needs no initialiser run or compilation
    model = nnx.eval_shape(lambda: OSRTLite(EncoderConfig("lite"), rngs=nnx.Rngs(0)))

    def count(m):
        return sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param)))

    # spec table: 0.81 M encoder + 0.17 M decoder
    assert 0.80e6 <= count(model.encoder) <= 0.82e6
    assert 0.16e6 <= count(model.decoder) <= 0.18e6
    small = OSRTLite(TINY, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(3)
    images, o, d = _views(rng, 2, 3, 8)
    slots = nnx.jit(lambda m, *a: m.encode(*a))(small, images, o, d)
    rgb, w = _render(small, slots, o[:, :2], d[:, :2])
    assert rgb.shape == (2, 2, 8, 8, 3) and w.shape == (2, 2, 8, 8, 3)
    rgb2, _ = _call(small, images, o, d, o[:, :2], d[:, :2])
    np.testing.assert_allclose(np.asarray(rgb2), np.asarray(rgb), atol=1e-6)


def test_presets_resolve_and_round_trip():
    lite = EncoderConfig()
    assert (lite.preset, lite.resolution, lite.conv_channels, lite.dim) == (
        "lite",
        32,
        (64, 96),
        128,
    )
    assert (lite.n_layers, lite.heads, lite.num_slots, lite.slot_dim, lite.slot_iters) == (
        2,
        4,
        6,
        128,
        3,
    )
    assert lite.downsample == 4 and lite.ray_encoding.channels == 60
    msn = EncoderConfig("msn")
    assert (msn.dim, msn.n_layers, msn.heads, msn.num_slots, msn.slot_dim) == (768, 5, 12, 32, 1536)
    assert msn.downsample == 8 and msn.decoder_layers == 2
    assert EncoderConfig.from_dict(msn.to_dict()) == msn
    assert EncoderConfig.from_dict(TINY.to_dict()) == TINY
    assert set(ENCODER_PRESETS) == {"lite", "msn"}
    # msn builds (abstractly: no weights drawn)
    big = nnx.eval_shape(lambda: OSRTLite(msn, rngs=nnx.Rngs(0)))
    assert big.encoder.slot_attention.slots_init.shape == (32, 1536)


def test_oracle_slots_of_a_known_scene():
    scene = {
        "kinds": np.array([1, 0, 0, 0, 0], np.int32),
        "centres": np.array(
            [[0.75, -1.5, 0.3], [-0.3, 0.6, 0.45], [0, 0, 0], [0, 0, 0], [0, 0, 0]], np.float32
        ),
        "sizes": np.array([0.3, 0.45, 0, 0, 0], np.float32),
        "yaws": np.array([np.pi / 8, 0.0, 0, 0, 0], np.float32),
        "colours": np.array(
            [[0.2, 0.4, 0.6], [1.0, 0.15, 0.5], [0, 0, 0], [0, 0, 0], [0, 0, 0]], np.float32
        ),
        "valid": np.array([True, True, False, False, False]),
    }
    slots, mask = object_slots(scene)
    assert slots.shape == (6, ORACLE_SLOT_DIM) and slots.dtype == np.float32
    np.testing.assert_array_equal(mask, [True, True, False, False, False, False])
    np.testing.assert_allclose(
        slots[0], [0, 1, 0.5, -1.0, 0.2, 0.5, 1.0, 0.0, 0.2, 0.4, 0.6], atol=1e-6
    )
    np.testing.assert_allclose(
        slots[1], [1, 0, -0.2, 0.4, 0.3, 0.75, 0.0, 1.0, 1.0, 0.15, 0.5], atol=1e-6
    )
    assert not slots[2:].any()
    batch = {k: np.stack([v, v]) for k, v in scene.items()}
    bs, bm = ObjectSlots()(batch)
    assert bs.shape == (2, 6, 11) and bm.shape == (2, 6)
    np.testing.assert_array_equal(bs[1], slots)
    assert ObjectSlots(max_objects=2).slot_dim == 11
    s2, m2 = ObjectSlots(max_objects=2)(scene)
    np.testing.assert_array_equal(s2, slots[:2])


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="preset must be one of"):
        EncoderConfig("huge")
    with pytest.raises(ValueError, match="dim must be a multiple of heads=4, got 130"):
        EncoderConfig(dim=130)
    with pytest.raises(ValueError, match="slot_init must be 'learned' or 'sampled'"):
        EncoderConfig(slot_init="zeros")
    with pytest.raises(ValueError, match="conv_strides must have"):
        EncoderConfig(conv_strides=(2, 2))
    with pytest.raises(ValueError, match="num_slots must be a positive int"):
        EncoderConfig(num_slots=0)
    enc = SlotEncoder(TINY, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(4)
    images, o, d = _views(rng, 1, 2, 8)
    with pytest.raises(ValueError, match=r"images must have shape \(B, V, h, w, 3\)"):
        enc(images[0], o[0], d[0])
    with pytest.raises(ValueError, match="directions must have the images' shape"):
        enc(images, o, d[:, :1])
    sa = SlotAttention(3, 8, init="sampled", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="key must be a PRNG key"):
        sa(jnp.zeros((1, 4, 8)))
    with pytest.raises(ValueError, match=r"inputs must have shape \(B, N, 8\)"):
        sa(jnp.zeros((1, 4, 7)), key=jax.random.key(0))
    dec = SlotMixerDecoder(TINY, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"slots must have shape \(B, S, 16\)"):
        dec(jnp.zeros((1, 3, 8)), jnp.zeros((1, 4, 3)), jnp.zeros((1, 4, 3)))
    with pytest.raises(ValueError, match=r"origins must have shape \(1, N, 3\)"):
        dec(jnp.zeros((1, 3, 16)), jnp.zeros((4, 3)), jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="missing"):
        object_slots({"kinds": np.zeros(3)})
    too_many = {
        "kinds": np.zeros(7, np.int32),
        "centres": np.zeros((7, 3), np.float32),
        "sizes": np.ones(7, np.float32),
        "yaws": np.zeros(7, np.float32),
        "colours": np.zeros((7, 3), np.float32),
        "valid": np.ones(7, bool),
    }
    with pytest.raises(ValueError, match="at most max_objects=6 objects, got 7"):
        object_slots(too_many)
    with pytest.raises(ValueError, match="kinds must be 0"):
        object_slots({**too_many, "kinds": np.full(7, 3), "valid": np.arange(7) < 2})
    with pytest.raises(ValueError, match="max_objects must be a positive int"):
        ObjectSlots(0)


def test_oracle_slots_of_sampled_scenes_follow_the_objects():
    scenes = pytest.importorskip("diff_dorsal.scenes")
    cfg = scenes.SceneConfig()
    rng = np.random.default_rng(7)
    drawn = [scenes.sample_scene(rng, cfg) for _ in range(4)]
    batch = {k: np.stack([s.padded(cfg.max_objects)[k] for s in drawn]) for k in drawn[0].padded(5)}
    slots, mask = object_slots(batch)
    assert slots.shape == (4, 6, 11)
    for b, scene in enumerate(drawn):
        k = scene.n_objects
        np.testing.assert_array_equal(mask[b], np.arange(6) < k)
        for j in range(k):
            expect = np.concatenate(
                [
                    np.eye(2)[scene.kinds[j]],
                    scene.centres[j] / 1.5,
                    [scene.sizes[j] / 0.6, np.sin(4 * scene.yaws[j]), np.cos(4 * scene.yaws[j])],
                    scene.colours[j],
                ]
            )
            np.testing.assert_allclose(slots[b, j], expect, atol=1e-6)
        assert not slots[b, k:].any()
