"""Tier (a) check 10: the samplers as entry-point plugins, run by diff-core's driver on any
denoiser (diff-core's exact denoisers and diff-pixel backbones)."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import diff_pixel
from diff_consistency import (
    AnalyticVariance,
    OracleVariance,
    addim,
    consistency_renoise,
    multistep_consistency,
    renoise_grid,
    sample,
    student_grid,
)
from diff_core import grids, samplers
from diff_core import sample as core_sample
from diff_core.analytic import GaussianMixture
from diff_core.testing import problem
from diff_protocol import SamplerStep, diffuse, jax_noise, jax_normal, load_sampler, numpy_noise

NAMES = ("multistep_consistency", "addim", "consistency_renoise")


@pytest.mark.smoke
def test_plugins_listed_without_jax_and_loadable():
    """Listed by ``available("diff.samplers")`` in a fresh process that then has no jax imported;
    ``load_sampler(name)`` returns a SamplerStep (still without jax)."""
    code = (
        "import json, sys\n"
        "from diff_protocol import available, load_sampler\n"
        "names = sorted(available('diff.samplers'))\n"
        f"steps = [type(load_sampler(n)).__name__ for n in {NAMES!r}]\n"
        "print(json.dumps([names, steps, 'jax' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, steps, jax_loaded = json.loads(out.stdout)
    assert set(NAMES) <= set(names)
    assert steps == ["SamplerStep"] * 3
    assert jax_loaded is False
    for n in NAMES:
        assert isinstance(load_sampler(n), SamplerStep) and load_sampler(n).name == n
    assert load_sampler("addim", max_snr=100.0) is addim(max_snr=100.0)


def _random_mlp(dim: int, seed: int = 0) -> nnx.Module:
    """An MLP denoiser with non-zero random weights (the zero-initialised output made random)."""
    model = diff_pixel.MLPDenoiser(dim, width=32, depth=2, rngs=nnx.Rngs(seed))
    state = nnx.state(model, nnx.Param)
    keys = iter(jax.random.split(jax.random.key(seed), len(jax.tree.leaves(state))))
    nnx.update(model, jax.tree.map(lambda p: p + 0.3 * jax_normal(next(keys), p.shape), state))
    return model


def _ddim_chain(denoiser, grid, z, cond=None):
    """DDIM(η = 0) written out step by step (host loop), returning x̂ of the last evaluation."""
    from diff_protocol import denoise

    lam = np.asarray(grid.logsnr)
    for k in range(len(lam) - 1):
        lk = jnp.full((z.shape[0],), lam[k], z.dtype)
        x_hat = denoise(denoiser, z, lk, cond)[0]
        if k == len(lam) - 2:
            return x_hat
        z = samplers.ddim(0.0).step(z, x_hat, jnp.float32(lam[k]), jnp.float32(lam[k + 1]), None)[0]
    raise AssertionError("unreachable")


@pytest.mark.smoke
def test_multistep_sampler_is_the_ddim_chain_on_any_denoiser():
    """``multistep_consistency`` on uniform_t(schedule, S) equals diff-core's ddim(0) through the
    driver bitwise, and this package's ``sample`` equals ``diff_core.sample`` with the loaded
    plugin bitwise, for a diff-pixel MLP and an exact mixture (the U-ViT: slow suite)."""
    ring8 = problem("ring8")
    mlp = _random_mlp(2)
    noise = jax_noise(jax.random.key(3), (64, 2))
    exact = GaussianMixture(
        ring8.mixture.weights, ring8.mixture.means, ring8.mixture.stds, method="matmul"
    ).denoiser("x")
    for den in (mlp, exact):
        for s in (1, 3):
            grid = student_grid(ring8.schedule, s)
            ours = sample(den, s, noise, schedule=ring8.schedule)
            plugin = core_sample(den, load_sampler("multistep_consistency"), grid, noise)
            ddim = core_sample(den, samplers.ddim(0.0), grids.uniform_t(ring8.schedule, s), noise)
            np.testing.assert_array_equal(np.asarray(ours), np.asarray(plugin))
            np.testing.assert_array_equal(np.asarray(ours), np.asarray(ddim))


@pytest.mark.slow
def test_samplers_on_a_diff_pixel_uvit():
    """On a class-conditional diff-pixel U-ViT (random non-zero weights) through diff-pixel's
    adapter: the multistep sampler is DDIM bitwise, and so is aDDIM with zero variance."""
    ring8 = problem("ring8")
    uvit = diff_pixel.build_model("tiny-16", seed=1)
    state = nnx.state(uvit, nnx.Param)
    keys = iter(jax.random.split(jax.random.key(5), len(jax.tree.leaves(state))))
    nnx.update(uvit, jax.tree.map(lambda p: p + 0.02 * jax_normal(next(keys), p.shape), state))
    labels = jnp.arange(8) % 10
    kw = dict(shape=(8, 16, 16, 1), key=jax.random.key(0), schedule=ring8.schedule, steps=4)
    cond = diff_pixel.Cond(label=labels)
    a = diff_pixel.sample(uvit, sampler="multistep_consistency", cond=cond, **kw)
    b = diff_pixel.sample(uvit, sampler="ddim", cond=cond, **kw)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(jnp.std(a)) > 0.05  # a non-trivial network output
    c = diff_pixel.sample(uvit, sampler=addim(AnalyticVariance(0.0)), cond=cond, **kw)
    np.testing.assert_array_equal(np.asarray(c), np.asarray(b))


def test_multistep_matches_a_written_out_chain():
    """The driver's chain equals a host loop of diff-core DDIM steps with the last x̂ returned."""
    ring8 = problem("ring8")
    mlp = _random_mlp(2, seed=4)
    z = jax.random.normal(jax.random.key(9), (32, 2))
    grid = student_grid(ring8.schedule, 4)
    got = sample(mlp, 4, None, z_init=z, schedule=ring8.schedule)
    want = _ddim_chain(diff_pixel.as_denoiser(mlp), grid, z)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-6)


