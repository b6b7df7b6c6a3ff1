"""Property-based bad-input suite for diff-protocol (issue 18).

Every bad input must raise ``TypeError``/``ValueError`` (or a package error class derived from
them) whose message names the argument, says what was expected and what came
(``"<func>: <arg> must be <expected>, got <what came>"``), or return a documented legal result.
Hypothesis runs derandomised (fixed examples on every run); ``N_BAD`` below is the number of bad
inputs the suite tries (the README quotes it).
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
from diff_protocol import checks
from diff_protocol.errors import DrawIndexError

#: Floats without subnormals: another library in the same process (the whole repository's
#: suite runs in one pytest) may set flush-to-zero, and hypothesis then refuses to draw them.
floats = functools.partial(st.floats, allow_subnormal=False)

FAST = settings(derandomize=True, deadline=None, max_examples=20, database=None)
N_PROPERTIES = {}  # name -> max_examples, filled by the decorator below
EXPLICIT_CASES = 24  # the parametrised issue cases below (test_issue_cases)


def counted(n: int):
    """``@settings(derandomize=True, max_examples=n)`` and record ``n`` for the total."""

    def wrap(fn):
        N_PROPERTIES[fn.__name__] = n
        return settings(FAST, max_examples=n)(fn)

    return wrap


def assert_named(fn, arg: str, kinds=(TypeError, ValueError)):
    """``fn()`` raises one of ``kinds`` naming ``arg`` in the project's message form."""
    with pytest.raises(kinds) as info:
        fn()
    msg = str(info.value)
    assert re.search(rf"\b{re.escape(arg)}\b", msg), f"{arg!r} not named in: {msg}"
    assert "must" in msg, msg
    return msg


shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)
int_dtypes = st.sampled_from(["int8", "int16", "int32", "int64", "uint8", "bool"])
finite = floats(-30, 30, allow_nan=False)
levels = floats(-50, 50, allow_nan=False) | st.sampled_from([-math.inf, math.inf])


@given(shape=shapes, dtype=int_dtypes, which=st.sampled_from(["x", "eps"]))
@counted(20)
def test_integer_data_is_refused_not_truncated(shape, dtype, which):
    good = np.ones(shape)
    bad = np.ones(shape, dtype=dtype)
    args = {"x": good, "eps": good, which: bad}
    assert_named(lambda: dp.diffuse(args["x"], args["eps"], 0.0), which, TypeError)
    assert_named(lambda: dp.v_target(args["x"], args["eps"], 0.0), which, TypeError)


@given(x_shape=shapes, eps_shape=shapes)
@counted(25)
def test_mismatched_eps_shape_names_eps(x_shape, eps_shape):
    x, eps = np.zeros(x_shape), np.zeros(eps_shape)
    if x_shape == eps_shape:
        assert dp.diffuse(x, eps, 0.0).shape == x_shape  # legal: same shape
        return
    assert_named(lambda: dp.diffuse(x, eps, 0.0), "eps")
    assert_named(lambda: dp.to_x_eps(eps, x, 0.0, "eps"), "output")


@given(lt=levels, ls=levels, per_example=st.booleans())
@counted(30)
def test_posterior_needs_logsnr_s_above_logsnr_t(lt, ls, per_example):
    z, x = np.zeros((3, 2)), np.ones((3, 2))
    a_t = np.full(3, lt) if per_example else lt
    a_s = np.full(3, ls) if per_example else ls
    if ls > lt:
        mean, var = dp.posterior(z, x, a_t, a_s)
        assert np.all(var >= 0) and np.all(np.isfinite(mean))  # the documented legal result
        return
    assert_named(lambda: dp.posterior(z, x, a_t, a_s), "logsnr_s")


@given(pos=st.integers(0, 3), func=st.sampled_from(["diffuse", "posterior", "to_x_eps"]))
@counted(12)
def test_nan_logsnr_is_named(pos, func):
    lam = np.linspace(-1.0, 1.0, 4)
    lam[pos] = np.nan
    z = np.zeros((4, 2))
    calls = {
        "diffuse": (lambda: dp.diffuse(z, z, lam), "logsnr"),
        "posterior": (lambda: dp.posterior(z, z, lam, lam + 1.0), "logsnr_t"),
        "to_x_eps": (lambda: dp.to_x_eps(z, z, lam, "x"), "logsnr"),
    }
    fn, arg = calls[func]
    assert_named(fn, arg)


@given(prediction=st.text(max_size=6) | st.integers() | st.none())
@counted(20)
def test_bad_prediction_names_prediction(prediction):
    if prediction in dp.PREDICTIONS:
        return
    z = np.zeros((2, 2))
    assert_named(lambda: dp.to_x_eps(z, z, 0.0, prediction), "prediction")
    assert_named(lambda: dp.as_denoiser(lambda z, lam: z, prediction), "prediction")


