"""Conditioning embedders: an embedder defined here (as another package would write it) plugged
into a backbone without editing diff-pixel; per-level spatial injection; Cond.null / concat."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diff_pixel.models import (
    Cond,
    Contribution,
    Embedder,
    ResidualUViT,
    UViTConfig,
    build_model,
    describe,
    from_description,
)
from diff_pixel.nn import init
from diff_pixel.testing import (
    assert_drop_ignores_condition,
    assert_example_independent,
    assert_identity_at_init,
    jit_forward,
    perturb,
)
from diff_protocol import registry as plugins


class RayEmbedder(Embedder):
    """Per-pixel camera rays in ``cond.extra["rays"]`` (B, H, W, C), as diff-dorsal would add them:
    concatenated to z before the stem with a mask channel, and their mean projected into the
    global embedding; a dropped example gets zero rays, mask 0 and a learned null embedding."""

    registry_name = "test_rays"

    def __init__(self, channels: int, emb_dim: int, *, rngs: nnx.Rngs) -> None:
        self.channels, self.emb_dim = channels, emb_dim
        self.extra_keys = ("rays",)
        self.stem_channels = channels + 1
        self.proj = nnx.Linear(channels, emb_dim, **init.dense_inits(), rngs=rngs)
        self.null = nnx.Param(init.normal(0.02)(rngs.params(), (emb_dim,)))

    def __call__(self, cond, ctx):
        rays = (cond.extra or {}).get("rays")
        if rays is None:
            raise ctx.fail("cond.extra[rays]", "given: the model has a RayEmbedder", "None")
        if tuple(rays.shape) != (ctx.batch, ctx.height, ctx.width, self.channels):
            raise ctx.fail(
                "cond.extra[rays]", f"of shape {ctx.map_shape(self.channels)}", rays.shape
            )
        rays = jnp.asarray(rays, jnp.float32)
        stem = jnp.concatenate([rays, jnp.ones(rays.shape[:-1] + (1,))], axis=-1)
        emb = self.proj(rays.mean(axis=(1, 2)))
        return Contribution(emb=ctx.null_where(emb, self.null[...]), stem=ctx.null_where(stem, 0.0))

    def to_config(self):
        return {"channels": self.channels, "emb_dim": self.emb_dim}

    @classmethod
    def from_config(cls, config, *, rngs):
        return cls(**config, rngs=rngs)


# Patch 2: level 0 on a 4×4 grid (maps pooled by 2), the middle on 2×2 (pooled by 4).
CFG = UViTConfig(
    8,
    2,
    patch_size=2,
    channels=(8, 16),
    blocks=(1,),
    block_types=("res",),
    mid_blocks=1,
    head_dim=8,
    emb_dim=16,
    dropout=(0.0, 0.3),
    num_classes=3,
    spatial_channels=2,
    spatial_levels=True,
)
B = 4


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    z = jnp.asarray(rng.standard_normal((B, 8, 8, 2)), jnp.float32)
    lam = jnp.asarray(rng.uniform(-8, 8, B), jnp.float32)
    cond = Cond(
        label=jnp.asarray(rng.integers(0, 3, B), jnp.int32),
        spatial=jnp.asarray(rng.standard_normal((B, 8, 8, 2)), jnp.float32),
        extra={"rays": jnp.asarray(rng.standard_normal((B, 8, 8, 3)), jnp.float32)},
    )
    return z, lam, cond


def _build(seed=0):
    rays = RayEmbedder(3, CFG.emb, rngs=nnx.Rngs(seed + 50))
    return build_model(CFG, seed=seed, embedders=[rays])


@pytest.fixture(scope="module")
def fresh():
    return _build()


@pytest.fixture(scope="module")
def perturbed(fresh):
    model = nnx.clone(fresh)
    perturb(model, 7, 0.1)
    return model, jit_forward(model)


def test_extra_embedder_is_wired_in(fresh):
    assert fresh.stem_channels == 2 + 3 + 4 and fresh.embed.in_ch == 9
    assert fresh.level_channels == 3 and set(fresh.level_proj) == {"down_0", "mid", "up_0"}
    assert [type(e).__name__ for e in fresh.embedders()] == [
        "LabelEmbedder",
        "SpatialEmbedder",
        "RayEmbedder",
    ]
    # Identity at initialisation with the extra embedder and per-level injection on (also with
    # dropout active): every level projection starts at zero.
    z, lam, cond = _inputs()
    assert_identity_at_init(fresh, z, lam, cond)
    kernels = [float(jnp.abs(p.kernel[...]).max()) for p in fresh.level_proj.values()]
    assert kernels == [0.0, 0.0, 0.0]


def test_null_on_drop_and_example_independence(perturbed):
    model, fwd = perturbed
    z, lam, cond = _inputs(1)
    # Dropped examples are bitwise independent of label, spatial map and rays.
    assert_drop_ignores_condition(model, z, lam, cond, seed=3)
    # ... while the rays do act when kept: through the stem and the global embedding.
    moved = cond.replace(extra={"rays": cond.extra["rays"] + 1.0})
    assert float(jnp.max(jnp.abs(fwd(z, lam, moved) - fwd(z, lam, cond)))) > 1e-3
    dropped = np.asarray(fwd(z, lam, cond.null()))
    np.testing.assert_array_equal(dropped, np.asarray(fwd(z, lam, moved.null())))
    for fields in (("extra",), ("spatial",), ("z", "logsnr", "label")):
        assert_example_independent(model, z, lam, cond, index=2, fields=fields, atol=1e-6)


def test_spatial_map_is_average_pooled_into_every_level(perturbed):
    model, _ = perturbed
    model = nnx.clone(model)
    # Cut the stem's view of the spatial map (channels 2..4: map and mask): it now enters only
    # through the per-level injection.
    kernel = model.embed.conv.kernel[...]
    model.embed.conv.kernel[...] = kernel.at[:, :, 2:5, :].set(0.0)
    z, lam, cond = _inputs(2)
    rng = np.random.default_rng(4)
    blocks = rng.standard_normal((B, 4, 4, 2)).astype(np.float32)
    base = np.repeat(np.repeat(blocks, 2, axis=1), 2, axis=2)  # constant on 2×2 cells
    checker = np.tile(np.array([[1.0, -1.0], [-1.0, 1.0]], np.float32), (4, 4))[None, :, :, None]
    fwd = jit_forward(model)

    def out(spatial):
        return np.asarray(fwd(z, lam, cond.replace(spatial=jnp.asarray(spatial))))

    ref = out(base)
    # Zero-mean detail inside each 2×2 cell has the same averages at every level's grid: the
    # output does not change (up to rounding of the cell means).
    np.testing.assert_allclose(out(base + 0.5 * checker), ref, atol=2e-6, rtol=0)
    # A change of the cell means does change it.
    assert np.abs(out(base + 0.5 * (checker > 0)) - ref).max() > 1e-3
    # Each injection site on its own carries the map (the others zeroed).
    for site in ("down_0", "mid", "up_0"):
        single = nnx.clone(model)
        for other, proj in single.level_proj.items():
            if other != site:
                proj.kernel[...] = jnp.zeros_like(proj.kernel[...])
                proj.bias[...] = jnp.zeros_like(proj.bias[...])
        f = jit_forward(single)
        a = f(z, lam, cond.replace(spatial=jnp.asarray(base)))
        b = f(z, lam, cond.replace(spatial=jnp.asarray(base + 0.5 * (checker > 0))))
        assert float(jnp.max(jnp.abs(a - b))) > 1e-4, site


def test_conditions_must_be_read_and_valid(fresh):
    z, lam, cond = _inputs()
    with pytest.raises(ValueError, match=r"cond.extra\[rays\] must be given"):
        fresh(z, lam, cond.replace(extra=None))
    with pytest.raises(ValueError, match=r"cond.extra\[rays\] must be of shape \(4, 8, 8, 3\)"):
        fresh(z, lam, cond.replace(extra={"rays": jnp.zeros((B, 4, 4, 3))}))
    with pytest.raises(ValueError, match=r"cond.extra\[depth\] must be absent: the model has no "):
        fresh(z, lam, cond.replace(extra={**cond.extra, "depth": jnp.zeros((B, 8, 8, 1))}))
    with pytest.raises(
        ValueError, match=r"cond.extra\[rays\] must be a batch-first array with B=4"
    ):
        fresh(z, lam, cond.replace(extra={"rays": jnp.zeros((3, 8, 8, 3))}))
    with pytest.raises(ValueError, match=r"cond.vector must be None: the model has no embedder"):
        fresh(z, lam, cond.replace(vector=jnp.zeros((B, 2))))
    with pytest.raises(ValueError, match=r"RayEmbedder.emb_dim must be 0 or the model's embedding"):
        build_model(CFG, embedders=[RayEmbedder(3, 8, rngs=nnx.Rngs(0))])
    with pytest.raises(TypeError, match=r"embedders\[0\] must be a diff_pixel.models.embedders"):
        ResidualUViT(CFG, nnx.Rngs(0), embedders=[nnx.Linear(2, 2, rngs=nnx.Rngs(0))])
    with pytest.raises(ValueError, match="spatial_levels must be False when spatial_channels=0"):
        CFG.replace(spatial_channels=0)


def test_description_round_trip_through_the_embedder_group(perturbed):
    model, fwd = perturbed
    plugins.register("diff.embedders", "test_rays", RayEmbedder, overwrite=True)
    desc = json.loads(json.dumps(describe(model)))
    assert desc["type"] == "residual_uvit" and desc["config"]["spatial_levels"] is True
    assert desc["config"]["embedders"] == [
        {"type": "test_rays", "config": {"channels": 3, "emb_dim": 16}}
    ]
    rebuilt = from_description(desc, seed=11)
    nnx.update(rebuilt, nnx.state(model))
    z, lam, cond = _inputs(5)
    np.testing.assert_array_equal(
        np.asarray(jit_forward(rebuilt)(z, lam, cond)), np.asarray(fwd(z, lam, cond))
    )


def test_cond_null_and_concat_round_trip(perturbed):
    _, fwd = perturbed
    z, lam, cond = _inputs(6)
    null = cond.null()
    assert null.drop.dtype == jnp.bool_ and bool(jnp.all(null.drop))
    assert null.entries() == cond.entries() == ("label", "spatial", "extra[rays]")
    assert cond.dropped().fields() == null.fields()
    # The 2B batch of classifier-free guidance: conditional half, then the null half.
    half = jax.tree.map(lambda a: a[:2], cond)
    both = half.concat(half.null())
    assert both.batch_size() == 4
    np.testing.assert_array_equal(both.drop, [False, False, True, True])
    np.testing.assert_array_equal(both.extra["rays"][2:], half.extra["rays"])
    out = fwd(jnp.concatenate([z[:2], z[:2]]), jnp.concatenate([lam[:2], lam[:2]]), both)
    np.testing.assert_allclose(out[:2], fwd(z, lam, cond)[:2], atol=1e-6, rtol=0)
    np.testing.assert_allclose(out[2:], fwd(z, lam, null)[:2], atol=1e-6, rtol=0)
    # A Cond is a pytree: through jit unchanged, extra included.
    same = jax.jit(lambda c: c)(both)
    assert jax.tree.structure(same) == jax.tree.structure(both)
    # Missing token_lengths count as the full K, a missing drop as all False.
    t = Cond(tokens=jnp.ones((2, 3, 4)), token_lengths=jnp.array([1, 2]))
    cat = t.concat(Cond(tokens=jnp.zeros((1, 3, 4)), drop=jnp.array([True])))
    np.testing.assert_array_equal(cat.token_lengths, [1, 2, 3])
    np.testing.assert_array_equal(cat.drop, [False, False, True])
    with pytest.raises(ValueError, match=r"other must be a Cond with the same entries"):
        t.concat(Cond(label=jnp.zeros(2, jnp.int32)))
    with pytest.raises(ValueError, match=r"other.tokens must be of shape \(B, 3, 4\)"):
        t.concat(Cond(tokens=jnp.zeros((2, 5, 4))))
    with pytest.raises(TypeError, match="extra must be None or a dict of arrays"):
        Cond(extra=[1, 2])
