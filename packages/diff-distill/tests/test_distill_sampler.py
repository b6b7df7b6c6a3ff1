"""Tier (a) checks 4, 5 and 11 of distill.md §12.1: the student sampler as an entry-point plugin,
its equality with diff-core's ancestral sampler, and the exact-teacher baselines on ring8."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diff_core import grids, metrics, samplers
from diff_core import sample as core_sample
from diff_core.testing import problem
from diff_distill import moment_matching, sample
from diff_distill.toy import evaluate, exact_mixture
from diff_protocol import SamplerStep, jax_noise, load_sampler, table_noise


@pytest.mark.smoke
def test_plugin_listed_without_jax_and_loadable():
    code = (
        "import json, sys\n"
        "from diff_protocol import available, load_sampler\n"
        "names = sorted(available('diff.samplers'))\n"
        "step = load_sampler('moment_matching', eta=1)\n"
        "print(json.dumps([names, type(step).__name__, step.stochastic, 'jax' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, kind, stochastic, jax_loaded = json.loads(out.stdout)
    assert "moment_matching" in names
    assert kind == "SamplerStep" and stochastic is True
    assert jax_loaded is False
    step = load_sampler("moment_matching", eta=1)
    assert isinstance(step, SamplerStep) and step.name == "moment_matching" and step.order == 1
    assert moment_matching(0.0).stochastic is False


@pytest.mark.smoke
def test_sampler_equals_ddpm_on_the_same_grid_and_noise():
    """diff_core.sample with moment_matching(1) and with ddpm(0) on uniform_t(schedule, 8), the
    same denoiser and table noise: identical to 1e-12 in float64 (the steps are algebraically
    equal); and bitwise diff-core's ddim(eta) loop for eta = 0.5."""
    with jax.enable_x64(True):
        prob = problem("ring8")
        den = prob.mixture.denoiser("x")
        grid = grids.uniform_t(prob.schedule, 8)
        table = jnp.asarray(np.random.default_rng(0).standard_normal((9, 500, 2)))
        noise = table_noise(table)
        a = core_sample(den, load_sampler("moment_matching", eta=1), grid, noise)
        b = core_sample(den, samplers.ddpm(0.0), grid, noise)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-12)
        c = sample(den, 8, noise, schedule=prob.schedule, eta=0.5)
        d = core_sample(den, samplers.ddim(0.5), grid, noise)
        assert np.array_equal(np.asarray(c), np.asarray(d))
        traj = sample(den, 8, noise, schedule=prob.schedule, return_trajectory=True)
        assert np.asarray(traj.trajectory).shape[0] == 9


def _exact_student_metrics(k: int, seed: int):
    den = exact_mixture("ring8").denoiser("x")
    noise = jax_noise(jax.random.key(1000 + seed), (20_000, 2))
    return evaluate(sample(den, k, noise, schedule=problem("ring8").schedule), "ring8")


@pytest.mark.slow
def test_exact_denoiser_as_student_gives_the_ancestral_teacher():
    """Check 5: the exact ring8 denoiser in the student's place: the DDPM-8 level at k = 8 and
    the truth at k = 256 (grid and noise indexing right at every step count)."""
    m8 = _exact_student_metrics(8, 0)
    assert 0.020 <= m8["mmd2"] <= 0.031 and m8["mode_tv"] <= 0.035, m8
    m256 = _exact_student_metrics(256, 0)
    assert m256["mmd2"] <= 2e-3 and m256["mode_tv"] <= 0.02, m256


@pytest.mark.slow
def test_exact_teacher_baselines_reproduce():
    """Check 11: the exact teacher's DDIM-8 MMD² in [0.017, 0.026] and DDPM-8 in [0.020, 0.031]
    (three evaluation seeds averaged)."""
    prob = problem("ring8")
    den = exact_mixture("ring8").denoiser("x")
    grid = grids.uniform_t(prob.schedule, 8)
    truth = prob.mixture.sample(3000, seed=77)[0]
    out = {}
    for name, step in (("ddim", samplers.ddim(0.0)), ("ddpm", samplers.ddpm(0.0))):
        vals = []
        for seed in range(3):
            x = core_sample(den, step, grid, jax_noise(jax.random.key(seed), (3000, 2)))
            vals.append(metrics.mmd2(np.asarray(x, np.float64), truth))
        out[name] = float(np.mean(vals))
    assert 0.017 <= out["ddim"] <= 0.026, out
    assert 0.020 <= out["ddpm"] <= 0.031, out