@given(i=st.integers(-(2**40), 2**40), wrap=st.sampled_from([int, np.int64, np.int32, np.uint8]))
@counted(25)
def test_table_noise_index_out_of_range(i, wrap):
    noise = dp.table_noise(np.zeros((5, 2)))
    try:
        idx = wrap(i)
    except OverflowError:
        return
    if int(idx) != i:  # numpy wrapped the value: that is the index the user passed
        i = int(idx)
    if 0 <= i < 5:
        assert noise(idx).shape == (2,)
        return
    assert_named(lambda: noise(idx), "i", DrawIndexError)


bad_indices = st.one_of(
    st.none(),
    st.booleans(),
    floats(allow_nan=True),
    st.text(max_size=3),
    st.just(np.bool_(True)),
    st.just(np.array([0, 1])),
    st.just(1.0 + 0j),
)


@given(i=bad_indices)
@counted(25)
def test_noise_sources_refuse_non_integer_indices(i):
    assert_named(lambda: dp.table_noise(np.zeros((3, 2)))(i), "i", TypeError)
    assert_named(lambda: dp.numpy_noise(0, (2,))(i), "i", TypeError)


@given(
    seed=st.one_of(st.integers(max_value=-1), floats(), st.booleans(), st.text(max_size=2)),
)
@counted(15)
def test_bad_seeds_are_named(seed):
    assert_named(lambda: dp.numpy_noise(seed, (2,)), "seed")
    assert_named(lambda: dp.derive_seed(seed), "seed")


@given(shape=st.one_of(st.text(min_size=1, max_size=3), st.lists(st.integers(-5, -1), min_size=1)))
@counted(12)
def test_bad_noise_shapes_are_named(shape):
    assert_named(lambda: dp.numpy_noise(0, shape), "shape")


@given(
    case=st.sampled_from(["index_str", "index_neg", "index_float", "dtype", "key"]),
    value=st.integers(1, 10**6),
)
@counted(10)
def test_jax_noise_validates(case, value):
    jax = pytest.importorskip("jax")
    key = jax.random.key(0)
    if case == "index_str":
        assert_named(lambda: dp.jax_noise(key, (2,))(str(value)), "i", TypeError)
    elif case == "index_neg":
        assert_named(lambda: dp.jax_noise(key, (2,))(-value), "i", DrawIndexError)
    elif case == "index_float":
        assert_named(lambda: dp.jax_noise(key, (2,))(value + 0.5), "i", TypeError)
    elif case == "dtype":
        bad = ["complex64", "int32", "bool", "uint8"][value % 4]
        assert_named(lambda: dp.jax_noise(key, (2,), dtype=bad), "dtype", TypeError)
    else:
        assert_named(lambda: dp.jax_noise(np.arange(value % 5), (2,)), "key", TypeError)


@given(
    t=st.lists(floats(-2, 2) | st.just(math.nan), min_size=2, max_size=6),
    shift=floats(-50, 50, allow_nan=False),
)
@counted(25)
def test_malformed_grids_name_the_grid_field(t, shift):
    t = np.asarray(t)
    lam = -10.0 * t + shift
    grid = dp.TimeGrid(t, lam)
    ok_t = np.all(np.isfinite(t)) and t[-1] == 0.0 and t[0] <= 1.0 and np.all(np.diff(t) < 0)
    if ok_t:
        assert dp.check_grid(grid) is grid  # legal: λ is then strictly increasing and finite
        return
    assert_named(lambda: dp.check_grid(grid), "grid.t")


@given(a_shape=shapes, z_shape=shapes)
@counted(20)
def test_expand_like_names_logsnr(a_shape, z_shape):
    a, z = np.zeros(a_shape), np.zeros(z_shape)
    if a_shape == z_shape[: len(a_shape)]:
        assert dp.expand_like(a, z).ndim == len(z_shape)
        return
    assert_named(lambda: dp.expand_like(a, z), "logsnr")


@given(sigma=floats(max_value=-1e-300) | st.just(math.nan), as_array=st.booleans())
@counted(10)
def test_negative_sigma_edm_is_named(sigma, as_array):
    s = np.array([1.0, sigma]) if as_array else sigma
    assert_named(lambda: dp.logsnr_from_sigma_edm(s), "sigma")


@given(text=st.text(max_size=20))
@counted(15)
def test_schedule_from_json_names_text(text):
    try:
        value = __import__("json").loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return  # an object goes on to the registry (tested elsewhere)
    assert_named(lambda: dp.schedule_from_json(text), "text")


