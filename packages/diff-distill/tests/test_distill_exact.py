"""Tier (a) exact checks 1-3 and 6-8 of distill.md §12.1: the posterior step, the time pairs, the
moment-matching identity on a 1-D Gaussian, the auxiliary's minimiser and the parameter-space
identities (float64 where the spec says so, under a scoped ``jax.enable_x64``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import diff_pixel
from diff_core import samplers, transitions
from diff_core.schedules import CosineSchedule
from diff_distill import (
    ParametricTeacher,
    aux_loss,
    param_space_direction,
    param_space_surrogate,
    posterior_sample,
    sample_time_pairs,
    student_surrogate,
    teacher_loss_grad,
)
from diff_protocol import alpha_sigma, posterior

SCHED = CosineSchedule(-15.0, 15.0)


def _as(lam):
    a, s = alpha_sigma(jnp.asarray(lam, jnp.float64))
    return a, s


# -- check 1 ---------------------------------------------------------------------------------------
@pytest.mark.smoke
def test_posterior_sample_is_the_posterior_and_diff_core_step():
    with jax.enable_x64(True):
        grid = np.linspace(-15.0, 15.0, 20)
        lt, ls = np.meshgrid(grid, grid, indexing="ij")
        keep = ls > lt
        lt, ls = jnp.asarray(lt[keep]), jnp.asarray(ls[keep])
        rng = np.random.default_rng(0)
        n = lt.shape[0]
        z_t = jnp.asarray(rng.standard_normal((n, 3)))
        x = jnp.asarray(rng.standard_normal((n, 3)))
        noise = jnp.asarray(rng.standard_normal((n, 3)))
        z_s = posterior_sample(z_t, x, lt, ls, noise, eta=1.0)
        mean, var = posterior(z_t, x, lt, ls)
        np.testing.assert_allclose(z_s, mean + jnp.sqrt(var) * noise, rtol=0, atol=1e-12)
        ref = transitions.posterior_sample(z_t, x, lt, ls, noise)
        np.testing.assert_allclose(z_s, ref, rtol=0, atol=1e-12)
        for eta in (0.0, 0.5, 1.0):
            mine = posterior_sample(z_t, x, lt, ls, noise, eta=eta)
            core = samplers.ddim(eta).step(z_t, x, lt, ls, noise)[0]
            assert np.array_equal(np.asarray(mine), np.asarray(core)), eta


# -- check 2 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "lam_t,lam_s",
    [
        (-3.0, 0.0),
        pytest.param(0.0, 2.0, marks=pytest.mark.slow),
        pytest.param(-8.0, 5.0, marks=pytest.mark.slow),
    ],
)
def test_marginal_consistency(lam_t, lam_s):
    """z_t ~ q(z_t | x), z_s = posterior_sample(z_t, x): z_s ~ q(z_s | x) and
    Cov(z_s, z_t) = (α_t/α_s) σ_s² (within 4 standard errors over 10^6 draws)."""
    with jax.enable_x64(True):
        n, d = 1_000_000, 4
        x = jnp.asarray([0.5, -1.0, 0.2, 1.5])
        k1, k2 = jax.random.split(jax.random.key(1))
        a_t, s_t = _as(lam_t)
        a_s, s_s = _as(lam_s)
        z_t = a_t * x + s_t * jax.random.normal(k1, (n, d), jnp.float64)
        noise = jax.random.normal(k2, (n, d), jnp.float64)
        z_s = np.asarray(posterior_sample(z_t, jnp.broadcast_to(x, (n, d)), lam_t, lam_s, noise))
        z_t = np.asarray(z_t)
        x = np.asarray(x)
        a_t, s_t, a_s, s_s = (float(v) for v in (a_t, s_t, a_s, s_s))
        mean = z_s.mean(0)
        se_mean = s_s / np.sqrt(n)
        assert np.all(np.abs(mean - a_s * x) < 4 * se_mean), (mean, a_s * x)
        dev = z_s - a_s * x
        var = np.mean(dev**2, 0)
        se_var = np.std(dev**2, 0) / np.sqrt(n)
        assert np.all(np.abs(var - s_s**2) < 4 * se_var), (var, s_s**2)
        prod = dev * (z_t - a_t * x)
        cov = prod.mean(0)
        se_cov = prod.std(0) / np.sqrt(n)
        expected = (a_t / a_s) * s_s**2
        assert np.all(np.abs(cov - expected) < 4 * se_cov), (cov, expected)


# -- check 3 ---------------------------------------------------------------------------------------
def test_time_pairs():
    k, n = 8, 1_000_000
    t, s = sample_time_pairs(jax.random.key(3), n, k)
    t, s = np.asarray(t, np.float64), np.asarray(s, np.float64)
    gap = t - s
    assert gap.min() >= 0.0 and gap.max() <= 1.0 / k + 1e-6
    ss = np.sort(s)
    ks = np.max(np.abs(ss - np.arange(1, n + 1) / n))
    assert ks < 0.003, ks
    p1 = np.mean(t == 1.0)
    assert abs(p1 - 1.0 / (2 * k)) < 0.002, p1
    t2, s2 = sample_time_pairs(jax.random.key(3), 1000, k, time_sampling="logit_normal")
    assert float(jnp.min(t2 - s2)) >= 0.0 and float(jnp.max(t2 - s2)) <= 1.0 / k + 1e-6


# -- check 6: the 1-D Gaussian fixed point ----------------------------------------------------------
R = 0.5


def _gaussian_problem(params, key, n, kind="uniform"):
    """k = 1 from pure noise: x̃ = a z + b, z_s = α_s x̃ + σ_s ε', exact auxiliary and teacher;
    returns the surrogate and the per-example gradient contributions (a, b)."""
    a, b = params
    kz, ke, ks = jax.random.split(key, 3)
    z = jax.random.normal(kz, (n, 1), jnp.float64)
    eps = jax.random.normal(ke, (n, 1), jnp.float64)
    s = jax.random.uniform(ks, (n,), jnp.float64)
    lam = SCHED.logsnr(s)
    al, sg = (v[:, None] for v in alpha_sigma(lam))
    x_til = a * z + b
    z_s = al * jax.lax.stop_gradient(x_til) + sg * eps
    a0, b0 = jax.lax.stop_gradient(a), jax.lax.stop_gradient(b)
    aux = b0 + al * a0**2 * (z_s - al * b0) / (al**2 * a0**2 + sg**2)
    te = al * R**2 * z_s / (al**2 * R**2 + sg**2)
    from diff_distill import moment_weight

    w = moment_weight(lam, kind)
    return student_surrogate(x_til, aux, te, w), (
        w[:, None] * z * (aux - te),
        w[:, None] * (aux - te),
    )


def test_gaussian_fixed_point_gradient_zero_and_quadrature():
    with jax.enable_x64(True):
        n = 2**18
        key = jax.random.key(6)
        g = jax.grad(lambda p: _gaussian_problem(p, key, n)[0])
        ga, gb = g((jnp.asarray(R), jnp.asarray(0.0)))
        assert abs(float(ga)) < 1e-12 and abs(float(gb)) < 1e-12, (ga, gb)
        a, b = 0.8, 0.2
        ga, gb = g((jnp.asarray(a), jnp.asarray(b)))
        _, (pa, pb) = _gaussian_problem((jnp.asarray(a), jnp.asarray(b)), key, n)
        assert abs(float(ga) - float(jnp.mean(pa))) < 1e-12
        # quadrature over s of the closed-form expected gradient (uniform weight)
        s = (np.arange(200_000) + 0.5) / 200_000
        lam = np.asarray(SCHED.logsnr(jnp.asarray(s)))
        al2 = 1 / (1 + np.exp(-lam))
        al, sg2 = np.sqrt(al2), 1 - al2
        delta = al * a**2 / (al2 * a**2 + sg2) - al * R**2 / (al2 * R**2 + sg2)
        exp_a = np.mean(delta * al * a)
        exp_b = np.mean(b * sg2 / (al2 * R**2 + sg2))
        se_a = float(jnp.std(pa)) / np.sqrt(n)
        se_b = float(jnp.std(pb)) / np.sqrt(n)
        assert abs(float(ga) - exp_a) < 4 * se_a, (float(ga), exp_a, se_a)
        assert abs(float(gb) - exp_b) < 4 * se_b, (float(gb), exp_b, se_b)


@pytest.mark.parametrize(
    "kind,lr", [pytest.param("snr_plus_one", 0.05, marks=pytest.mark.slow), ("uniform", 0.5)]
)
def test_gaussian_fixed_point_descent(kind, lr):
    """400 gradient steps of the surrogate from (0.2, 0.4) reach the data's (r, 0)."""
    with jax.enable_x64(True):
        grad = jax.grad(lambda p, key: _gaussian_problem(p, key, 2**14, kind)[0])

        def body(i, p):
            g = grad(p, jax.random.fold_in(jax.random.key(66), i))
            step = jnp.where(i >= 200, 0.2 * lr, lr)
            return (p[0] - step * g[0], p[1] - step * g[1])

        a, b = jax.jit(
            lambda: jax.lax.fori_loop(0, 400, body, (jnp.asarray(0.2), jnp.asarray(0.4)))
        )()
        assert abs(float(a) - R) < 1e-3 and abs(float(b)) < 1e-3, (float(a), float(b))


