"""(c) The downstream path end to end, as a package built on the protocol would walk it: a
schedule restored from JSON, a sampler loaded by name, a guided exact ConditionalMixture, sampled
with diff_core.sample on numpy, torch and JAX from one table of noise; the three agree."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from diff_core import sample
from diff_core.grids import uniform_t
from diff_core.guidance import guided
from diff_core.testing import problem
from diff_protocol import load_sampler, schedule_from_json, table_noise

# What a config file or checkpoint would carry.
SCHEDULE_JSON = '{"name": "cosine", "logsnr_min": -15.0, "logsnr_max": 15.0}'
STEPS = 32
BATCH = 512
SCALE = 3.0
INTERVAL = (0.25, 5.0)  # logsnr interval of check 26


def setup():
    schedule = schedule_from_json(SCHEDULE_JSON)
    grid = uniform_t(schedule, STEPS)
    sampler = load_sampler("ddpm", gamma=0.0)  # stochastic: the noise table is used every step
    model = problem("guidance1d").mixture
    rng = np.random.default_rng(2024)
    table = rng.standard_normal((STEPS + 1, BATCH, 1))
    labels = np.repeat(np.array([0, 1]), BATCH // 2)  # class A then class B
    return schedule, grid, sampler, model, table, labels


@functools.cache
def run_numpy(scale: float = SCALE, interval=INTERVAL) -> np.ndarray:
    """Float64 samples on numpy (cached: the reference of several tests; do not modify)."""
    _, grid, sampler, model, table, labels = setup()
    denoiser = guided(model.denoiser(), scale, null_cond=model.null_label, interval=interval)
    return np.asarray(sample(denoiser, sampler, grid, table_noise(table), cond=labels))


def test_schedule_restored_from_json_is_the_registered_cosine() -> None:
    from diff_core.schedules import CosineSchedule

    schedule = schedule_from_json(SCHEDULE_JSON)
    assert type(schedule) is CosineSchedule
    t = np.linspace(0.0, 1.0, 101)
    np.testing.assert_array_equal(schedule.logsnr(t), CosineSchedule(-15.0, 15.0).logsnr(t))
    assert abs(float(schedule.logsnr(np.asarray(0.5)))) < 1e-12


def test_guidance_changes_samples_and_scale_one_is_conditional() -> None:
    _, grid, sampler, model, table, labels = setup()
    plain = np.asarray(sample(model.denoiser(), sampler, grid, table_noise(table), cond=labels))
    # scale = 1 returns the conditional output exactly, so the samples are bitwise identical.
    np.testing.assert_array_equal(run_numpy(scale=1.0), plain)
    guided_x = run_numpy()
    assert np.max(np.abs(guided_x - plain)) > 0.1
    # Every sample lands near a mode of its own class (std 0.25 around +-1.5 / +-2.5).
    modes = {0: np.array([-2.5, 1.5]), 1: np.array([-1.5, 2.5])}
    for label, centres in modes.items():
        x = guided_x[labels == label, 0]
        distance = np.min(np.abs(x[:, None] - centres[None, :]), axis=1)
        assert np.quantile(distance, 0.99) < 1.0


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_torch_and_jax_agree_with_numpy(backend: str) -> None:
    _, grid, sampler, model, table, labels = setup()
    reference = run_numpy()
    if backend == "torch":
        import torch

        noise = table_noise(torch.asarray(table, dtype=torch.float32))
        cond = torch.asarray(labels)
        to_numpy = lambda x: x.detach().cpu().numpy()  # noqa: E731
    else:
        import jax.numpy as jnp

        noise = table_noise(jnp.asarray(table, dtype=jnp.float32))
        cond = jnp.asarray(labels)
        to_numpy = np.asarray
    denoiser = guided(model.denoiser(), SCALE, null_cond=model.null_label, interval=INTERVAL)
    x = to_numpy(sample(denoiser, sampler, grid, noise, cond=cond))
    assert x.dtype == np.float32
    assert x.shape == reference.shape
    np.testing.assert_allclose(x, reference, rtol=0, atol=1e-4)