@given(value=st.one_of(floats(), st.integers(), st.text(max_size=3), st.none(), st.booleans()))
@counted(20)
def test_check_real_range(value):
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and 0.0 <= float(value) <= 1.0
    )
    if ok:
        assert checks.check_real("f", "eta", value, lo=0.0, hi=1.0) == float(value)
        return
    assert_named(lambda: checks.check_real("f", "eta", value, lo=0.0, hi=1.0), "eta")


def _table():
    return dp.table_noise(np.zeros((4, 2)))


ISSUE_CASES = [
    # 1. reversed or equal noise levels
    (lambda: dp.posterior(np.zeros(3), np.ones(3), 1.0, 0.0), "logsnr_s"),
    (lambda: dp.posterior(np.zeros(3), np.ones(3), 0.5, 0.5), "logsnr_s"),
    (
        lambda: dp.posterior(np.zeros((2, 1)), np.ones((2, 1)), np.array([0.0, 2.0]), 1.0),
        "logsnr_s",
    ),
    (lambda: dp.posterior(np.zeros(3), np.ones(3), math.inf, -math.inf), "logsnr_s"),
    # 2. integer data
    (lambda: dp.diffuse(np.ones((4, 2), np.int64), np.ones((4, 2)), 0.0), "x"),
    (lambda: dp.diffuse(np.ones((4, 2)), np.ones((4, 2), np.int64), 0.0), "eps"),
    (lambda: dp.to_x_eps(np.ones(3, np.int64), np.ones(3), 0.0, "eps"), "output"),
    (lambda: dp.posterior(np.ones(3, np.int32), np.ones(3), 0.0, 1.0), "z_t"),
    # 3. silent broadcasting
    (lambda: dp.diffuse(np.zeros((4, 2)), np.zeros((1, 2)), 0.0), "eps"),
    (lambda: dp.diffuse(np.zeros((4, 2)), np.zeros((4, 3)), 0.0), "eps"),
    (lambda: dp.posterior(np.zeros((4, 2)), np.zeros((1, 2)), 0.0, 1.0), "x"),
    (
        lambda: dp.from_x_eps(np.zeros((4, 2)), np.zeros((2,)), np.zeros((4, 2)), 0.0, "v"),
        "eps_hat",
    ),
    # 4. noise sources
    (lambda: _table()(np.int64(-1)), "i"),
    (lambda: _table()(-1), "i"),
    (lambda: _table()(None), "i"),
    (lambda: _table()(True), "i"),
    (lambda: _table()(4), "i"),
    (lambda: dp.numpy_noise(0, (2,))(True), "i"),
    (lambda: dp.table_noise(np.float64(1.0)), "table"),
    # the rest of the protocol surface
    (lambda: dp.diffuse("x", np.zeros(2), 0.0), "x"),
    (lambda: dp.diffuse(np.zeros(2), np.zeros(2), "0"), "logsnr"),
    (lambda: dp.alpha_sigma("1"), "logsnr"),
    (lambda: dp.as_denoiser(3, "eps"), "fn"),
    (lambda: dp.schedule_from_dict({"name": 3}), "name"),
]
assert len(ISSUE_CASES) == EXPLICIT_CASES


@pytest.mark.parametrize("case", range(len(ISSUE_CASES)))
def test_issue_cases(case):
    fn, arg = ISSUE_CASES[case]
    assert_named(fn, arg)


def test_jax_issue_cases():
    jax = pytest.importorskip("jax")
    key = jax.random.key(0)
    noise = dp.jax_noise(key, (2,))
    assert_named(lambda: noise("0"), "i", TypeError)
    assert_named(lambda: noise(-1), "i", DrawIndexError)
    assert_named(lambda: dp.jax_noise(key, (2,), dtype="complex64"), "dtype", TypeError)
    # traced indices still work inside lax.scan (no value check on tracers)
    out = jax.lax.scan(lambda c, i: (c, noise(i)), 0, jax.numpy.arange(3))[1]
    assert out.shape == (3, 2)
    np.testing.assert_array_equal(np.asarray(out[1]), np.asarray(noise(1)))


def test_value_checks_skip_tracers_but_shapes_still_apply():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    @jax.jit
    def f(z, lt, ls):
        return dp.posterior(z, z, lt, ls)[0]

    # reversed levels inside jit cannot be read: no error, as documented (the driver checks grids)
    assert f(jnp.zeros(2), jnp.asarray(1.0), jnp.asarray(0.0)).shape == (2,)
    with pytest.raises(TypeError, match="x"):
        jax.jit(lambda z: dp.diffuse(z, z.astype(jnp.int32), 0.0))(jnp.zeros(2))


def test_bad_input_count():
    """The README's count: generated examples plus explicit cases."""
    total = sum(N_PROPERTIES.values()) + EXPLICIT_CASES + 5  # + the 5 JAX checks
    assert total == N_BAD, total


N_BAD = 313
