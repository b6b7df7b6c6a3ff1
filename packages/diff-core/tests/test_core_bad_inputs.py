"""Property-based bad-input suite for diff-core (issue 18).

Every bad input must raise ``TypeError``/``ValueError`` (or a diff-protocol error class derived
from them) naming the argument, or return a documented legal result. Hypothesis runs
derandomised; ``N_BAD`` is the number of bad inputs tried (generated examples plus explicit
cases), quoted in the README.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import diff_protocol as dp
from diff_core import (
    KarrasSchedule,
    PolynomialSchedule,
    TableSchedule,
    diffusion_loss,
    grids,
    metrics,
    sample,
    transitions,
    weighting,
)
from diff_core.samplers import ddim, ddpm, dpmpp_2m, euler, heun
from diff_core.schedules import RHO_RANGE, CosineSchedule

#: Floats without subnormals: another library in the same process (the whole repository's
#: suite runs in one pytest) may set flush-to-zero, and hypothesis then refuses to draw them.
floats = functools.partial(st.floats, allow_subnormal=False)

FAST = settings(derandomize=True, deadline=None, max_examples=20, database=None)
N_PROPERTIES: dict[str, int] = {}
EXPLICIT_CASES = 30


def counted(n: int):
    def wrap(fn):
        N_PROPERTIES[fn.__name__] = n
        return settings(FAST, max_examples=n)(fn)

    return wrap


def assert_named(fn, arg: str, kinds=(TypeError, ValueError)):
    with pytest.raises(kinds) as info:
        fn()
    msg = str(info.value)
    assert re.search(rf"(^|[^\w]){re.escape(arg)}\b", msg), f"{arg!r} not named in: {msg}"
    assert "must" in msg, msg
    return msg


def _steps():
    """Every step diff-core registers under diff.samplers, in each configuration."""
    return {
        "ddpm": ddpm(),
        "ddpm_gamma": ddpm(0.5),
        "ddim": ddim(),
        "ddim_eta": ddim(0.5),
        "euler_sigma": euler("sigma"),
        "euler_logsnr": euler("logsnr"),
        "heun_sigma": heun("sigma"),
        "heun_logsnr": heun("logsnr"),
        "dpmpp_2m": dpmpp_2m(),
    }


STEP_NAMES = sorted(_steps())
levels = floats(-20, 20, allow_nan=False)


def test_every_registered_diff_core_sampler_is_covered():
    names = {n for n, target in dp.available("diff.samplers").items() if "diff_core" in target}
    assert names <= {"ddpm", "ddim", "euler", "heun", "dpmpp_2m"}, names


@given(name=st.sampled_from(STEP_NAMES), lt=levels, gap=floats(0, 20), arrays=st.booleans())
@counted(30)
def test_steps_refuse_reversed_or_equal_levels(name, lt, gap, arrays):
    step = _steps()[name]
    z, x = np.zeros((3, 2)), np.ones((3, 2))
    ls = lt - gap  # logsnr_s <= logsnr_t: reversed or equal
    a_t, a_s = (np.full(3, lt), np.full(3, ls)) if arrays else (lt, ls)
    noise = np.zeros((3, 2)) if step.stochastic else None
    assert_named(lambda: step.step(z, x, a_t, a_s, noise, step.init(z)), "logsnr_s")
    if step.corrector is not None:
        assert_named(lambda: step.corrector(z, x, z, x, a_t, a_s, ()), "logsnr_s")


@given(
    name=st.sampled_from(STEP_NAMES),
    dtype=st.sampled_from(["int32", "int64", "bool", "uint8"]),
    which=st.sampled_from(["z_t", "x_hat"]),
)
@counted(25)
def test_steps_refuse_integer_states(name, dtype, which):
    step = _steps()[name]
    good = np.zeros((3, 2))
    bad = np.zeros((3, 2), dtype=dtype)
    z, x = (bad, good) if which == "z_t" else (good, bad)
    noise = np.zeros((3, 2)) if step.stochastic else None
    assert_named(lambda: step.step(z, x, -1.0, 1.0, noise, step.init(good)), which, TypeError)


@given(
    name=st.sampled_from(["ddpm", "ddpm_gamma", "ddim_eta"]),
    shape=st.sampled_from([(1, 2), (3,), (3, 1), (2, 2)]),
)
@counted(12)
def test_stochastic_steps_refuse_broadcast_noise(name, shape):
    step = _steps()[name]
    z = np.zeros((3, 2))
    assert_named(lambda: step.step(z, z, -1.0, 1.0, np.zeros(shape), ()), "noise")


bad_numbers = st.one_of(
    floats().filter(lambda v: not 0.0 <= v <= 1.0),
    st.just(np.array(0.5)),
    st.lists(floats(0, 1), max_size=2),
    st.text(max_size=3),
    st.booleans(),
    st.none(),
)


@given(value=bad_numbers, factory=st.sampled_from(["ddim", "ddpm"]))
@counted(25)
def test_sampler_factories_validate_before_caching(value, factory):
    arg = "eta" if factory == "ddim" else "gamma"
    fn = ddim if factory == "ddim" else ddpm
    assert_named(lambda: fn(value), arg)


@given(
    value=st.one_of(
        st.lists(st.text(max_size=5), max_size=2), st.integers(), st.none(), st.text(max_size=6)
    )
)
@counted(15)
def test_ode_factories_validate_variable(value):
    if value in ("sigma", "logsnr"):
        assert euler(value) is euler(value)
        return
    assert_named(lambda: euler(value), "variable")
    assert_named(lambda: heun(value), "variable")


@given(
    clip=st.one_of(floats(max_value=0.0), st.just(math.inf), st.just(math.nan), st.text(max_size=2))
)
@counted(12)
def test_clip_x_is_named(clip):
    assert_named(lambda: ddim(clip_x=clip), "clip_x")


@given(lt=levels, gap=floats(0, 20))
@counted(15)
def test_transitions_refuse_reversed_levels(lt, gap):
    z, x = np.zeros((2, 2)), np.ones((2, 2))
    ls = lt - gap
    assert_named(lambda: transitions.posterior_sample(z, x, lt, ls, z), "logsnr_s")
    assert_named(lambda: transitions.inv_ddim(x, z, lt, ls), "logsnr_s")


@given(slope=floats(min_value=0.0) | st.just(math.nan), as_array=st.booleans())
@counted(15)
def test_diffusion_loss_refuses_non_negative_slope(slope, as_array):
    x = np.ones((4, 2))
    s = np.full(4, slope) if as_array else slope
    w = weighting.elbo()
    assert_named(
        lambda: diffusion_loss(x, x, x, np.zeros(4), s, prediction="eps", weighting=w), "dlogsnr_dt"
    )


@given(
    which=st.sampled_from(["output", "x", "eps"]), dtype=st.sampled_from(["int64", "int32", "bool"])
)
@counted(9)
def test_diffusion_loss_refuses_integer_arrays(which, dtype):
    arrs = {"output": np.ones((4, 2)), "x": np.ones((4, 2)), "eps": np.ones((4, 2))}
    arrs[which] = arrs[which].astype(dtype)
    assert_named(
        lambda: diffusion_loss(
            arrs["output"],
            arrs["x"],
            arrs["eps"],
            0.0,
            prediction="eps",
            weighting=weighting.eps_mse(),
        ),
        which,
        TypeError,
    )


@given(power=floats(5.5, 1e12) | floats(max_value=0.0) | st.just(math.nan))
@counted(15)
def test_polynomial_power(power):
    assert_named(lambda: PolynomialSchedule(timesteps=1000, power=power), "power")


@given(rho=floats(allow_nan=True, allow_infinity=True))
@counted(25)
def test_karras_rho_range_or_a_good_schedule(rho):
    lo, hi = RHO_RANGE
    if not lo <= rho <= hi:
        assert_named(lambda: KarrasSchedule(rho=rho), "rho")
        assert_named(lambda: grids.karras(CosineSchedule(), 4, rho=rho), "rho")
        return
    lam = KarrasSchedule(rho=rho).logsnr(np.linspace(0.0, 1.0, 33))
    assert np.all(np.isfinite(lam)) and np.all(np.diff(lam) < 0)  # the documented legal result


@given(values=st.lists(floats(-1e308, 1e308), min_size=2, max_size=5))
@counted(20)
def test_table_schedule_values(values):
    lk = np.asarray(values)
    with np.errstate(over="ignore", invalid="ignore"):
        ok = np.all(np.isfinite(np.diff(lk))) and np.all(np.diff(lk) < 0)
    if not ok:
        assert_named(lambda: TableSchedule(values), "logsnr")
        return
    lam = TableSchedule(values).logsnr(np.linspace(0.0, 1.0, 17))
    assert np.all(np.isfinite(lam))


@given(t=floats(allow_nan=True).filter(lambda v: not 0.0 <= v <= 1.0), as_array=st.booleans())
@counted(15)
def test_schedule_times_outside_unit_interval(t, as_array):
    s = CosineSchedule()
    tt = np.array([0.5, t]) if as_array else t
    assert_named(lambda: s.logsnr(tt), "t")


@given(neg=floats(1e-6, 1e3), d=st.integers(1, 4), k=st.integers(0, 3))
@counted(15)
def test_frechet_refuses_non_psd_covariance(neg, d, k):
    cov = np.eye(d)
    cov[k % d, k % d] = -neg
    x = np.random.default_rng(0).normal(size=(50, d))
    assert_named(lambda: metrics.frechet_distance_to(x, np.zeros(d), cov), "cov")


@given(
    d=st.integers(1, 4), k=st.integers(0, 3), bad=st.sampled_from([math.nan, math.inf, -math.inf])
)
@counted(12)
def test_frechet_refuses_non_finite_means(d, k, bad):
    mean = np.zeros(d)
    mean[k % d] = bad
    x = np.random.default_rng(0).normal(size=(50, d))
    assert_named(lambda: metrics.frechet_distance_to(x, mean, np.eye(d)), "mean")


@given(
    callback=st.one_of(
        st.text(max_size=5), st.integers(), floats(), st.lists(st.integers(), max_size=1)
    )
)
@counted(15)
def test_sample_refuses_non_callable_callback_up_front(callback):
    calls = []

    def den(z, lam):
        calls.append(1)
        return z

    d = dp.as_denoiser(den, "x")
    grid = grids.uniform_t(CosineSchedule(), 4)
    assert_named(
        lambda: sample(d, ddim(), grid, dp.numpy_noise(0, (2, 2)), callback=callback), "callback"
    )
    assert not calls  # refused before the first denoiser evaluation


@given(k=st.integers(0, 3), bad=st.sampled_from([math.nan, math.inf, -math.inf]))
@counted(12)
def test_sample_names_non_finite_z_init(k, bad):
    z0 = np.zeros((2, 2))
    z0.reshape(-1)[k] = bad
    d = dp.as_denoiser(lambda z, lam: z, "x")
    grid = grids.uniform_t(CosineSchedule(), 4)
    assert_named(lambda: sample(d, ddim(), grid, None, z_init=z0), "z_init")


@given(
    arg=st.sampled_from(["progress", "return_trajectory", "check_finite", "grad"]),
    value=st.one_of(st.integers(0, 1), st.text(max_size=2), st.none()),
)
@counted(15)
def test_sample_flags_are_booleans(arg, value):
    d = dp.as_denoiser(lambda z, lam: z, "x")
    grid = grids.uniform_t(CosineSchedule(), 2)
    assert_named(lambda: sample(d, ddim(), grid, dp.numpy_noise(0, (2,)), **{arg: value}), arg)


@given(n=st.one_of(st.integers(max_value=0), floats(), st.text(max_size=2), st.booleans()))
@counted(12)
def test_grid_sizes(n):
    assert_named(lambda: grids.uniform_t(CosineSchedule(), n), "n")


@given(
    value=st.one_of(
        floats(max_value=0.0), st.just(math.nan), st.just(math.inf), st.text(max_size=2)
    )
)
@counted(12)
def test_weighting_parameters(value):
    assert_named(lambda: weighting.edm(value), "sigma_data")
    assert_named(lambda: weighting.min_snr(value), "gamma")


def _sample_with(**kw):
    d = dp.as_denoiser(lambda z, lam: z, "x")
    return sample(d, ddim(), grids.uniform_t(CosineSchedule(), 2), dp.numpy_noise(0, (2,)), **kw)


_Z = np.zeros((3, 2))
ISSUE_CASES = [
    # 1. reversed levels in steps and transitions
    (lambda: transitions.posterior_sample(_Z, _Z, 1.0, 0.0, _Z), "logsnr_s"),
    (lambda: ddpm().step(_Z, _Z, 1.0, 0.0, _Z), "logsnr_s"),
    (lambda: ddim().step(_Z, _Z, 1.0, 0.0, None), "logsnr_s"),
    (lambda: ddim(0.5).step(_Z, _Z, 1.0, 0.0, _Z), "logsnr_s"),
    (lambda: euler().step(_Z, _Z, 1.0, 0.0, None), "logsnr_s"),
    (lambda: heun().step(_Z, _Z, 1.0, 0.0, None), "logsnr_s"),
    (lambda: dpmpp_2m().step(_Z, _Z, 1.0, 0.0, None, dpmpp_2m().init(_Z)), "logsnr_s"),
    (lambda: ddim().step(_Z, _Z, np.array([0.0, 2.0, 0.0]), 1.0, None), "logsnr_s"),
    # 2. integer arrays
    (lambda: ddim().step(_Z.astype(np.int64), _Z, 0.0, 1.0, None), "z_t"),
    (lambda: ddim().step(_Z, _Z.astype(np.int64), 0.0, 1.0, None), "x_hat"),
    (
        lambda: diffusion_loss(
            np.ones((4, 2), np.int64),
            np.ones((4, 2)),
            np.ones((4, 2)),
            0.0,
            prediction="x",
            weighting=weighting.eps_mse(),
        ),
        "output",
    ),
    # 5. schedules
    (lambda: PolynomialSchedule(power=1e6), "power"),
    (lambda: KarrasSchedule(rho=1e308), "rho"),
    (lambda: KarrasSchedule(rho=1e-3), "rho"),
    (lambda: KarrasSchedule(rho=0.01), "rho"),
    (lambda: grids.karras(CosineSchedule(), 8, rho=1e-4), "rho"),
    (lambda: TableSchedule([1e308, -1e308]), "logsnr"),
    # 6. metrics
    (
        lambda: metrics.frechet_distance_to(
            np.ones((9, 2)) * np.arange(9)[:, None], np.zeros(2), -np.eye(2)
        ),
        "cov",
    ),
    (
        lambda: metrics.frechet_distance_to(
            np.ones((9, 2)) * np.arange(9)[:, None], np.array([np.nan, 0.0]), np.eye(2)
        ),
        "mean",
    ),
    (lambda: metrics.frechet_distance_gaussians([0, 0], [[1, 2], [0, 1]], [0, 0], np.eye(2)), "c1"),
    # 7. sign of dλ/dt
    (
        lambda: diffusion_loss(
            _Z + 1, _Z, _Z, np.zeros(3), 1.0, prediction="eps", weighting=weighting.elbo()
        ),
        "dlogsnr_dt",
    ),
    # 8. factories given arrays or lists
    (lambda: ddim(np.array(0.5)), "eta"),
    (lambda: euler(["sigma"]), "variable"),
    (lambda: ddpm([0.5]), "gamma"),
    (lambda: heun(np.array("sigma")), "variable"),
    # 9. the driver
    (lambda: _sample_with(callback="print"), "callback"),
    (lambda: _sample_with(z_init=np.full(2, np.nan)), "z_init"),
    (lambda: _sample_with(z_init=np.zeros(2, np.int64)), "z_init"),
    (lambda: _sample_with(x_clip=-1.0), "x_clip"),
    (lambda: _sample_with(final=None), "final"),
]
assert len(ISSUE_CASES) == EXPLICIT_CASES


@pytest.mark.parametrize("case", range(len(ISSUE_CASES)))
def test_issue_cases(case):
    fn, arg = ISSUE_CASES[case]
    assert_named(fn, arg)


def test_driver_still_accepts_good_input_and_factories_still_cache():
    assert ddim(0) is ddim(0.0) and ddpm() is ddpm(0.0) and euler() is euler("sigma")
    x = _sample_with()
    assert x.shape == (2,) and np.all(np.isfinite(x))


def test_bad_input_count():
    total = sum(N_PROPERTIES.values()) + EXPLICIT_CASES
    assert total == N_BAD, total


N_BAD = 356
