"""Check 9 of rolling.md §10: the space-time denoiser's conditioning is wired per frame."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diff_rolling import VideoDenoiser, space_time_model


def _randomised_tiny():
    """``tiny`` with every parameter random (the zero-initialised AdaLN projections and gates
    included), so every branch contributes."""
    net = space_time_model("tiny", rngs=nnx.Rngs(0), image_size=16)
    state = nnx.state(net, nnx.Param)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    # numpy draws: an eager jax.random.normal per leaf shape compiles once per shape (~12 s)
    rng = np.random.default_rng(1)
    leaves = [jnp.asarray(0.2 * rng.standard_normal(leaf.shape), leaf.dtype) for leaf in leaves]
    nnx.update(net, jax.tree_util.tree_unflatten(treedef, leaves))
    return net


@pytest.mark.smoke
def test_rolling_denoiser_conditioning_is_wired():
    net = _randomised_tiny()
    video = VideoDenoiser(net, context=2)
    call = nnx.jit(lambda d, z, lam, ctx: d(z, lam, {"context": ctx}))

    def den(z, lam, cond):
        return call(
            video, z, jnp.broadcast_to(jnp.asarray(lam, jnp.float32), (1, 4)), cond["context"]
        )

    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(1, 4, 16, 16, 1)), jnp.float32)
    ctx = jnp.asarray(rng.normal(size=(1, 2, 16, 16, 1)), jnp.float32)
    lam = jnp.asarray([[-3.0, 0.0, 2.0, 5.0]])
    base = np.asarray(den(z, lam, {"context": ctx}))
    # per-frame logsnr: changing frame j's level changes frame j's output
    for j in range(4):
        out = np.asarray(den(z, lam.at[0, j].add(1.5), {"context": ctx}))
        assert np.max(np.abs(out[:, j] - base[:, j])) > 1e-3
    # the temporal sub-layer: changing frame 0's input changes frame 3's output
    out = np.asarray(den(z.at[:, 0].add(1.0), lam, {"context": ctx}))
    assert np.max(np.abs(out[:, 3] - base[:, 3])) > 1e-3
    # the context reaches every output frame
    out = np.asarray(den(z, lam, {"context": ctx + 1.0}))
    assert np.all(np.max(np.abs(out - base), axis=(0, 2, 3, 4)) > 1e-3)
    # exactly the last W frames of the network on the concatenated input
    full = nnx.jit(lambda m, x, lam: m(x, lam))(
        net, jnp.concatenate([ctx, z], 1), jnp.concatenate([jnp.full((1, 2), 15.0), lam], 1)
    )
    assert np.array_equal(np.asarray(full[:, 2:]), base)
    # one level per example (diff-core's driver) equals that level on every frame
    per_example = nnx.jit(lambda d, z, lam, ctx: d(z, lam, {"context": ctx}))
    one = np.asarray(per_example(video, z, jnp.asarray([0.5]), ctx))
    assert np.array_equal(one, np.asarray(den(z, jnp.full((1, 4), 0.5), {"context": ctx})))


def test_rolling_denoiser_shape_errors():
    net = space_time_model("tiny", rngs=nnx.Rngs(0), image_size=16)
    den = VideoDenoiser(net, context=2)
    z = jnp.zeros((2, 4, 16, 16, 1))
    ctx = jnp.zeros((2, 2, 16, 16, 1))
    with pytest.raises(ValueError, match=r"VideoDenoiser: z must have shape \(B, W, h, w, C\)"):
        den(z[0], jnp.zeros((2, 4)), {"context": ctx})
    with pytest.raises(ValueError, match=r"VideoDenoiser: logsnr must have shape .*got \(2, 3\)"):
        den(z, jnp.zeros((2, 3)), {"context": ctx})
    with pytest.raises(
        ValueError,
        match=r'VideoDenoiser: cond\["context"\] must have shape \(2, 2, 16, 16, 1\), got \(2, 3, 16, 16, 1\)',
    ):
        den(z, jnp.zeros((2, 4)), {"context": jnp.zeros((2, 3, 16, 16, 1))})
    with pytest.raises(ValueError, match=r'cond\["context"\].*got None'):
        den(z, jnp.zeros((2, 4)), None)
    with pytest.raises(ValueError, match="preset"):
        space_time_model("huge")