def test_addim_plugin_through_both_drivers_and_pixel_adapter():
    """aDDIM (analytic and oracle variance) is a SamplerStep: the numpy loop, the JAX scan and
    diff-pixel's adapter (same ExampleNoise) agree; on mix64 the oracle aDDIM-8 is closer to the
    data's spread than DDIM-8 (spec §10 table: 0.70 vs 0.64)."""
    from diff_core import metrics

    mix64 = problem("mix64")
    den = mix64.mixture.denoiser("x")
    grid = grids.uniform_t(mix64.schedule, 8)
    z0 = numpy_noise(0, (512, 64))(0)
    step = addim(OracleVariance(mix64.mixture, 0.75))
    x_np = core_sample(den, step, grid, None, z_init=z0.astype(np.float64))
    with jax.enable_x64(True):
        x_jax = core_sample(den, step, grid, None, z_init=jnp.asarray(z0, jnp.float64))
    np.testing.assert_allclose(np.asarray(x_jax), x_np, rtol=0, atol=1e-9)
    ddim = core_sample(den, samplers.ddim(0.0), grid, None, z_init=z0.astype(np.float64))
    spread_a = metrics.mode_distance_ratio(x_np, mix64.mixture)
    spread_d = metrics.mode_distance_ratio(ddim, mix64.mixture)
    assert abs(spread_a - 1) < abs(spread_d - 1)
    mlp = _random_mlp(64, seed=2)
    kw = dict(shape=(16, 64), key=jax.random.key(1), schedule=mix64.schedule, steps=6, x_clip=None)
    a = diff_pixel.sample(mlp, sampler="addim", **kw)
    noise = diff_pixel.ExampleNoise(jax.random.key(1), jnp.uint32(0), (16, 64), 6)
    b = core_sample(diff_pixel.as_denoiser(mlp), addim(), grids.uniform_t(mix64.schedule, 6), noise)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_renoise_sampler_is_songs_algorithm():
    """``consistency_renoise`` on [1, t_1, ..., 0]: x = f(z_1, 1), then z = α x + σ·noise(i),
    x = f(z, t_i) — checked against the written-out loop with the same draws."""
    ring8 = problem("ring8")
    mlp = _random_mlp(2, seed=6)
    den = diff_pixel.as_denoiser(mlp)
    grid = renoise_grid(ring8.schedule, [0.6, 0.3])
    noise = jax_noise(jax.random.key(4), (128, 2))
    got = core_sample(den, consistency_renoise(), grid, noise)
    lam = np.asarray(grid.logsnr)
    z = noise(0)
    x = None
    for k in range(3):
        if k:
            z = diffuse(x, noise(k), jnp.float32(lam[k]))
        x = den(z, jnp.full((128,), lam[k], jnp.float32))
        x = jnp.asarray(diff_pixel_to_x(x, z, lam[k]))
    np.testing.assert_allclose(np.asarray(got), np.asarray(x), rtol=0, atol=1e-6)
    assert consistency_renoise().stochastic
    with pytest.raises(ValueError, match="strictly decreasing"):
        renoise_grid(ring8.schedule, [0.3, 0.6])
    assert multistep_consistency().step is samplers.ddim(0.0).step


def diff_pixel_to_x(v, z, lam):
    from diff_protocol import to_x_eps

    return to_x_eps(v, z, jnp.full((z.shape[0],), lam, jnp.float32), "v")[0]


def test_steps_refuse_reversed_noise_levels():
    """Every step of this package refuses logsnr_s <= logsnr_t (issue 18: a reversed pair gave
    finite garbage), naming both levels; the multistep and aDDIM steps through diff-core's DDIM."""
    import numpy as np

    from diff_consistency.addim import addim_step
    from diff_consistency.samplers.multistep import multistep_consistency
    from diff_consistency.samplers.renoise import consistency_renoise

    z = np.zeros((2, 3))
    for call in (
        lambda: consistency_renoise().step(z, z, 1.0, 0.0, z),
        lambda: multistep_consistency().step(z, z, 1.0, 0.0, None),
        lambda: addim_step(z, z, 1.0, 0.0, x_var=0.1),
    ):
        with pytest.raises(ValueError, match="logsnr_s must be > logsnr_t"):
            call()
