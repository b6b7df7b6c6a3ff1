"""diff-rolling mixed with diff-core and diff-pixel: the rolling window step is a registered
diff-core sampler that runs in diff-core's one driver on diff-core's exact Gaussian model, and the
rolling sampler rolls out a diff-pixel network and diff-rolling's exact oracle alike."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("diff_rolling")


def test_rolling_window_plugin_runs_in_diff_core_driver():
    from diff_core import CosineSchedule, grids, sample
    from diff_core.analytic import GaussianMixture
    from diff_protocol import available, jax_noise, load_sampler

    assert "rolling_window" in available("diff.samplers")
    step = load_sampler("rolling_window", sampler="ddim")
    mix = GaussianMixture(
        np.array([0.5, 0.5]), np.array([[-1.0, 0.5], [1.0, -0.5]]), np.array([0.3, 0.5])
    )
    den = mix.denoiser("x")
    grid = grids.uniform_t(CosineSchedule(), 16)
    noise = jax_noise(jax.random.key(0), (256, 2))
    a = sample(den, step, grid, noise)
    b = sample(den, load_sampler("ddim"), grid, noise)
    # shared levels: the per-frame step is diff-core's DDIM step (up to float32 rounding)
    assert np.allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_rolling_rollout_of_a_diff_pixel_network_and_the_registry():
    from flax import nnx

    from diff_core import CosineSchedule
    from diff_pixel.models import describe, from_description
    from diff_protocol import jax_noise, load
    from diff_rolling import RolloutConfig, VideoDenoiser, rollout, space_time_model

    net = space_time_model("micro", rngs=nnx.Rngs(0))
    # the network round-trips through diff-pixel's registry
    again = from_description(describe(net))
    assert type(again) is type(net)
    den = VideoDenoiser(net, context=2)
    cfg = RolloutConfig(window=4, context=2, steps_per_shift=2)
    ctx = jnp.zeros((2, 2, 16, 16, 1))
    res = rollout(
        den, ctx, 3, cfg, CosineSchedule(), jax_noise(jax.random.key(0), (2, 4, 16, 16, 1))
    )
    assert res.frames.shape == (2, 3, 16, 16, 1) and res.nfe == 8 + 4
    assert np.isfinite(np.asarray(res.frames)).all()
    # the exact oracle model is a diff.models plugin
    gv_cls = load("diff.models", "gaussian_video")
    gv = gv_cls.from_config({"resolution": 8, "phi": 0.5})
    assert gv.exact_denoiser().prediction == "x"
