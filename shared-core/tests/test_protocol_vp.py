"""VP maths (diff_protocol.vp): acceptance checks 1-3 of specs/core.md §6 on every backend.

References are computed here in numpy float64 from first principles (logistic function written
out, Gaussian conditioning of the joint of (z_s, z_t) given x), never with the code under test.
JAX runs in float32 (the process-wide x64 flag is left alone), the others in float64.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np
import pytest

import diff_protocol as dp
from diff_protocol.testing import BACKENDS, backend, to_numpy

FLOAT = {"numpy": "float64", "array_api_strict": "float64", "torch": "float64", "jax": "float32"}
PREDICTIONS = ("eps", "v", "x")


def _ref_sigmoid(lam: np.ndarray) -> np.ndarray:
    """Logistic function in float64 without overflow, written independently of the package."""
    lam = np.asarray(lam, dtype=np.float64)
    out = np.empty_like(lam)
    pos = lam >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-lam[pos]))
    e = np.exp(lam[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _ref_alpha_sigma(lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.sqrt(_ref_sigmoid(lam)), np.sqrt(_ref_sigmoid(-np.asarray(lam)))


def _jit(name: str, fn):
    """``fn`` itself, or ``jax.jit(fn)`` on JAX.

    One compilation per test instead of one per eager primitive and shape keeps the JAX
    parametrisations cheap, and checks the traced path users run; eager JAX calls are covered by
    the infinite-end, broadcasting and error tests.
    """
    if name != "jax":
        return fn
    import jax

    return jax.jit(fn)


def _rel(a, b) -> float:
    """max |a - b| / max |b| on the host in float64."""
    a = np.asarray(to_numpy(a), dtype=np.float64)
    b = np.asarray(to_numpy(b), dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# --- check 1: VP identities -------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.smoke
def test_vp_identities_float64(name):
    xp, asarray = backend(name)
    with _float64(name):
        _check_vp_identities_float64(asarray)


def _float64(name: str):
    """float64 for JAX inside a scoped ``enable_x64`` (the process-wide flag is left alone)."""
    if name != "jax":
        return contextlib.nullcontext()
    import jax

    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    return jax.experimental.enable_x64(True)  # jax < 0.5


def _check_vp_identities_float64(asarray) -> None:
    lam_np = np.linspace(-40.0, 40.0, 10_000)
    alpha, sigma = dp.alpha_sigma(asarray(lam_np, "float64"))
    a, s = to_numpy(alpha), to_numpy(sigma)
    assert a.dtype == np.float64 and s.dtype == np.float64
    assert np.max(np.abs(a**2 + s**2 - 1.0)) <= 1e-12
    assert np.max(np.abs(a**2 - _ref_sigmoid(lam_np))) <= 1e-12
    assert np.max(np.abs(s**2 - _ref_sigmoid(-lam_np))) <= 1e-12
    # the public sigmoid/softplus against the independent references
    sig = to_numpy(dp.sigmoid(asarray(lam_np, "float64")))
    assert np.max(np.abs(sig - _ref_sigmoid(lam_np))) <= 1e-12
    sp = to_numpy(dp.softplus(asarray(lam_np, "float64")))
    np.testing.assert_allclose(sp, np.logaddexp(0.0, lam_np), rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("name", BACKENDS)
def test_vp_exact_at_infinite_logsnr(name):
    xp, asarray = backend(name)
    lam = asarray(np.array([np.inf, -np.inf]), FLOAT[name])
    alpha, sigma = dp.alpha_sigma(lam)
    a, s = to_numpy(alpha), to_numpy(sigma)
    # exactly (1, 0) at +inf and (0, 1) at -inf: bitwise, no 0/0 anywhere
    assert a.tolist() == [1.0, 0.0] and s.tolist() == [0.0, 1.0]
    assert to_numpy(dp.sigmoid(lam)).tolist() == [1.0, 0.0]
    assert to_numpy(dp.softplus(lam)).tolist() == [np.inf, 0.0]
    # 0-d inputs as well
    a0, s0 = dp.alpha_sigma(asarray(np.float64(np.inf), FLOAT[name]))
    assert float(to_numpy(a0)) == 1.0 and float(to_numpy(s0)) == 0.0
    assert to_numpy(dp.sigma_edm(lam)).tolist() == [0.0, np.inf]


@pytest.mark.parametrize("name", BACKENDS)
def test_vp_float32_finite_on_wide_range(name):
    xp, asarray = backend(name)
    lam_np = np.linspace(-80.0, 80.0, 10_001)
    lam = asarray(lam_np, "float32")
    alpha, sigma = _jit(name, dp.alpha_sigma)(lam)
    a, s = to_numpy(alpha), to_numpy(sigma)
    assert a.dtype == np.float32 and s.dtype == np.float32
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(s))
    a64, s64 = a.astype(np.float64), s.astype(np.float64)
    lam32 = lam_np.astype(np.float32).astype(np.float64)  # the λ actually evaluated
    assert np.max(np.abs(a64**2 + s64**2 - 1.0)) <= 1e-6
    assert np.max(np.abs(a64**2 - _ref_sigmoid(lam32))) <= 1e-6
    assert np.max(np.abs(s64**2 - _ref_sigmoid(-lam32))) <= 1e-6


@pytest.mark.parametrize("name", BACKENDS)
def test_sigma_edm_round_trip(name):
    xp, asarray = backend(name)
    lam_np = np.linspace(-20.0, 20.0, 401)
    lam = asarray(lam_np, FLOAT[name])
    sig, back = _jit(
        name, lambda lm: (dp.sigma_edm(lm), dp.logsnr_from_sigma_edm(dp.sigma_edm(lm)))
    )(lam)
    a, s = _ref_alpha_sigma(lam_np)
    tol = 1e-12 if FLOAT[name] == "float64" else 1e-5
    assert _rel(to_numpy(sig) / (s / a), np.ones_like(lam_np)) <= tol
    assert np.max(np.abs(to_numpy(back) - lam_np)) <= (1e-12 if tol == 1e-12 else 1e-5) * 20


# --- check 2: conversions ---------------------------------------------------------------------


def _conversion_problem(seed: int = 0, dt: str = "float64", n_lam: int = 36, dim: int = 5):
    """Per-example λ, data x, noise ε and a deliberately wrong model output.

    λ spans [-20, 15] in float64 (spec check 2). float32 (JAX) uses [-5, 5]: outside it the maps
    divide by α or σ < 0.08 and float32 rounding of z alone exceeds the 1e-4 tolerance.
    """
    rng = np.random.default_rng(seed)
    lam = np.linspace(-20.0, 15.0, n_lam) if dt == "float64" else np.linspace(-5.0, 5.0, n_lam)
    x = rng.standard_normal((n_lam, dim))
    eps = rng.standard_normal((n_lam, dim))
    out = rng.standard_normal((n_lam, dim))
    return lam, x, eps, out


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("name", BACKENDS)
def test_conversion_round_trip_and_reconstruction(name, prediction):
    xp, asarray = backend(name)
    dt = FLOAT[name]
    lam_np, x_np, eps_np, out_np = _conversion_problem(dt=dt)
    lam, x, eps, out = (asarray(a, dt) for a in (lam_np, x_np, eps_np, out_np))

    def chain(x, eps, out, lam):
        z = dp.diffuse(x, eps, lam)
        x_hat, eps_hat = dp.to_x_eps(out, z, lam, prediction)
        return z, x_hat, eps_hat, dp.from_x_eps(x_hat, eps_hat, z, lam, prediction)

    z, x_hat, eps_hat, back = _jit(name, chain)(x, eps, out, lam)
    rt_tol, z_tol = (1e-10, 1e-12) if dt == "float64" else (1e-5, 1e-5)
    for b in range(lam_np.shape[0]):  # relative per example
        assert _rel(to_numpy(back)[b], out_np[b]) <= rt_tol, (prediction, lam_np[b])
    # z = α x̂ + σ ε̂ reconstructs the state it came from
    alpha, sigma = _ref_alpha_sigma(lam_np)
    z_np = to_numpy(z).astype(np.float64)
    z_back = alpha[:, None] * to_numpy(x_hat) + sigma[:, None] * to_numpy(eps_hat)
    assert np.max(np.abs(z_back - z_np)) <= z_tol * max(1.0, np.max(np.abs(z_np)))
    # and diffuse itself is z = α x + σ ε
    z_ref = alpha[:, None] * x_np + sigma[:, None] * eps_np
    assert np.max(np.abs(z_np - z_ref)) <= (1e-14 if dt == "float64" else 1e-6) * 4


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("name", BACKENDS)
def test_to_x_eps_formulas(name, prediction):
    """The three affine maps of §2 against the formulas evaluated here in float64."""
    xp, asarray = backend(name)
    dt = FLOAT[name]
    lam_np, _, _, out_np = _conversion_problem(seed=1, dt=dt)
    z_np = np.random.default_rng(2).standard_normal(out_np.shape)
    to_x_eps = _jit(name, lambda o, z, lm: dp.to_x_eps(o, z, lm, prediction))
    x_hat, eps_hat = to_x_eps(asarray(out_np, dt), asarray(z_np, dt), asarray(lam_np, dt))
    a, s = (c[:, None] for c in _ref_alpha_sigma(lam_np))
    if dt == "float32":  # compare with the inputs as the backend saw them
        out_np, z_np = (a.astype(np.float32).astype(np.float64) for a in (out_np, z_np))
    if prediction == "eps":
        ref = ((z_np - s * out_np) / a, out_np)
    elif prediction == "x":
        ref = (out_np, (z_np - a * out_np) / s)
    else:
        ref = (a * z_np - s * out_np, s * z_np + a * out_np)
    tol = 1e-12 if dt == "float64" else 2e-5
    for got, want in zip((x_hat, eps_hat), ref):
        for b in range(lam_np.shape[0]):
            assert _rel(to_numpy(got)[b], want[b]) <= tol, (prediction, lam_np[b])


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("name", BACKENDS)
def test_error_identities(name, prediction):
    """‖ε − ε̂‖² = e^λ‖x − x̂‖² = sigmoid(λ)‖v − v̂‖² per example (within 1e-10 relative)."""
    xp, asarray = backend(name)
    dt = FLOAT[name]
    lam_np, x_np, eps_np, out_np = _conversion_problem(seed=3, dt=dt)
    lam, x, eps, out = (asarray(a, dt) for a in (lam_np, x_np, eps_np, out_np))

    def estimates(x, eps, out, lam):
        z = dp.diffuse(x, eps, lam)
        x_hat, eps_hat = dp.to_x_eps(out, z, lam, prediction)
        return x_hat, eps_hat, dp.from_x_eps(x_hat, eps_hat, z, lam, "v"), dp.v_target(x, eps, lam)

    x_hat, eps_hat, v_hat, v = _jit(name, estimates)(x, eps, out, lam)
    h = {k: to_numpy(a).astype(np.float64) for k, a in dict(x=x, eps=eps, v=v).items()}
    h_hat = {
        k: to_numpy(a).astype(np.float64) for k, a in dict(x=x_hat, eps=eps_hat, v=v_hat).items()
    }
    e_eps = np.sum((h["eps"] - h_hat["eps"]) ** 2, axis=1)
    e_x = np.exp(lam_np) * np.sum((h["x"] - h_hat["x"]) ** 2, axis=1)
    e_v = _ref_sigmoid(lam_np) * np.sum((h["v"] - h_hat["v"]) ** 2, axis=1)
    tol = 1e-10 if dt == "float64" else 1e-4
    assert np.all(e_eps > 0)
    assert np.max(np.abs(e_x / e_eps - 1.0)) <= tol
    assert np.max(np.abs(e_v / e_eps - 1.0)) <= tol
    # the v target itself: v = α ε − σ x
    a, s = (c[:, None] for c in _ref_alpha_sigma(lam_np))
    if dt == "float64":
        assert np.max(np.abs(h["v"] - (a * eps_np - s * x_np))) <= 1e-14 * 4


@pytest.mark.parametrize("name", BACKENDS)
def test_convert_between_all_pairs(name):
    xp, asarray = backend(name)
    dt = FLOAT[name]
    lam_np, _, _, out_np = _conversion_problem(seed=4, dt=dt)
    z_np = np.random.default_rng(5).standard_normal(out_np.shape)
    lam, out, z = asarray(lam_np, dt), asarray(out_np, dt), asarray(z_np, dt)

    def conversions(out, z, lam):
        res = {"ref": dp.to_x_eps(out, z, lam, "v")}
        for dst in PREDICTIONS:
            converted = dp.convert(out, z, lam, "v", dst)
            # a dst-type network giving `converted` implies the same (x̂, ε̂)
            res[dst] = (
                *dp.to_x_eps(converted, z, lam, dst),
                dp.convert(converted, z, lam, dst, "v"),
            )
        return res

    res = {k: [to_numpy(a) for a in v] for k, v in _jit(name, conversions)(out, z, lam).items()}
    x_ref, eps_ref = res["ref"]
    tol = 1e-10 if dt == "float64" else 1e-4
    for dst in PREDICTIONS:
        x2, e2, back = res[dst]
        for b in range(lam_np.shape[0]):
            assert _rel(x2[b], x_ref[b]) <= tol, (dst, lam_np[b])
            assert _rel(e2[b], eps_ref[b]) <= tol, (dst, lam_np[b])
            assert _rel(back[b], out_np[b]) <= tol, (dst, lam_np[b])
    assert dp.convert(out, z, lam, "eps", "eps") is out


# --- check 3: posterior -----------------------------------------------------------------------


def _posterior_from_scratch(z_t, x, lam_t, lam_s):
    """Condition the Gaussian joint of (z_s, z_t) given x on z_t (float64, written out).

    z_s = α_s x + σ_s ε_s and z_t = α_{t|s} z_s + σ_{t|s} ε' with α_{t|s} = α_t/α_s, so given x the
    pair is Gaussian with mean (α_s x, α_t x) and covariance [[σ_s², α_{t|s}σ_s²], [·, σ_t²]].
    """
    a_t, s_t = _ref_alpha_sigma(lam_t)
    a_s, s_s = _ref_alpha_sigma(lam_s)
    cov_ss, cov_tt = s_s**2, s_t**2
    cov_st = (a_t / a_s) * s_s**2
    mean = a_s[:, None] * x + (cov_st / cov_tt)[:, None] * (z_t - a_t[:, None] * x)
    var = cov_ss - cov_st**2 / cov_tt
    return mean, var


def _logsnr_pairs():
    grid = np.linspace(-10.0, 10.0, 9)
    pairs = [(lt, ls) for lt in grid for ls in grid if ls > lt]
    pairs += [(-0.3, -0.3 + 1e-3), (5.0, 5.0 + 1e-6)]  # nearly coincident times
    return np.array(pairs).T


@pytest.mark.parametrize("name", BACKENDS)
def test_posterior_equals_gaussian_conditioning(name):
    xp, asarray = backend(name)
    dt = FLOAT[name]
    lam_t, lam_s = _logsnr_pairs()
    rng = np.random.default_rng(6)
    z_t = rng.standard_normal((lam_t.shape[0], 3))
    x = rng.standard_normal((lam_t.shape[0], 3))
    posterior = _jit(name, dp.posterior)
    mean, var = posterior(asarray(z_t, dt), asarray(x, dt), asarray(lam_t, dt), asarray(lam_s, dt))
    if dt == "float32":
        z_t, x = (a.astype(np.float32).astype(np.float64) for a in (z_t, x))
        lam_t, lam_s = (a.astype(np.float32).astype(np.float64) for a in (lam_t, lam_s))
    ref_mean, ref_var = _posterior_from_scratch(z_t, x, lam_t, lam_s)
    m, v = to_numpy(mean), to_numpy(var)
    assert m.shape == z_t.shape and v.shape == z_t.shape
    assert str(m.dtype) == dt and str(v.dtype) == dt
    tol = 1e-12 if dt == "float64" else 2e-6
    assert np.max(np.abs(m - ref_mean)) <= tol * 4
    assert np.max(np.abs(v - ref_var[:, None])) <= tol


@pytest.mark.parametrize("name", BACKENDS)
def test_posterior_infinite_ends(name):
    xp, asarray = backend(name)
    dt = FLOAT[name]
    rng = np.random.default_rng(7)
    z_np, x_np = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    z, x = asarray(z_np, dt), asarray(x_np, dt)
    # λ_s = +inf: the clean end returns (x, 0) exactly, for any λ_t including -inf
    lam_t = asarray(np.array([-np.inf, -3.0, 0.0, 12.0]), dt)
    lam_s = asarray(np.full(4, np.inf), dt)
    mean, var = _jit(name, dp.posterior)(z, x, lam_t, lam_s)
    assert np.array_equal(to_numpy(mean), to_numpy(x)) and np.all(to_numpy(var) == 0.0)
    # λ_t = -inf: finite, and equal to the prior of z_s given x, (α_s x, σ_s²)
    lam_s_np = np.array([-5.0, 0.0, 2.0, 9.0])
    mean, var = _jit(name, lambda z, x, lm: dp.posterior(z, x, float("-inf"), lm))(
        z, x, asarray(lam_s_np, dt)
    )
    m, v = to_numpy(mean), to_numpy(var)
    assert np.all(np.isfinite(m)) and np.all(np.isfinite(v))
    a_s, s_s = _ref_alpha_sigma(lam_s_np.astype(dt).astype(np.float64))
    tol = 1e-12 if dt == "float64" else 1e-6
    assert np.max(np.abs(m - a_s[:, None] * to_numpy(x))) <= tol
    assert np.max(np.abs(v - (s_s**2)[:, None])) <= tol


def test_posterior_broadcasts_scalar_and_prefix_logsnr():
    rng = np.random.default_rng(8)
    z, x = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    lam_t = np.array([[-1.0, 0.0, 1.0], [2.0, 3.0, 4.0]])  # per frame: prefix (B, F)
    lam_s = lam_t + 0.5
    mean, var = dp.posterior(z, x, lam_t, lam_s)
    for b in range(2):
        for f in range(3):
            m1, v1 = dp.posterior(z[b, f], x[b, f], lam_t[b, f], lam_s[b, f])
            np.testing.assert_array_equal(mean[b, f], m1)
            np.testing.assert_array_equal(var[b, f], v1)
    m_scalar, _ = dp.posterior(z, x, -1.0, 0.5)
    m_arr, _ = dp.posterior(z, x, np.full((2,), -1.0), np.full((2,), 0.5))
    np.testing.assert_array_equal(m_scalar, m_arr)


# --- broadcasting, dtypes and errors ----------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
def test_expand_like_prefix_shapes(name):
    xp, asarray = backend(name)
    z = asarray(np.zeros((4, 3, 2)), FLOAT[name])
    for shape in ((), (4,), (4, 3), (4, 3, 2)):
        a = asarray(np.ones(shape), FLOAT[name])
        assert tuple(dp.expand_like(a, z).shape) == shape + (1,) * (3 - len(shape))
    assert tuple(dp.expand_like(0.5, z).shape) == (1, 1, 1)
    for shape in ((3,), (4, 2), (4, 3, 2, 1), (5,)):
        with pytest.raises(ValueError, match=r"logsnr shape .* must be a prefix of z shape"):
            dp.expand_like(asarray(np.ones(shape), FLOAT[name]), z)


@pytest.mark.parametrize("name", BACKENDS)
def test_logsnr_shape_error_message(name):
    """§3.13: logsnr shape (3,) with z shape (4, 2)."""
    xp, asarray = backend(name)
    z = asarray(np.ones((4, 2)), FLOAT[name])
    lam = asarray(np.zeros(3), FLOAT[name])
    msg = "logsnr shape (3,) must be a prefix of z shape (4, 2)"
    for call in (
        lambda: dp.to_x_eps(z, z, lam, "eps"),
        lambda: dp.diffuse(z, z, lam),
        lambda: dp.v_target(z, z, lam),
        lambda: dp.convert(z, z, lam, "eps", "x"),
    ):
        with pytest.raises(ValueError, match=re.escape(msg)):
            call()
    with pytest.raises(ValueError, match=re.escape("posterior: logsnr_t shape (3,)")):
        dp.posterior(z, z, lam, 1.0)


@pytest.mark.parametrize("name", BACKENDS)
def test_prediction_error_message(name):
    """§3.13: to_x_eps(out, z, l, "epsilon")."""
    xp, asarray = backend(name)
    z = asarray(np.ones((4, 2)), FLOAT[name])
    msg = "to_x_eps: prediction must be one of 'eps', 'v', 'x', got 'epsilon'"
    with pytest.raises(ValueError, match=re.escape(msg)):
        dp.to_x_eps(z, z, 0.0, "epsilon")
    with pytest.raises(ValueError, match=re.escape("from_x_eps: prediction must be one of")):
        dp.from_x_eps(z, z, z, 0.0, "noise")
    with pytest.raises(ValueError, match=re.escape("convert: prediction must be one of")):
        dp.convert(z, z, 0.0, "eps", "score")
    with pytest.raises(ValueError, match=re.escape("got None")):
        dp.check_prediction("f", None)
    assert dp.PREDICTIONS == ("eps", "v", "x")


@pytest.mark.parametrize("name", BACKENDS)
def test_outputs_take_dtype_of_z(name):
    xp, asarray = backend(name)
    rng = np.random.default_rng(9)
    out_np, z_np = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    lam_np = np.array([-2.0, 0.5, 3.0])
    z32, out32 = asarray(z_np, "float32"), asarray(out_np, "float32")
    lam_wide = asarray(lam_np, "float64") if name != "jax" else asarray(lam_np, "float32")

    def outputs(z32, out32, lam_wide):
        res = []
        for lam in (lam_wide, 0.25):  # a float64 logsnr or a Python float never widens z
            for pred in PREDICTIONS:
                res.extend(dp.to_x_eps(out32, z32, lam, pred))
            res.append(dp.diffuse(z32, out32, lam))
            res.extend(dp.posterior(z32, out32, lam, 30.0))
        return res

    for a in _jit(name, outputs)(z32, out32, lam_wide):
        assert to_numpy(a).dtype == np.float32


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_low_precision_state_computed_in_float32(name):
    """A bfloat16 z is upcast for the coefficient maths and the result cast back."""
    xp, asarray = backend(name)
    rng = np.random.default_rng(10)
    out_np, z_np = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    lam = asarray(np.array([-6.0, 0.0, 6.0]), "float32")
    z16, out16 = asarray(z_np, "bfloat16"), asarray(out_np, "bfloat16")
    z32, out32 = xp.astype(z16, xp.float32), xp.astype(out16, xp.float32)
    for pred in PREDICTIONS:
        lo = dp.to_x_eps(out16, z16, lam, pred)
        hi = dp.to_x_eps(out32, z32, lam, pred)
        for a, b in zip(lo, hi):
            assert "bfloat16" in str(a.dtype)
            want = xp.astype(xp.astype(b, xp.bfloat16), xp.float32)
            np.testing.assert_array_equal(to_numpy(xp.astype(a, xp.float32)), to_numpy(want))
