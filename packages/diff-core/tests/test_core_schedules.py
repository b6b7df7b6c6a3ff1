"""Schedules: closed forms, exact ends, inverses, derivatives, serialisation (core.md checks 7-11)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diff_core.schedule_checks import check_schedule
from diff_core.schedules import (
    CosineSchedule,
    InterpolatedCosineSchedule,
    KarrasSchedule,
    LinearBetaSchedule,
    PolynomialSchedule,
    ShiftedCosineSchedule,
    TableSchedule,
)
from diff_protocol import Schedule, schedule_from_dict, schedule_from_json, schedule_to_json
from diff_protocol.testing import BACKENDS, backend, to_numpy

INF = math.inf

ALL_SCHEDULES = [
    CosineSchedule(),
    CosineSchedule(-INF, INF),
    CosineSchedule(-INF, 10.0),
    ShiftedCosineSchedule(256),
    ShiftedCosineSchedule(8, clip="fixed_range"),
    InterpolatedCosineSchedule(256),
    InterpolatedCosineSchedule(256, clip="fixed_range"),
    LinearBetaSchedule(),
    PolynomialSchedule(),
    KarrasSchedule(),
    TableSchedule([6.0, 2.0, -1.0, -7.5]),
    TableSchedule([6.0, 2.0, -1.0, -7.5], t=[0.0, 0.1, 0.7, 1.0]),
]
JIT_CHECKED = {"cosine", "interpolated_cosine", "polynomial", "karras"}


def _cos_closed_form(t: np.ndarray, lmin: float, lmax: float) -> tuple[np.ndarray, np.ndarray]:
    """λ and dλ/dt of the truncated cosine written from the formula (float64, t ≤ ½ side)."""
    u0, u1 = math.atan(math.exp(-lmax / 2)), math.atan(math.exp(-lmin / 2))
    u = u0 + (u1 - u0) * t
    return -2.0 * np.log(np.tan(u)), -4.0 * (u1 - u0) / np.sin(2 * u)


# ------------------------------------------------------------------------------------------------
# check 8: cos±15


@pytest.mark.smoke
def test_cosine_check8_values_inverse_derivative():
    s = CosineSchedule(-15.0, 15.0)
    assert isinstance(s, Schedule)
    ends = s.logsnr(np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(ends, [15.0, 0.0, -15.0], rtol=0, atol=1e-12)
    u0 = math.atan(math.exp(-7.5))
    assert abs(u0 - 5.530843e-4) < 5e-11
    slope0 = -4 * (math.atan(math.exp(7.5)) - u0) / math.sin(2 * u0)
    d0 = float(s.dlogsnr_dt(np.asarray(0.0)))
    assert abs(d0 / slope0 - 1) < 1e-9
    assert abs(d0 - (-5676.1345)) < 5e-5

    t = np.linspace(0.0, 1.0, 10_001)
    lam = s.logsnr(t)
    # the formula itself on the half where tan u ≤ 1 (the other half is its mirror image)
    half = t <= 0.5
    ref, dref = _cos_closed_form(t[half], -15.0, 15.0)
    np.testing.assert_allclose(lam[half], ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(lam[::-1], -lam, rtol=0, atol=1e-12)  # symmetric range
    np.testing.assert_allclose(s.dlogsnr_dt(t[half]), dref, rtol=1e-12)
    assert np.max(np.abs(s.t_of(lam) - t)) <= 1e-12

    tc = np.linspace(0.001, 0.999, 999)
    h = 1e-6
    fd = (s.logsnr(tc + h) - s.logsnr(tc - h)) / (2 * h)
    np.testing.assert_allclose(s.dlogsnr_dt(tc), fd, rtol=1e-6)


def test_cosine_jax_grad_matches_dlogsnr_dt():
    jax = pytest.importorskip("jax")
    s = CosineSchedule(-15.0, 15.0)
    t = np.concatenate([np.linspace(0.001, 0.999, 97), [0.5]])
    t32 = jax.numpy.asarray(t, dtype=jax.numpy.float32)
    grad = jax.jit(jax.vmap(jax.grad(s.logsnr)))(t32)
    assert grad.dtype == jax.numpy.float32
    np.testing.assert_allclose(np.asarray(grad), np.asarray(s.dlogsnr_dt(t32)), rtol=1e-5)


def test_torch_autograd_matches_dlogsnr_dt():
    torch = pytest.importorskip("torch")
    t = np.concatenate([np.linspace(0.001, 0.999, 97), [0.5]])
    for s in (CosineSchedule(-15.0, 15.0), InterpolatedCosineSchedule(64), PolynomialSchedule()):
        tt = torch.tensor(t, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(s.logsnr(tt).sum(), tt)
        np.testing.assert_allclose(g.numpy(), s.dlogsnr_dt(t), rtol=1e-10)


def _run(name, fn, *args):
    """``fn(*args)``; under JAX as one jitted call (one compilation instead of one per op)."""
    if name == "jax":
        import jax

        return jax.jit(fn)(*args)
    return fn(*args)


@pytest.mark.parametrize("name", BACKENDS)
def test_cosine_exact_ends_and_float32_on_every_backend(name):
    xp, asarray = backend(name)
    t = asarray(np.linspace(0.0, 1.0, 4097), "float32")
    t_host = to_numpy(t).astype(np.float64)
    untruncated, truncated = CosineSchedule(-INF, INF), CosineSchedule(-15.0, 15.0)

    def evaluate(t, lam_ends, t2d):
        out = [(s.logsnr(t), s.dlogsnr_dt(t)) for s in (untruncated, truncated)]
        return out, untruncated.t_of(lam_ends), untruncated.logsnr(t2d)

    lam_ends = asarray(np.array([INF, 0.0, -INF]), "float32")
    t2d = asarray(np.array([[0.0, 0.25], [0.75, 1.0]]), "float32")
    out, back, lam2 = _run(name, evaluate, t, lam_ends, t2d)
    for s, (lam, d) in zip((untruncated, truncated), out):
        assert lam.dtype == t.dtype and d.dtype == t.dtype
        got = to_numpy(lam).astype(np.float64)
        if math.isinf(s.logsnr_range[1]):
            assert got[0] == INF and got[-1] == -INF  # exact, never NaN
        assert np.all(np.isfinite(got[1:-1]))
        assert np.all(np.diff(got) <= 0)
        # complementary angle: float32 agrees with float64 all the way to t = 1
        ref = s.logsnr(t_host)
        np.testing.assert_allclose(got[1:-1], ref[1:-1], rtol=2e-6, atol=2e-6)
        dref = s.dlogsnr_dt(t_host)
        np.testing.assert_allclose(to_numpy(d)[1:-1], dref[1:-1], rtol=2e-6)
    back = to_numpy(back)
    assert back[0] == 0.0 and back[2] == 1.0 and abs(back[1] - 0.5) < 1e-7
    assert tuple(lam2.shape) == (2, 2)


@pytest.mark.parametrize("name", BACKENDS)
def test_tables_exact_at_knots_on_every_backend(name):
    xp, asarray = backend(name)
    poly, beta = PolynomialSchedule(), LinearBetaSchedule()

    def evaluate(knots, near_t):
        out = [(s.logsnr(tk), s.t_of(lk)) for s, (tk, lk) in zip((poly, beta), knots)]
        return out, poly.nearest_knot(near_t)

    knots = [
        (asarray(s.t_knots, "float32"), asarray(s.logsnr_knots, "float32")) for s in (poly, beta)
    ]
    near_t = asarray(np.array([0.0004, 0.0005, 0.0015, 0.9996]), "float32")
    out, near = _run(name, evaluate, knots, near_t)
    for s, (lam, back) in zip((poly, beta), out):
        assert back.dtype == lam.dtype == knots[0][0].dtype
        assert np.array_equal(to_numpy(lam), s.logsnr_knots.astype(np.float32))
        assert np.array_equal(to_numpy(back), s.t_knots.astype(np.float32))
    np.testing.assert_array_equal(
        to_numpy(near), poly.logsnr_knots[[0, 0, 2, 1000]].astype(np.float32)
    )


@pytest.mark.parametrize("name", BACKENDS)
def test_float32_inverse_round_trip_on_every_backend(name):
    xp, asarray = backend(name)
    schedules = (
        InterpolatedCosineSchedule(256),
        InterpolatedCosineSchedule(32, resolution_lo=16, clip="fixed_range"),
        KarrasSchedule(),
        ShiftedCosineSchedule(8, clip="fixed_range"),
    )
    t = asarray(np.linspace(0.0, 1.0, 513), "float32")

    def evaluate(t):
        return [s.t_of(s.logsnr(t)) for s in schedules]

    for s, back in zip(schedules, _run(name, evaluate, t)):
        assert back.dtype == t.dtype
        back = to_numpy(back).astype(np.float64)
        assert back[0] == 0.0 and back[-1] == 1.0, s
        np.testing.assert_allclose(back, to_numpy(t), rtol=0, atol=3e-6, err_msg=repr(s))


def test_low_precision_t_is_computed_in_float32():
    torch = pytest.importorskip("torch")
    s = InterpolatedCosineSchedule(128)
    t = torch.linspace(0.01, 0.99, 33, dtype=torch.bfloat16)
    lam = s.logsnr(t)
    assert lam.dtype == torch.bfloat16
    ref = s.logsnr(t.to(torch.float32)).to(torch.bfloat16)
    assert torch.equal(lam, ref)


# ------------------------------------------------------------------------------------------------
# check 9: shifted and interpolated


def test_shifted_cosine_check9_shift_sign():
    t = np.linspace(0.0, 1.0, 1001)
    base = CosineSchedule(-15.0, 15.0).logsnr(t)
    for d, expected in ((256, -2.7725887), (8, +4.1588831)):
        s = ShiftedCosineSchedule(d)
        shift = 2 * math.log(64 / d)
        assert abs(shift - expected) < 5e-8
        np.testing.assert_allclose(s.logsnr(t) - base, shift, rtol=0, atol=1e-12)
        assert s.logsnr_range == (-15.0 + shift, 15.0 + shift)
    # an 8x8 image gets less noise than the 64x64 reference at every t
    assert np.all(ShiftedCosineSchedule(8).logsnr(t) > base)
    fixed = ShiftedCosineSchedule(256, clip="fixed_range")
    np.testing.assert_allclose(fixed.logsnr(np.array([0.0, 1.0])), [15.0, -15.0], atol=1e-12)


@pytest.mark.parametrize(
    ("clip", "expected"),
    [("shift_after", (15.0, -2.0794, -19.1589)), ("fixed_range", (15.0, -2.0751, -15.0))],
)
def test_interpolated_cosine_check9_values(clip, expected):
    s = InterpolatedCosineSchedule(256, clip=clip)
    lam = s.logsnr(np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(lam, expected, rtol=0, atol=1e-4)
    if clip == "shift_after":
        # λ(½) = ½·2 ln(32/256) + ½·0 exactly; λ(1) = −15 + 2 ln(32/256)
        np.testing.assert_allclose(lam[1:], [math.log(32 / 256), -15 + 2 * math.log(32 / 256)])
        t = np.linspace(0.0, 1.0, 1001)
        d_cos = CosineSchedule(-15.0, 15.0).dlogsnr_dt(t)
        np.testing.assert_allclose(
            s.dlogsnr_dt(t), d_cos + 2 * math.log(32 / 256), rtol=0, atol=1e-9
        )


@pytest.mark.parametrize("clip", ["shift_after", "fixed_range"])
def test_check_schedule_passes_for_resolutions(clip):
    for d in (64, 128, 256, 512):
        for s in (InterpolatedCosineSchedule(d, clip=clip), ShiftedCosineSchedule(d, clip=clip)):
            report = check_schedule(s, jit=False)
            assert report["inverse_max_abs"] < 1e-12
            assert report["derivative_max_rel"] < 1e-7


def test_interpolated_inverse_is_differentiable():
    torch = pytest.importorskip("torch")
    s = InterpolatedCosineSchedule(256)
    lam = torch.linspace(-12.0, 12.0, 9, dtype=torch.float64, requires_grad=True)
    t = s.t_of(lam)
    (g,) = torch.autograd.grad(t.sum(), lam)
    np.testing.assert_allclose(g.numpy(), 1.0 / s.dlogsnr_dt(t.detach().numpy()), rtol=1e-9)


# ------------------------------------------------------------------------------------------------
# check 10: tables and Karras


def test_linear_beta_check10():
    s = LinearBetaSchedule()
    betas = np.linspace(1e-4, 0.02, 1000)
    abar = np.cumprod(1.0 - betas)
    lk = np.log(abar) - np.log1p(-abar)
    knots = np.arange(1000) / 999
    np.testing.assert_allclose(s.logsnr(knots), lk, rtol=0, atol=1e-12)
    assert abs(float(s.logsnr(np.asarray(0.0))) - math.log(9999)) < 1e-12
    assert abs(math.log(9999) - 9.2102404) < 1e-6
    assert abs(float(s.logsnr(np.asarray(1.0))) - (-10.117673)) < 1e-6
    # linear in λ between knots; a DDPM integer timestep k sits at t = k/(T − 1)
    mid = (knots[:-1] + knots[1:]) / 2
    np.testing.assert_allclose(s.logsnr(mid), (lk[:-1] + lk[1:]) / 2, rtol=0, atol=1e-12)
    assert np.array_equal(s.t_of(lk), knots)  # inverse exact at the knots


def _edm3d_alphas2(timesteps: int, s: float, power: float) -> np.ndarray:
    """EDM3D's official construction (ehoogeboom/e3_diffusion_for_molecules), from its maths."""
    steps = timesteps + 1
    x = np.linspace(0, steps, steps)
    alphas2 = (1 - np.power(x / steps, power)) ** 2
    alphas2 = np.concatenate([np.ones(1), alphas2])
    step = np.clip(alphas2[1:] / alphas2[:-1], 0.001, 1.0)
    return (1 - 2 * s) * np.cumprod(step) + s