# -- check 7: the auxiliary's minimiser ------------------------------------------------------------
def test_aux_loss_minimiser():
    with jax.enable_x64(True):
        n, a, b = 1_000_000, 0.8, 0.2
        lam = 0.5
        al, sg = (float(v) for v in _as(lam))
        k1, k2 = jax.random.split(jax.random.key(7))
        x_til = a * jax.random.normal(k1, (n, 1), jnp.float64) + b
        z_s = al * x_til + sg * jax.random.normal(k2, (n, 1), jnp.float64)
        vg, vd = al**2 * a**2 + sg**2, al**2 * R**2 + sg**2
        eg = (al * a**2 / vg, b - al**2 * a**2 * b / vg)  # E_g[x̃ | z_s] = c1 z_s + c0
        te_c = (al * R**2 / vd, 0.0)
        x_te = te_c[0] * z_s
        w = jnp.ones((n,), jnp.float64)

        def grad_and_se(c, reg):
            def loss(c):
                return aux_loss(c[0] * z_s + c[1], x_til, x_te, w, teacher_reg=reg)

            g = np.asarray(jax.grad(loss)(jnp.asarray(c)))
            aux = c[0] * z_s + c[1]
            per = -2 * (x_til - aux) - 2 * reg * (x_te - aux)
            se = np.asarray([jnp.std(per * z_s), jnp.std(per)]) / np.sqrt(n)
            return g, se

        half = ((eg[0] + te_c[0]) / 2, (eg[1] + te_c[1]) / 2)
        g, se = grad_and_se(half, 1.0)
        assert np.all(np.abs(g) < 4 * se), (g, se)
        g, se = grad_and_se(eg, 1.0)
        assert np.max(np.abs(g) / se) > 20, (g, se)
        g, se = grad_and_se(eg, 0.0)
        assert np.all(np.abs(g) < 4 * se), (g, se)


