"""diff-dorsal mixed with diff-consistency, diff-core and diff-protocol, as a user would.

1. diff-dorsal's exact denoiser of procedural scenes (``RendererDenoiser``, oracle object slots)
   is sampled through ``sample_views`` with samplers found by name in diff-protocol's
   ``diff.samplers`` registry: ``addim`` (registered by diff-consistency) and diff-core's
   DPM-Solver++(2M). Removing object j with the same noise must give the ray-caster's
   ``render(scene, drop=(j,))`` within 1e-5 in [0, 1] image space, and the whole change of the
   edit must lie on the object's visible mask.
2. A small DORSal decoder (diff-pixel's frame-axis backbone, random weights) is sampled with
   diff-core's Euler sampler (found by name): finite images in [0, 1]; an "edit" that keeps every slot with the same noise is
   bitwise the unedited sample; removing a real slot changes it; another noise key changes it.

DORSal: Jabri et al., arXiv 2306.08068; aDDIM: Heek et al., arXiv 2403.06807.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diff_dorsal.cameras import CameraConfig
from diff_dorsal.denoiser import DecoderConfig, build_denoiser
from diff_dorsal.editing import edit_locality, edit_maps, remove_slots
from diff_dorsal.encoder import object_slots
from diff_dorsal.sampling import sample_views
from diff_dorsal.scenes import SceneConfig, SceneDataset, render
from diff_dorsal.testing import RendererDenoiser
from diff_protocol import SamplerStep, load_sampler

MAX_OBJ, RES = 4, 16


@pytest.fixture(scope="module")
def world():
    ds = SceneDataset(
        SceneConfig(max_objects=MAX_OBJ),
        CameraConfig(n_views=3, resolution=RES),
        split="test",
        size=6,
        seed=11,
    )
    items = ds.batch(range(len(ds)))
    scenes = [ds.scene(i) for i in range(len(ds))]
    cams = [ds.cameras(i) for i in range(len(ds))]
    slots, mask = object_slots(items, MAX_OBJ)
    return dict(items=items, scenes=scenes, cams=cams, slots=slots, mask=mask)


@pytest.mark.parametrize("name", ["addim", "dpmpp_2m"])
def test_exact_denoiser_removal_through_registered_samplers(world, name):
    sampler = load_sampler(name)  # addim: diff-consistency's plugin; dpmpp_2m: diff-core's
    assert isinstance(sampler, SamplerStep) and sampler.name == name
    items, scenes, cams = world["items"], world["scenes"], world["cams"]
    slots, mask = world["slots"], world["mask"]
    den = RendererDenoiser.from_scenes(scenes, cams, capacity=MAX_OBJ)
    key = jax.random.key(5)

    def run(m):
        x = sample_views(
            den, slots, m, items["origins"], items["directions"], key, steps=12, sampler=sampler
        )
        return np.asarray(x)

    base = run(mask)
    np.testing.assert_allclose(base, items["images"], rtol=0, atol=1e-5)
    removals = 0
    for j in range(MAX_OBJ):
        edited = run(remove_slots(mask, j))
        delta = edit_maps(base, edited)
        for i in np.flatnonzero(mask[:, j]):
            truth = render(scenes[i], cams[i], drop=(j,)).rgb
            np.testing.assert_allclose(edited[i], truth, rtol=0, atol=1e-5)
            visible = render(scenes[i], cams[i]).instance == j + 1
            if visible.any():
                inside = edit_locality(delta[i : i + 1], visible[None], dilate=0)[0]
                assert inside == pytest.approx(1.0, abs=1e-6)
            removals += 1
    assert removals == int(mask.sum()) and removals >= 12


def test_decoder_with_registered_core_sampler(world):
    # A small DORSal decoder with random weights; its zero-initialised output head (diff-pixel's)
    # and AdaLN gates get random values too, so the output depends on slots, cameras and noise
    # (training is covered by diff-dorsal's own tests; here the pieces meet).
    dec = DecoderConfig(
        image_size=RES,
        views=2,
        token_dim=16,
        overrides=dict(channels=(16, 16), mid_blocks=1, head_dim=8),
    )
    model = build_denoiser(dec, slot_dim=world["slots"].shape[-1], rngs=0)
    params = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    leaves = [
        p + 0.05 * jax.random.normal(k, p.shape, p.dtype) if jnp.all(p == 0) else p
        for p, k in zip(leaves, keys, strict=True)
    ]
    nnx.update(model, jax.tree.unflatten(treedef, leaves))

    items, slots, mask = world["items"], world["slots"], world["mask"]
    o, d = items["origins"][:, :2], items["directions"][:, :2]
    key = jax.random.key(3)
    assert load_sampler("euler").requires_finite_start  # diff-core's; the grid starts at -15

    def run(m, k=key):
        x = sample_views(model, slots, m, o, d, k, steps=4, sampler="euler")
        return np.asarray(x)

    base = run(mask)
    assert base.shape == (6, 2, RES, RES, 3)
    assert np.isfinite(base).all() and base.min() >= 0.0 and base.max() <= 1.0
    # an edit that keeps every real slot (it removes only padding slots, already masked) with the
    # same noise is bitwise the unedited sample
    pad = np.where(mask, -1, np.arange(MAX_OBJ)[None, :])
    kept = remove_slots(mask, pad)
    assert np.array_equal(kept, mask) and (pad >= 0).any()
    assert np.array_equal(run(kept), base)
    removed = run(remove_slots(mask, 0))
    assert np.abs(removed - base).max() > 0.0
    assert np.abs(run(mask, jax.random.key(4)) - base).max() > 1e-3
