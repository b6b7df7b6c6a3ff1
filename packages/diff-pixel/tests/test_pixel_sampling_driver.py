"""diff-pixel models on diff-core's one sampling driver (platform 0.2).

Every registered sampler runs on a backbone under jit and matches an eager step-by-step loop;
DDPM and DDIM reproduce diff-pixel 0.1's loop on the same noise; new weights reach the next call
without recompiling (the 0.1 stale-weights bug); guidance equals the hand-written CFG combination;
a sampler registered by a plugin runs on a diff-pixel model.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import diff_core
from diff_core import guided, samplers
from diff_core.grids import uniform_t
from diff_core.schedules import CosineSchedule
from diff_pixel.losses import example_keys
from diff_pixel.models import Cond, ResidualUViT, UViTConfig, as_denoiser
from diff_pixel.sampling import ExampleNoise, sample
from diff_pixel.testing import perturb
from diff_protocol import SamplerStep, available, register, to_x_eps

COSINE = CosineSchedule(-15.0, 15.0)
SHAPE = (4, 8, 8, 1)
STEPS = 6


def tiny(seed: int = 0) -> ResidualUViT:
    cfg = UViTConfig(
        8,
        1,
        channels=(8, 16),
        blocks=(1,),
        block_types=("res",),
        mid_blocks=1,
        head_dim=8,
        dropout=(0.0, 0.0),
        num_classes=3,
    )
    model = ResidualUViT(cfg, nnx.Rngs(seed))
    perturb(model, seed + 1, 0.05)
    return model


@pytest.fixture(scope="module")
def model():
    return tiny()


COND = Cond(label=jnp.array([0, 1, 2, 0]))


def step_by_step(model, step: SamplerStep, noise, x_clip=1.0):
    """An eager loop over the sampler's pure steps (the driver's algorithm written out)."""
    grid = uniform_t(COSINE, STEPS)
    lam = [float(v) for v in grid.logsnr]
    call = jax.jit(lambda z, lv: model(z, lv, COND))

    def x_hat(z, k):
        lv = jnp.full((SHAPE[0],), lam[k], jnp.float32)
        return jnp.clip(to_x_eps(call(z, lv), z, lv, "v")[0], -x_clip, x_clip)

    z = noise(0)
    state = step.init(z)
    for k in range(STEPS):
        x = x_hat(z, k)
        if k == STEPS - 1:
            return x
        lt, ls = jnp.float32(lam[k]), jnp.float32(lam[k + 1])
        draw = noise(k + 1) if step.stochastic else None
        z_pred, state = step.step(z, x, lt, ls, draw, state)
        if step.corrector is not None and math.isfinite(lam[k + 1]):
            z, state = step.corrector(z, x, z_pred, x_hat(z_pred, k + 1), lt, ls, state)
        else:
            z = z_pred


@pytest.mark.slow
def test_every_registered_sampler_runs_on_a_backbone_and_matches_the_step_loop(model):
    names = sorted(available("diff.samplers"))
    assert {"ddpm", "ddim", "euler", "heun", "dpmpp_2m"} <= set(names)
    noise = ExampleNoise(jax.random.key(0), jnp.uint32(0), SHAPE, STEPS)
    outs = {}
    for name in names:
        x = sample(
            model,
            shape=SHAPE,
            key=jax.random.key(0),
            schedule=COSINE,
            steps=STEPS,
            sampler=name,
            cond=COND,
        )
        from diff_protocol import load_sampler

        ref = step_by_step(model, load_sampler(name), noise)
        np.testing.assert_allclose(np.asarray(x), np.asarray(ref), atol=2e-5, err_msg=name)
        outs[name] = np.asarray(x)
    # the methods differ from one another (each sampler really ran)
    assert np.abs(outs["heun"] - outs["ddim"]).max() > 1e-3
    assert np.abs(outs["ddpm"] - outs["ddim"]).max() > 1e-3


def v01_noise(key, batch, shape, i):
    """diff-pixel 0.1's per-example draw i: normal(fold_in(fold_in(key, j), i))."""
    keys = example_keys(key, jnp.arange(batch, dtype=jnp.uint32))
    return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, i), shape))(keys)


@pytest.mark.parametrize("name", ["ddpm", "ddim"])
def test_ddpm_and_ddim_equal_the_0_1_loop_on_the_same_noise(model, name):
    key = jax.random.key(7)
    step = samplers.ddpm(0.0) if name == "ddpm" else samplers.ddim(0.0)

    # 0.1: initial state = draw `steps`, step k uses draw k
    def noise01(i):
        return v01_noise(key, SHAPE[0], SHAPE[1:], STEPS if i == 0 else i - 1)

    ref = step_by_step(model, step, noise01)
    x = sample(model, shape=SHAPE, key=key, schedule=COSINE, steps=STEPS, sampler=name, cond=COND)
    np.testing.assert_allclose(np.asarray(x), np.asarray(ref), atol=2e-5)