# -- check 8: the parameter-space identities --------------------------------------------------------
def _lin_apply(params, rest, z, logsnr, cond=None, dropout_key=None):
    return params["t1"] * z + params["t0"]


def _linear_teacher(t1, t0):
    return ParametricTeacher(
        _lin_apply, {"t1": jnp.asarray(t1, jnp.float64), "t0": jnp.asarray(t0, jnp.float64)}
    )


def test_param_space_teacher_gradient_vanishes_at_the_optimum():
    with jax.enable_x64(True):
        n, m, lam = 1_000_000, 0.3, 1.0
        al, sg = (float(v) for v in _as(lam))
        k1, k2 = jax.random.split(jax.random.key(8))
        x = m + R * jax.random.normal(k1, (n, 1), jnp.float64)
        z = al * x + sg * jax.random.normal(k2, (n, 1), jnp.float64)
        t1 = al * R**2 / (al**2 * R**2 + sg**2)
        t0 = m * (1 - al * t1)
        w = jnp.ones((n,), jnp.float64)
        lam_b = jnp.full((n,), lam)
        for dt1, far in ((0.0, False), (0.05, True)):
            teacher = _linear_teacher(t1 + dt1, t0)
            g = teacher_loss_grad(teacher, z, lam_b, x, w)
            err = x - teacher(z, lam_b)
            per = {"t1": -2 * err * z, "t0": -2 * err}
            for name in ("t1", "t0"):
                assert abs(float(g[name]) - float(jnp.mean(per[name]))) < 1e-12
            z_scores = [
                abs(float(g[nm])) / (float(jnp.std(per[nm])) / np.sqrt(n)) for nm in ("t1", "t0")
            ]
            if far:
                assert max(z_scores) > 20, z_scores
            else:
                assert max(z_scores) < 4, z_scores


