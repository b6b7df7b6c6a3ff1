"""Time grids and the sampler-step protocol (diff_protocol.sampler): acceptance check 7.

``check_grid`` is exercised on every backend with each malformed grid of specs/core.md §3.13 and
§2 (the error must name the argument) and with the legal edge cases (N = 1, infinite ends, a start
below t = 1, traced JAX arrays). The second half of check 7, every ``diff_core.grids`` constructor's
output passing ``check_grid``, runs when diff-core is installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re

import numpy as np
import pytest

import diff_protocol as dp
from diff_protocol.testing import BACKENDS, backend

FLOAT = {"numpy": "float64", "array_api_strict": "float64", "torch": "float64", "jax": "float32"}
INF = math.inf

VALID = {
    "one step, infinite ends": ([1.0, 0.0], [-INF, INF]),
    "two steps, infinite ends": ([1.0, 0.5, 0.0], [-INF, 0.0, INF]),
    "finite ends": ([1.0, 0.75, 0.5, 0.25, 0.0], [-15.0, -4.0, 0.0, 4.0, 15.0]),
    "starts below 1": ([0.8, 0.3, 0.0], [-3.0, 2.0, INF]),
    "only the start infinite": ([1.0, 0.4, 0.0], [-INF, 1.0, 12.0]),
}

# (t, logsnr, argument named, message fragment)
MALFORMED = {
    "not ending at 0": (
        [1.0, 0.5, 0.001],
        [-1.0, 0.0, 1.0],
        "grid.t",
        "must end at exactly 0.0, got 0.001",
    ),
    "ending below 0": (
        [1.0, 0.5, -0.1],
        [-1.0, 0.0, 1.0],
        "grid.t",
        "must end at exactly 0.0, got -0.1",
    ),
    "increasing t": ([0.0, 0.5, 1.0, 0.0], [-1.0, 0.0, 1.0, 2.0], "grid.t", "strictly decreasing"),
    "repeated t": ([1.0, 0.5, 0.5, 0.0], [-1.0, 0.0, 1.0, 2.0], "grid.t", "t[1]=0.5 <= t[2]=0.5"),
    "starting above 1": (
        [1.2, 0.5, 0.0],
        [-1.0, 0.0, 1.0],
        "grid.t",
        "must start at t <= 1, got 1.2",
    ),
    "NaN t": ([1.0, math.nan, 0.0], [-1.0, 0.0, 1.0], "grid.t", "must be finite"),
    "infinite t": ([INF, 0.5, 0.0], [-1.0, 0.0, 1.0], "grid.t", "must be finite"),
    "logsnr not increasing": (
        [1.0, 0.5, 0.0],
        [-1.0, 2.0, 1.0],
        "grid.logsnr",
        "strictly increasing",
    ),
    "logsnr repeated": ([1.0, 0.5, 0.0], [-1.0, -1.0, 1.0], "grid.logsnr", "strictly increasing"),
    "+inf in the middle": (
        [1.0, 0.5, 0.25, 0.0],
        [-1.0, INF, INF, INF],
        "grid.logsnr",
        "finite except",
    ),
    "-inf at the end": ([1.0, 0.5, 0.0], [-2.0, -1.0, -INF], "grid.logsnr", "finite except"),
    "+inf at the start": ([1.0, 0.5, 0.0], [INF, 0.0, 1.0], "grid.logsnr", "finite except"),
    "NaN logsnr": ([1.0, 0.5, 0.0], [-1.0, math.nan, 1.0], "grid.logsnr", "must not be NaN"),
    "no step": ([0.0], [INF], "grid.t", "at least 2 points"),
    "length mismatch": ([1.0, 0.5, 0.0], [-1.0, 1.0], "grid.logsnr", "length of grid.t"),
    "2-D t": ([[1.0, 0.0]], [-1.0, 1.0], "grid.t", "must be 1-D"),
    "2-D logsnr": ([1.0, 0.0], [[-1.0, 1.0]], "grid.logsnr", "must be 1-D"),
}


def _grid(name: str, t, logsnr) -> dp.TimeGrid:
    xp, asarray = backend(name)
    return dp.TimeGrid(
        asarray(np.asarray(t), FLOAT[name]), asarray(np.asarray(logsnr), FLOAT[name])
    )


@pytest.mark.parametrize("name", BACKENDS)
def test_check_grid_accepts_legal_grids(name):
    for label, (t, lam) in VALID.items():
        grid = _grid(name, t, lam)
        assert dp.check_grid(grid) is grid, label
        assert grid.n_steps == len(t) - 1


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_check_grid_names_the_argument(name, case):
    t, lam, arg, fragment = MALFORMED[case]
    grid = _grid(name, t, lam)
    with pytest.raises(ValueError) as info:
        dp.check_grid(grid, func="sample")
    msg = str(info.value)
    assert msg.startswith(f"sample: {arg} must "), msg
    assert fragment in msg, msg


def test_check_grid_message_of_spec_table():
    """§3.13: grid not ending at 0 -> ``sample: grid.t must end at exactly 0.0, got 0.001``."""
    grid = dp.TimeGrid(np.array([1.0, 0.5, 0.001]), np.array([-1.0, 0.0, 1.0]))
    with pytest.raises(
        ValueError, match=re.escape("sample: grid.t must end at exactly 0.0, got 0.001")
    ):
        dp.check_grid(grid, func="sample")
    with pytest.raises(ValueError, match=re.escape("check_grid: grid.t must end at exactly 0.0")):
        dp.check_grid(grid)


def test_check_grid_types():
    t, lam = np.array([1.0, 0.0]), np.array([-INF, INF])
    # a plain (t, logsnr) pair is accepted and returned as a TimeGrid
    grid = dp.check_grid((t, lam))
    assert isinstance(grid, dp.TimeGrid) and grid.t is t and grid.logsnr is lam
    with pytest.raises(
        TypeError, match=re.escape("check_grid: grid must be a TimeGrid(t, logsnr), got list")
    ):
        dp.check_grid([t, lam, t])
    with pytest.raises(TypeError, match=re.escape("check_grid: grid.t must be an array, got list")):
        dp.check_grid(dp.TimeGrid([1.0, 0.0], lam))
    # the exact-zero end is a value check, not a tolerance: 1e-300 is not 0
    with pytest.raises(ValueError, match="grid.t must end at exactly 0.0"):
        dp.check_grid(dp.TimeGrid(np.array([1.0, 1e-300]), np.array([-1.0, 1.0])))


def test_check_grid_skips_value_checks_under_jit():
    backend("jax")
    import jax
    import jax.numpy as jnp

    bad_t = jnp.asarray([0.5, 1.0, 0.0])  # not decreasing: fails the value checks if concrete
    bad_l = jnp.asarray([2.0, 1.0, 0.0])

    @jax.jit
    def first(t, lam):
        return dp.check_grid(dp.TimeGrid(t, lam)).t[0]

    assert float(first(bad_t, bad_l)) == 0.5
    with pytest.raises(ValueError, match="grid.t must be strictly decreasing"):
        dp.check_grid(dp.TimeGrid(bad_t, bad_l))  # concrete jax arrays are checked
    with pytest.raises(ValueError, match=re.escape("grid.t must be 1-D")):  # shapes are static
        jax.jit(lambda t, lam: dp.check_grid(dp.TimeGrid(t, lam)).t)(jnp.ones((2, 2)), bad_l)


def test_sampler_step_protocol_defaults():
    def init(z):
        return ()

    def step(z_t, x_hat, logsnr_t, logsnr_s, noise, state):
        return z_t, state

    s = dp.SamplerStep("toy", init, step)
    assert s.corrector is None and s.stochastic is False and s.requires_finite_start is False
    assert s.order == 1 and s._fields == (
        "name",
        "init",
        "step",
        "corrector",
        "stochastic",
        "requires_finite_start",
        "order",
    )
    assert dp.TimeGrid._fields == ("t", "logsnr")


@pytest.mark.smoke
def test_a_protocol_step_runs_a_chain_on_a_checked_grid():
    """A DDPM step written against the protocol alone (posterior + explicit noise) on a checked grid.

    With data fixed at x and the exact denoiser x̂ = x, the chain's last state is exactly x (the final
    posterior at λ = +inf has zero variance), whatever the noise.
    """

    def init(z):
        return ()

    def step(z_t, x_hat, logsnr_t, logsnr_s, noise, state):
        mean, var = dp.posterior(z_t, x_hat, logsnr_t, logsnr_s)
        return mean + np.sqrt(var) * noise, state

    ancestral = dp.SamplerStep("ancestral", init, step, stochastic=True)
    n = 8
    t = np.linspace(1.0, 0.0, n + 1)
    lam = np.concatenate([[-INF], -2.0 * np.log(np.tan(np.pi * t[1:-1] / 2)), [INF]])
    grid = dp.check_grid(dp.TimeGrid(t, lam))
    x = np.array([0.3, -1.2, 2.0])
    noise = dp.numpy_noise(7, x.shape)
    z, state = noise(0), ancestral.init(noise(0))
    for k in range(grid.n_steps):
        z, state = ancestral.step(z, x, grid.logsnr[k], grid.logsnr[k + 1], noise(k + 1), state)
        assert np.all(np.isfinite(z))
    np.testing.assert_array_equal(z, x)


# --- check 7, second half: every diff_core.grids constructor passes check_grid ------------------


def _diff_core(module: str):
    """Import ``diff_core.<module>``; skip only when diff-core is not installed at all."""
    if importlib.util.find_spec("diff_core") is None:
        pytest.skip("diff-core is not installed")
    return importlib.import_module(f"diff_core.{module}")


def _schedules():
    s = _diff_core("schedules")
    return {
        "cosine": s.CosineSchedule(),
        "cosine_untruncated": s.CosineSchedule(logsnr_min=-INF, logsnr_max=INF),
        "shifted_cosine": s.ShiftedCosineSchedule(resolution=256),
        "shifted_cosine_fixed": s.ShiftedCosineSchedule(resolution=256, clip="fixed_range"),
        "interpolated_cosine": s.InterpolatedCosineSchedule(resolution=256),
        "linear_beta": s.LinearBetaSchedule(),
        "polynomial": s.PolynomialSchedule(),
        "karras": s.KarrasSchedule(),
        "table": s.TableSchedule(logsnr=[12.0, 5.0, 0.5, -3.0, -11.0]),
    }


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_diff_core_grid_constructors_pass_check_grid(n):
    grids = _diff_core("grids")
    for label, schedule in _schedules().items():
        lo, hi = schedule.logsnr_range  # (λ(1), λ(0))
        made = {"uniform_t": grids.uniform_t(schedule, n)}
        if math.isfinite(lo) and math.isfinite(hi):
            made["uniform_logsnr"] = grids.uniform_logsnr(schedule, n)
        made["uniform_logsnr(max)"] = grids.uniform_logsnr(
            schedule, n, logsnr_min=max(lo, -10.0), logsnr_max=min(hi - 0.5, 10.0)
        )
        # EDM's default σ range, narrowed to what the schedule can represent
        sigma_min = max(0.002, math.exp(-hi / 2) * 1.001)
        sigma_max = min(80.0, math.exp(-lo / 2) * 0.999)
        made["karras"] = grids.karras(schedule, n, sigma_min=sigma_min, sigma_max=sigma_max)
        for kind, grid in made.items():
            assert isinstance(grid, dp.TimeGrid), (label, kind)
            dp.check_grid(grid, func=f"{label}/{kind}")
            assert grid.n_steps == n, (label, kind)
            assert grid.t.dtype == np.float64 and grid.logsnr.dtype == np.float64
            assert grid.t[-1] == 0.0
