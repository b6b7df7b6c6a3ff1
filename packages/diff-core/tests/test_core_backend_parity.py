"""Check 25: numpy, torch and JAX drivers compute the same samples from the same noise values."""

from __future__ import annotations

import numpy as np
import pytest

from diff_core import grids, sample
from diff_core.samplers import ddim, ddpm, dpmpp_2m, euler, heun
from diff_core.testing import problem
from diff_protocol import table_noise
from diff_protocol.testing import to_backend, to_numpy

SAMPLERS = {
    "ddpm": ddpm(),
    "ddim": ddim(),
    "euler": euler(),
    "heun": heun(),
    "dpmpp_2m": dpmpp_2m(),
}
N_STEPS = 32
N = 4096


@pytest.fixture(scope="module")
def setup():
    prob = problem("ring6")
    grid = grids.uniform_t(prob.schedule, N_STEPS)
    rng = np.random.default_rng(25)
    table = rng.standard_normal((N_STEPS + 1, N, 2))
    return prob, grid, table


def _run(prob, grid, table, name, backend, dtype):
    noise = table_noise(to_backend(table, backend, dtype))
    out = sample(prob.mixture.denoiser("x"), SAMPLERS[name], grid, noise)
    return np.asarray(to_numpy(out), dtype=np.float64)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_numpy64_equals_torch64(setup, name):
    pytest.importorskip("torch")
    prob, grid, table = setup
    a = _run(prob, grid, table, name, "numpy", "float64")
    b = _run(prob, grid, table, name, "torch", "float64")
    assert np.abs(a - b).max() <= 1e-10
    # the samples are real samples of ring6: radius close to 1 for nearly all of them
    assert np.median(np.abs(np.hypot(a[:, 0], a[:, 1]) - 1.0)) < 0.1


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_float32_backends_agree(setup, name):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    prob, grid, table = setup
    a = _run(prob, grid, table, name, "numpy", "float32")
    b = _run(prob, grid, table, name, "torch", "float32")
    c = _run(prob, grid, table, name, "jax", "float32")
    ref = _run(prob, grid, table, name, "numpy", "float64")
    assert np.abs(a - b).max() <= 1e-4
    assert np.abs(a - c).max() <= 1e-4
    # float32 stays close to the float64 chain as well
    assert np.abs(a - ref).max() <= 1e-4


def test_jax_new_key_does_not_retrace():
    jax = pytest.importorskip("jax")
    from diff_protocol import as_denoiser, jax_noise

    prob = problem("ring6")
    grid = grids.uniform_t(prob.schedule, 8)
    inner = prob.mixture.denoiser("x")
    traces = {"n": 0}

    def counting(z, logsnr):
        traces["n"] += 1  # runs only while tracing
        return inner(z, logsnr)

    den = as_denoiser(counting, "x")
    a = sample(den, ddpm(), grid, jax_noise(jax.random.key(0), (256, 2)))
    after_first = traces["n"]
    b = sample(den, ddpm(), grid, jax_noise(jax.random.key(1), (256, 2)))
    other_grid = grids.uniform_t(prob.schedule.__class__(-14.0, 14.0), 8)
    sample(den, ddpm(), other_grid, jax_noise(jax.random.key(2), (256, 2)))
    assert after_first >= 1
    assert traces["n"] == after_first  # new key and new grid of the same length: no retrace
    assert float(np.abs(np.asarray(a) - np.asarray(b)).max()) > 0.1