def _linear_student_batch(eta, key, n, lam_t=-1.0, lam_s=1.5):
    """Data N(0.3, 0.5²) → z_t → x̃ = η1 z_t + η0 → z_s from sg(x̃) (posterior, η = 1)."""
    k1, k2, k3 = jax.random.split(key, 3)
    x = 0.3 + R * jax.random.normal(k1, (n, 1), jnp.float64)
    a_t, s_t = _as(lam_t)
    z_t = a_t * x + s_t * jax.random.normal(k2, (n, 1), jnp.float64)
    x_til = eta["e1"] * z_t + eta["e0"]
    lt, ls = jnp.full((n,), lam_t), jnp.full((n,), lam_s)
    z_s = posterior_sample(
        z_t, jax.lax.stop_gradient(x_til), lt, ls, jax.random.normal(k3, (n, 1), jnp.float64)
    )
    return x_til, z_s, ls


def _norm_sq(g, lam_diag):
    return sum(jnp.sum(g[k] ** 2 / lam_diag[k]) for k in g)


@pytest.mark.parametrize("precond", ["identity", pytest.param("diag", marks=pytest.mark.slow)])
def test_param_space_surrogate_gradient_identity_linear(precond):
    """A = B: ∇_η surrogate = ¼ ∇_η ‖Ĝ‖²_{Λ⁻¹} (z_s from sg(x̃)) to 1e-10 relative."""
    with jax.enable_x64(True):
        teacher = _linear_teacher(0.7, -0.1)
        eta = {"e1": jnp.asarray(0.6), "e0": jnp.asarray(0.05)}
        key, n = jax.random.key(81), 256
        if precond == "identity":
            lam_diag = {"t1": jnp.asarray(1.0), "t0": jnp.asarray(1.0)}
            kw = {"precond": "identity"}
        else:
            lam_diag = {"t1": jnp.asarray(2.3), "t0": jnp.asarray(0.4)}
            kw = {"precond": "adam", "nu": jax.tree.map(jnp.square, lam_diag), "eps": 0.0}
        w = jnp.ones((n,), jnp.float64)

        def surrogate(eta):
            x_til, z_s, ls = _linear_student_batch(eta, key, n)
            g = teacher_loss_grad(teacher, z_s, ls, x_til, w)
            v = param_space_direction(g, **kw)
            return param_space_surrogate(x_til, teacher, v, z_s, ls, w)

        def g_norm(eta):
            x_til, z_s, ls = _linear_student_batch(eta, key, n)
            z_s = jax.lax.stop_gradient(z_s)
            g = jax.grad(
                lambda p: jnp.mean(w * jnp.mean((x_til - teacher.x_hat(p, z_s, ls)) ** 2, -1))
            )(teacher.params)
            return _norm_sq(g, lam_diag)

        lhs = jax.grad(surrogate)(eta)
        rhs = jax.tree.map(lambda v: 0.25 * v, jax.grad(g_norm)(eta))
        a = np.array([lhs["e1"], lhs["e0"]])
        b = np.array([rhs["e1"], rhs["e0"]])
        assert np.linalg.norm(a - b) <= 1e-10 * np.linalg.norm(b), (a, b)


def _mlp64(seed, dim=2):
    m = diff_pixel.MLPDenoiser(dim, width=16, depth=2, logsnr_features=4, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed)
    state = nnx.state(m, nnx.Param)
    nnx.update(
        m,
        jax.tree.map(
            lambda p: jnp.asarray(
                np.asarray(p, np.float64) + 0.3 * rng.standard_normal(p.shape), jnp.float64
            ),
            state,
        ),
    )
    return m