def test_polynomial_check10_and_edm3d_table():
    s = PolynomialSchedule()
    lam = s.logsnr(np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(lam, [11.512915, 0.2513093, -11.512516], rtol=0, atol=1e-6)
    # the official formula forms 1 − α² = s by cancellation: ~1e-11 from ln((1 − s)/s)
    assert abs(lam[0] - math.log((1 - 1e-5) / 1e-5)) < 1e-10
    # α²_500 = (1 − 2s)(1 − ½²)² + s = 0.56249875 (core.md's "0.56250875/0.43749125" swaps two
    # digits; its value 0.2513093 and edm3d.md's γ_500 = −0.251309 are this one)
    assert abs(lam[1] - math.log(0.56249875 / 0.43750125)) < 1e-10
    alphas2 = _edm3d_alphas2(1000, 1e-5, 2.0)
    gamma_official = -(np.log(alphas2) - np.log(1 - alphas2))
    gamma = -s.logsnr_knots
    np.testing.assert_allclose(gamma, gamma_official, rtol=0, atol=1e-9)
    table = {0: -11.512915, 1: -11.330595, 10: -8.468260, 100: -3.896443, 250: -1.982042,
             500: -0.251309, 750: 1.440859, 900: 3.284428, 999: 11.176731, 1000: 11.512516}  # fmt: skip
    for k, g in table.items():
        assert abs(gamma[k] - g) < 1e-6, k
        assert abs(-float(s.logsnr(np.asarray(k / 1000))) - g) < 1e-6
    assert abs(math.sqrt(1 / (1 + math.exp(-gamma[0]))) - 3.162278e-3) < 1e-9  # sigma_0
    assert abs(1 / (1 + math.exp(gamma[1000])) - 1.0004e-5) < 1e-9  # alpha2_T
    steps = np.diff(gamma)
    assert np.all(steps > 0) and int(np.argmin(steps)) == 509
    assert abs(steps.min() - 0.006092) < 1e-6
    snr = np.exp(-gamma)
    assert abs(np.sum(snr[:-1] / snr[1:] - 1) - 24.906605) < 1e-5
    assert abs(gamma[0] / 2 + 0.5 * math.log(2 * math.pi) - (-4.837519)) < 1e-6
    # t_of(logsnr_k) is exactly k/T; nearest_knot is round(t·T) half to even
    assert np.array_equal(s.t_of(s.logsnr_knots), np.arange(1001) / 1000)
    t = np.array([0.0, 0.0004, 0.0005, 0.0006, 0.0015, 0.5004, 1.0])
    np.testing.assert_array_equal(s.nearest_knot(t), s.logsnr_knots[[0, 0, 0, 1, 2, 500, 1000]])


def test_karras_check10():
    s = KarrasSchedule()
    lam = s.logsnr(np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(lam, [12.429216, -1.844720, -8.764053], rtol=0, atol=1e-6)
    assert abs(lam[0] + 2 * math.log(0.002)) < 1e-12 and abs(lam[2] + 2 * math.log(80)) < 1e-12
    # EDM's σ grid at uniform t: σ_i = (σmax^{1/ρ} + i/(n−1)(σmin^{1/ρ} − σmax^{1/ρ}))^ρ
    n = 18
    sig = (80 ** (1 / 7) + np.arange(n) / (n - 1) * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    t = 1 - np.arange(n) / (n - 1)
    np.testing.assert_allclose(np.exp(-s.logsnr(t) / 2), sig, rtol=1e-12)
    np.testing.assert_allclose(s.t_of(-2 * np.log(sig)), t, rtol=0, atol=1e-12)


def test_table_schedule_interpolates_and_inverts():
    s = TableSchedule([6.0, 2.0, -1.0, -7.5], t=[0.0, 0.1, 0.7, 1.0])
    t = np.array([0.0, 0.05, 0.1, 0.4, 0.7, 0.85, 1.0])
    np.testing.assert_allclose(s.logsnr(t), [6.0, 4.0, 2.0, 0.5, -1.0, -4.25, -7.5], atol=1e-14)
    np.testing.assert_allclose(s.t_of(np.array([6.0, 4.0, 0.5, -4.25, -7.5])), t[[0, 1, 3, 5, 6]])
    # derivative: the slope of the segment containing t, the right one at an interior knot
    np.testing.assert_allclose(
        s.dlogsnr_dt(np.array([0.0, 0.1, 0.5, 0.7, 1.0])), [-40.0, -5.0, -5.0, -65 / 3, -65 / 3]
    )
    assert TableSchedule([1.0, 0.0, -1.0]).logsnr(np.asarray(0.25)) == 0.5


# ------------------------------------------------------------------------------------------------
# checks 7 (schedule part) and 11


@pytest.mark.parametrize("s", ALL_SCHEDULES, ids=lambda s: repr(s)[:60])
def test_check_schedule_every_schedule(s):
    # jit (one XLA compilation each) on a representative subset when JAX is installed
    want_jit = s.name in JIT_CHECKED and math.isinf(s.logsnr_range[0]) == (s.name == "cosine")
    report = check_schedule(s, jit=None if want_jit else False)
    assert report["inverse_max_abs"] <= 1e-12
    assert report["derivative_max_rel"] <= 1e-7
    if "jit_logsnr_max_rel" in report:
        assert report["jit_logsnr_max_rel"] < 1e-5


@pytest.mark.parametrize("s", ALL_SCHEDULES, ids=lambda s: repr(s)[:60])
def test_json_round_trip_bitwise(s):
    text = schedule_to_json(s)
    assert "Infinity" not in text and "NaN" not in text
    restored = schedule_from_json(text)
    assert restored == s and hash(restored) == hash(s) and type(restored) is type(s)
    t = np.linspace(0.0, 1.0, 1000)
    assert np.array_equal(restored.logsnr(t), s.logsnr(t))
    assert schedule_from_dict(s.to_dict()) == s


def test_untruncated_cosine_json_text():
    text = schedule_to_json(CosineSchedule(-INF, INF))
    assert '"-inf"' in text and '"inf"' in text
    assert CosineSchedule(-INF, INF).logsnr_range == (-INF, INF)


def test_immutable_and_hashable_by_value():
    a, b = InterpolatedCosineSchedule(128), InterpolatedCosineSchedule(128, 32, None)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != InterpolatedCosineSchedule(128, clip="fixed_range")
    with pytest.raises(AttributeError):
        a.resolution = 64
    with pytest.raises(AttributeError):
        del a.resolution
    assert CosineSchedule(-5, 5).to_dict() == {
        "name": "cosine",
        "logsnr_min": -5.0,
        "logsnr_max": 5.0,
    }


# ------------------------------------------------------------------------------------------------
# §3.13 bad input


def test_error_messages_of_core_spec_rows():
    with pytest.raises(ValueError) as e:
        CosineSchedule(logsnr_min=5, logsnr_max=-5)
    assert str(e.value) == "CosineSchedule: logsnr_min must be < logsnr_max, got 5.0 >= -5.0"
    with pytest.raises(ValueError) as e:
        CosineSchedule().logsnr(np.array([1.2]))
    assert str(e.value) == "CosineSchedule.logsnr: t must lie in [0, 1], got max 1.2"
    with pytest.raises(TypeError) as e:
        schedule_from_dict({"name": "cosine", "foo": 1})
    assert str(e.value) == "schedule_from_dict: unknown key 'foo' for 'cosine'"


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: CosineSchedule(float("nan"), 1.0), "logsnr_min must be a real number"),
        (lambda: ShiftedCosineSchedule(0), "resolution must be an integer >= 1, got 0"),
        (lambda: ShiftedCosineSchedule(64.5), "resolution must be an integer"),
        (lambda: ShiftedCosineSchedule(64, clip="after"), "clip must be one of"),
        (lambda: InterpolatedCosineSchedule(1, resolution_lo=64), "must keep logsnr strictly"),
        (lambda: LinearBetaSchedule(timesteps=1), "timesteps must be an integer >= 2, got 1"),
        (lambda: LinearBetaSchedule(beta_start=0.1, beta_end=0.01), "0 < beta_start < beta_end"),
        (lambda: PolynomialSchedule(precision=0.5), "precision must satisfy 0 < precision < 0.5"),
        (lambda: KarrasSchedule(sigma_min=80.0, sigma_max=1.0), "0 < sigma_min < sigma_max"),
        (lambda: KarrasSchedule(rho=0.0), r"rho must be in \[0.1, 1000\]"),
        (lambda: TableSchedule([1.0, 2.0]), "strictly decreasing"),
        (lambda: TableSchedule([1.0, -INF]), "must be finite"),
        (lambda: TableSchedule([1.0, 0.0], t=[0.0, 0.9]), "exactly 0.0 to exactly 1.0"),
    ],
)
def test_constructor_validation(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_evaluation_validation():
    s = CosineSchedule()
    with pytest.raises(
        ValueError, match=r"CosineSchedule.logsnr: t must lie in \[0, 1\], got min -0.1"
    ):
        s.logsnr(np.array([0.5, -0.1]))
    with pytest.raises(ValueError, match="got nan"):
        s.dlogsnr_dt(np.array([np.nan]))
    with pytest.raises(
        ValueError, match=r"CosineSchedule.t_of: logsnr must lie in \[-15, 15\], got max 20"
    ):
        s.t_of(np.array([20.0]))
    with pytest.raises(TypeError, match="t must be a real floating array, got dtype int64"):
        s.logsnr(np.array([0, 1]))
    with pytest.raises(ValueError, match="PolynomialSchedule.nearest_knot: t must lie"):
        PolynomialSchedule().nearest_knot(np.array([1.5]))
    # a few ulps past an end map to that end
    assert s.t_of(np.asarray(np.nextafter(15.0, 16.0))) == 0.0
    assert float(s.logsnr(0.5)) == pytest.approx(0.0, abs=1e-15)  # Python floats accepted


def test_value_checks_skipped_only_under_tracing():
    jax = pytest.importorskip("jax")
    s = CosineSchedule()
    with pytest.raises(ValueError, match="got max 1.5"):
        s.logsnr(jax.numpy.asarray([1.5]))  # concrete JAX arrays are checked
    out = jax.jit(s.logsnr)(jax.numpy.asarray([0.25, 1.5]))  # traced: no host read, no error
    assert np.isfinite(float(out[0]))


def test_interpolated_below_low_reference_shifts_up_linearly():
    """SiD2 at d = 16 (pixel.md §6.1): λ = λ_cos + 2t·ln(32/16), strictly decreasing."""
    s = InterpolatedCosineSchedule(16, resolution_lo=32)
    base = CosineSchedule(-15.0, 15.0)
    t = np.linspace(0.0, 1.0, 101)
    np.testing.assert_allclose(s.logsnr(t) - base.logsnr(t), 2 * t * np.log(2.0), atol=1e-12)
    assert np.all(np.diff(s.logsnr(t)) < 0)
    check_schedule(s)