def test_new_weights_reach_the_next_call_without_recompiling():
    model = tiny(0)
    den = as_denoiser(model)
    grid = uniform_t(COSINE, STEPS)
    noise = ExampleNoise(jax.random.key(1), jnp.uint32(0), SHAPE, STEPS)

    def run(d):
        return np.asarray(diff_core.sample(d, samplers.ddim(), grid, noise, cond=COND, x_clip=1.0))

    from diff_core import _jax_scan

    first = run(den)
    compiled = _jax_scan._sample_jit._cache_size()
    # in place, as during training: the same wrapper object must see the new weights
    perturb(model, 5, 0.05)
    second = run(den)
    fresh = run(as_denoiser(model))
    np.testing.assert_array_equal(second, fresh)
    assert np.abs(second - first).max() > 1e-3
    # swapped for another model of the same structure: new result, still no recompilation
    third = run(as_denoiser(tiny(3)))
    assert np.abs(third - second).max() > 1e-3
    assert _jax_scan._sample_jit._cache_size() == compiled
    # the diff-pixel adapter too (its own first call may compile once; later calls do not)
    a = sample(model, shape=SHAPE, key=jax.random.key(1), schedule=COSINE, steps=STEPS, cond=COND)
    n = _jax_scan._sample_jit._cache_size()
    perturb(model, 6, 0.05)
    b = sample(model, shape=SHAPE, key=jax.random.key(1), schedule=COSINE, steps=STEPS, cond=COND)
    assert _jax_scan._sample_jit._cache_size() == n and np.abs(np.asarray(a - b)).max() > 1e-3


def test_guided_output_is_the_hand_written_cfg_combination(model):
    w = 2.5
    den = guided(as_denoiser(model), w, null_cond=Cond.null)
    z = jax.random.normal(jax.random.key(2), SHAPE)
    lam = jnp.linspace(-3.0, 3.0, SHAPE[0])
    out = jax.jit(lambda d, z, lam, c: d(z, lam, c))(den, z, lam, COND)
    out_c = model(z, lam, COND)
    out_u = model(z, lam, COND.null())
    np.testing.assert_allclose(np.asarray(out), np.asarray(out_u + w * (out_c - out_u)), atol=1e-5)
    # the null really is the null: every label gives the same unconditional output
    other = Cond(label=jnp.array([2, 2, 1, 1]))
    np.testing.assert_array_equal(np.asarray(model(z, lam, other.null())), np.asarray(out_u))
    # and through the adapter: sample(guidance=w) == diff_core.sample over the same guided model
    x = sample(
        model,
        shape=SHAPE,
        key=jax.random.key(4),
        schedule=COSINE,
        steps=STEPS,
        cond=COND,
        guidance=w,
    )
    noise = ExampleNoise(jax.random.key(4), jnp.uint32(0), SHAPE, STEPS)
    ref = diff_core.sample(
        den, samplers.ddpm(), uniform_t(COSINE, STEPS), noise, cond=COND, x_clip=1.0
    )
    np.testing.assert_array_equal(np.asarray(x), np.asarray(ref))


def counting_ddim() -> SamplerStep:
    """A plugin sampler: DDIM with a carried step counter (exercises sampler state)."""
    ddim = samplers.ddim(0.0)

    def step(z_t, x_hat, logsnr_t, logsnr_s, noise, state):
        z_s, _ = ddim.step(z_t, x_hat, logsnr_t, logsnr_s, None, ())
        return z_s, state + 1

    return SamplerStep(name="counting_ddim", init=lambda z: jnp.zeros((), jnp.int32), step=step)


def test_a_sampler_registered_by_a_plugin_runs_on_a_diff_pixel_model(model):
    register("diff.samplers", "test_counting_ddim", counting_ddim, overwrite=True)
    kw = dict(shape=SHAPE, key=jax.random.key(3), schedule=COSINE, steps=STEPS, cond=COND)
    x = sample(model, sampler="test_counting_ddim", **kw)
    np.testing.assert_allclose(
        np.asarray(x), np.asarray(sample(model, sampler="ddim", **kw)), atol=1e-6
    )
    with pytest.raises(ValueError, match="sampler must be a registered sampler name"):
        sample(model, sampler="no_such_sampler", **kw)