@pytest.mark.parametrize(
    "seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)]
)
def test_param_space_surrogate_gradient_identity_mlp(seed):
    """Check 8c: the same identity for an MLP teacher (``from_nnx``) and an MLP student."""
    with jax.enable_x64(True):
        teacher = ParametricTeacher.from_nnx(_mlp64(seed))
        student = _mlp64(seed + 10)
        gdef, s_params, s_rest = nnx.split(student, nnx.Param, ...)
        n = 64
        k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
        x = jax.random.normal(k1, (n, 2), jnp.float64)
        lt, ls = jnp.full((n,), -0.5), jnp.full((n,), 2.0)
        a_t, s_t = _as(-0.5)
        z_t = a_t * x + s_t * jax.random.normal(k2, (n, 2), jnp.float64)
        noise = jax.random.normal(k3, (n, 2), jnp.float64)
        w = jnp.ones((n,), jnp.float64)

        def x_of(p):
            from diff_protocol import to_x_eps

            out = nnx.merge(gdef, p, s_rest)(z_t, lt)
            return to_x_eps(out, z_t, lt, "v")[0]

        def inputs(p):
            x_til = x_of(p)
            return x_til, posterior_sample(z_t, jax.lax.stop_gradient(x_til), lt, ls, noise)

        def surrogate(p):
            x_til, z_s = inputs(p)
            v = param_space_direction(teacher_loss_grad(teacher, z_s, ls, x_til, w))
            return param_space_surrogate(x_til, teacher, v, z_s, ls, w)

        def g_norm(p):
            x_til, z_s = inputs(p)
            z_s = jax.lax.stop_gradient(z_s)
            g = jax.grad(
                lambda q: jnp.mean(w * jnp.mean((x_til - teacher.x_hat(q, z_s, ls)) ** 2, -1))
            )(teacher.params)
            return sum(jnp.sum(v**2) for v in jax.tree.leaves(g))

        lhs = np.concatenate([np.ravel(v) for v in jax.tree.leaves(jax.grad(surrogate)(s_params))])
        rhs = 0.25 * np.concatenate(
            [np.ravel(v) for v in jax.tree.leaves(jax.grad(g_norm)(s_params))]
        )
        assert np.linalg.norm(rhs) > 0
        assert np.linalg.norm(lhs - rhs) <= 1e-10 * np.linalg.norm(rhs)


def test_param_space_two_batch_estimator_is_unbiased():
    """Check 8d: independent A and B; the mean surrogate gradient over 10^4 batch pairs matches
    ¼∇‖G‖² from one 10^6-sample batch within 5 % relative."""
    with jax.enable_x64(True):
        teacher = _linear_teacher(0.7, -0.1)
        eta = {"e1": jnp.asarray(0.6), "e0": jnp.asarray(0.05)}
        m = 64

        def pair_grad(key):
            ka, kb = jax.random.split(key)
            w = jnp.ones((m,), jnp.float64)

            def surrogate(eta):
                xa, za, la = _linear_student_batch(eta, ka, m)
                g = teacher_loss_grad(teacher, za, la, jax.lax.stop_gradient(xa), w)
                xb, zb, lb = _linear_student_batch(eta, kb, m)
                return param_space_surrogate(xb, teacher, param_space_direction(g), zb, lb, w)

            return jax.grad(surrogate)(eta)

        keys = jax.random.split(jax.random.key(84), 10_000)
        grads = jax.jit(jax.vmap(pair_grad))(keys)
        est = np.array([float(jnp.mean(grads["e1"])), float(jnp.mean(grads["e0"]))])

        big = 1_000_000
        wb = jnp.ones((big,), jnp.float64)

        def g_norm(eta):
            x_til, z_s, ls = _linear_student_batch(eta, jax.random.key(85), big)
            z_s = jax.lax.stop_gradient(z_s)
            g = jax.grad(
                lambda p: jnp.mean(wb * jnp.mean((x_til - teacher.x_hat(p, z_s, ls)) ** 2, -1))
            )(teacher.params)
            return g["t1"] ** 2 + g["t0"] ** 2

        ref = jax.grad(g_norm)(eta)
        ref = 0.25 * np.array([float(ref["e1"]), float(ref["e0"])])
        assert np.all(np.abs(est - ref) <= 0.05 * np.abs(ref)), (est, ref)
