"""Check 31 and the driver rows of §3.13: non-finite reporting and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest

from diff_core import grids, sample
from diff_core.samplers import ddim, ddpm, dpmpp_2m, euler, heun
from diff_core.schedules import CosineSchedule
from diff_protocol import NonFiniteError, TimeGrid, as_denoiser, numpy_noise, table_noise, to_x_eps
from diff_protocol.testing import backend


def _nan_from_step(k_bad, grid, xp):
    threshold = float(grid.logsnr[k_bad])

    def fn(z, logsnr):
        bad = xp.reshape(logsnr >= threshold, (-1,) + (1,) * (z.ndim - 1))
        return xp.where(bad, xp.full_like(z, float("nan")), 0.5 * z)

    return as_denoiser(fn, "x")


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_nan_from_step_7_is_reported_with_step_and_t(name):
    xp, asarray = backend(name)
    grid = grids.uniform_t(CosineSchedule(), 16)
    rng = np.random.default_rng(0)
    noise = table_noise(asarray(rng.standard_normal((17, 8, 2)), "float32"))
    den = _nan_from_step(7, grid, xp)
    with pytest.raises(NonFiniteError) as info:
        sample(den, ddpm(), grid, noise)
    msg = str(info.value)
    assert "denoiser output is not finite at step 7" in msg
    assert f"t={float(grid.t[7]):.4g}" in msg
    assert f"logsnr={float(grid.logsnr[7]):.4g}" in msg
    assert isinstance(info.value, ValueError)


def test_non_finite_state_is_reported():
    from diff_protocol import SamplerStep

    grid = grids.uniform_t(CosineSchedule(), 8)
    blow_up = SamplerStep(
        "blow_up", init=lambda z: (), step=lambda z, x, lt, ls, n, s: (z / 0.0, s)
    )
    den = as_denoiser(lambda z, lam: 0.5 * z, "x")
    with np.errstate(divide="ignore", invalid="ignore"):
        with pytest.raises(NonFiniteError, match=r"sample: state is not finite at step 0 \(t=1,"):
            sample(den, blow_up, grid, numpy_noise(0, (4, 2)))


def test_grid_must_end_at_zero():
    t = np.array([1.0, 0.5, 0.001])
    grid = TimeGrid(t, CosineSchedule().logsnr(t))
    den = as_denoiser(lambda z, lam: z, "x")
    with pytest.raises(ValueError, match=r"sample: grid.t must end at exactly 0.0, got 0.001"):
        sample(den, ddim(), grid, numpy_noise(0, (2, 2)))
    t2 = np.array([1.0, 0.5, 0.7, 0.0])
    with pytest.raises(ValueError, match="grid.t must be strictly decreasing"):
        sample(den, ddim(), TimeGrid(t2, np.array([-1.0, 0.0, 1.0, 2.0])), numpy_noise(0, (2, 2)))


@pytest.mark.parametrize(
    "factory, arg, message",
    [
        (lambda: ddim(eta=1.5), "eta", "ddim: eta must be in [0, 1], got 1.5"),
        (lambda: ddpm(gamma=-0.1), "gamma", "ddpm: gamma must be in [0, 1], got -0.1"),
        (lambda: euler("time"), "variable", "euler: variable must be one of 'sigma', 'logsnr'"),
        (lambda: heun("y"), "variable", "heun: variable must be one of 'sigma', 'logsnr'"),
        (lambda: ddim(clip_x=-1.0), "clip_x", "ddim: clip_x must be None or a positive number"),
    ],
)
def test_sampler_factories_validate(factory, arg, message):
    with pytest.raises(ValueError) as info:
        factory()
    assert message in str(info.value) and arg in str(info.value)


def test_eps_denoiser_cannot_start_at_minus_inf():
    grid = grids.uniform_t(CosineSchedule(-np.inf, np.inf), 8)
    den = as_denoiser(lambda z, lam: z, "eps")
    with pytest.raises(
        ValueError,
        match="sample: grid starts at logsnr=-inf where an 'eps' prediction cannot give x; "
        "use a truncated schedule",
    ):
        sample(den, ddim(), grid, numpy_noise(0, (2, 2)))
    x_den = as_denoiser(lambda z, lam: 0 * z, "x")
    with pytest.raises(ValueError, match="'heun' sampler cannot start"):
        sample(x_den, heun(), grid, numpy_noise(0, (2, 2)))
    # an x-predictor with DPM-Solver++ starts from -inf fine (first order first step)
    out = sample(x_den, dpmpp_2m(), grid, numpy_noise(0, (2, 2)))
    assert np.all(out == 0)


def test_backend_mismatch_is_a_type_error():
    torch = pytest.importorskip("torch")
    from diff_protocol import torch_noise

    grid = grids.uniform_t(CosineSchedule(), 4)
    den = as_denoiser(lambda z, lam: z, "x")
    with pytest.raises(
        TypeError, match=r"sample: noise\(0\) is a torch.Tensor but z_init is a numpy.ndarray"
    ):
        sample(den, ddpm(), grid, torch_noise(0, (2, 2)), z_init=np.zeros((2, 2)))
    del torch


def test_short_noise_table():
    grid = grids.uniform_t(CosineSchedule(), 16)
    den = as_denoiser(lambda z, lam: z, "x")
    with pytest.raises(ValueError, match="sample: noise table has 10 draws, the grid needs 17"):
        sample(den, ddpm(), grid, table_noise(np.zeros((10, 2, 2))))


def test_unknown_prediction_and_logsnr_shape():
    with pytest.raises(
        ValueError, match="prediction must be one of 'eps', 'v', 'x', got 'epsilon'"
    ):
        to_x_eps(np.zeros((4, 2)), np.zeros((4, 2)), np.zeros(4), "epsilon")
    with pytest.raises(
        ValueError, match=r"logsnr shape \(3,\) must be a prefix of z shape \(4, 2\)"
    ):
        to_x_eps(np.zeros((4, 2)), np.zeros((4, 2)), np.zeros(3), "x")


def test_driver_argument_types():
    grid = grids.uniform_t(CosineSchedule(), 4)
    den = as_denoiser(lambda z, lam: z, "x")
    with pytest.raises(TypeError, match="sample: sampler must be a diff_protocol.SamplerStep"):
        sample(den, "ddim", grid, numpy_noise(0, (2, 2)))
    with pytest.raises(ValueError, match="sample: final must be 'denoise' or 'step'"):
        sample(den, ddim(), grid, numpy_noise(0, (2, 2)), final="last")
    with pytest.raises(TypeError, match="sample: denoiser must have a 'prediction' attribute"):
        sample(lambda z, lam: z, ddim(), grid, numpy_noise(0, (2, 2)))
    with pytest.raises(ValueError, match="sample: noise must be a noise source"):
        sample(den, ddpm(), grid, None, z_init=np.zeros((2, 2)))
    with pytest.raises(TypeError, match="callback is not supported under JAX"):
        jax = pytest.importorskip("jax")
        from diff_protocol import jax_noise

        sample(den, ddim(), grid, jax_noise(jax.random.key(0), (2, 2)), callback=print)


def test_callback_and_trajectory_report_every_step():
    grid = grids.uniform_t(CosineSchedule(), 5)
    seen = []
    den = as_denoiser(lambda z, lam: 0.5 * z, "x")
    res = sample(
        den, heun(), grid, numpy_noise(0, (3, 2)), callback=seen.append, return_trajectory=True
    )
    assert [s.k for s in seen] == [0, 1, 2, 3, 4]
    assert [s.nfe for s in seen] == [2, 4, 6, 8, 9]  # Heun: 2N - 1 with final="denoise"
    assert res.nfe == 9 and len(res.trajectory) == 6
    np.testing.assert_array_equal(res.trajectory[-1], res.x)
    assert seen[2].t == pytest.approx(grid.t[2]) and seen[2].t_next == pytest.approx(grid.t[3])
