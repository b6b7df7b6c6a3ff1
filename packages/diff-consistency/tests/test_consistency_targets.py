"""Tier (a) checks 1, 2, 3 and 5 of the spec (§11.1): the target's identities, its float32
precision, MCM's variance argument and the loss identities."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diff_consistency import (
    consistency_loss,
    consistency_target,
    teacher_times,
)
from diff_consistency.losses import consistency_loss_per_example
from diff_core import transitions
from diff_core.schedules import CosineSchedule
from diff_protocol import alpha_sigma

SCHEDULE = CosineSchedule(-15.0, 15.0)


def _random_levels(rng, n):
    """λ_t < λ_s ≤ λ_step in [−15, 15], 10 % with λ_step = +∞ and 10 % with λ_s = λ_step."""
    lam = np.sort(rng.uniform(-15, 15, (n, 3)), axis=1)
    lt, ls, lstep = lam[:, 0], lam[:, 1], lam[:, 2]
    end = rng.random(n) < 0.1
    ls = np.where(end, lstep, ls)
    inf = rng.random(n) < 0.1
    lstep = np.where(inf, np.inf, lstep)
    ls = np.where(inf & end, np.inf, ls)
    return lt, ls, lstep, end


@pytest.mark.smoke
def test_fixed_xhat_target_is_that_xhat_float64():
    """Check 1: teacher and target network both returning one fixed x̂ ⇒ x_tgt = x̂ (DDIM steps
    with a fixed x̂ compose exactly and invDDIM undoes their composition), for every n_rel."""
    rng = np.random.default_rng(0)
    n, d = 10_000, 3
    with jax.enable_x64(True):
        lt, ls, lstep, end = _random_levels(rng, n)
        x_hat = jnp.asarray(rng.standard_normal((n, d)))
        z_t = jnp.asarray(rng.standard_normal((n, d)) * 1.3)
        x_tgt, diag = consistency_target(
            lambda z, lam: x_hat,
            z_t,
            x_hat,
            0.0,
            jnp.asarray(lt),
            jnp.asarray(ls),
            jnp.asarray(lstep),
            at_segment_end=jnp.asarray(end),
        )
        rel = np.abs(np.asarray(x_tgt) - np.asarray(x_hat)) / (1.0 + np.abs(np.asarray(x_hat)))
        assert rel.max() < 1e-10, rel.max()
        # at λ_step = +∞ invDDIM returns z_ref itself, exactly
        inf = np.isinf(lstep)
        np.testing.assert_array_equal(np.asarray(x_tgt)[inf], np.asarray(diag["z_ref"])[inf])


def test_ct_identity_and_infinite_end_float64():
    """Check 1: invDDIM(α_s x + σ_s ε, α_t x + σ_t ε, t→s) = x; at λ_s = +∞ it returns z_s."""
    rng = np.random.default_rng(1)
    n = 10_000
    with jax.enable_x64(True):
        lam = np.sort(rng.uniform(-15, 15, (n, 2)), axis=1)
        lt, ls = jnp.asarray(lam[:, 0]), jnp.asarray(lam[:, 1])
        x = jnp.asarray(rng.standard_normal((n, 4)))
        eps = jnp.asarray(rng.standard_normal((n, 4)))
        at, st = alpha_sigma(lt[:, None])
        as_, ss = alpha_sigma(ls[:, None])
        z_t, z_s = at * x + st * eps, as_ * x + ss * eps
        back = transitions.inv_ddim(z_s, z_t, lt, ls)
        rel = np.abs(np.asarray(back - x)) / (1.0 + np.abs(np.asarray(x)))
        assert rel.max() < 1e-10, rel.max()
        np.testing.assert_array_equal(
            np.asarray(transitions.inv_ddim(z_s, z_t, lt, jnp.full((n,), jnp.inf))),
            np.asarray(z_s),
        )


def _target_at(dtype, big_t, n=4096, seed=0):
    """The CT target on the uniform cosine grid with T steps (S = 8) for n examples."""
    rng = np.random.default_rng(seed)
    s_steps = 8
    n_seg = big_t // s_steps
    j = rng.integers(0, s_steps, n)
    n_rel = rng.integers(1, n_seg + 1, n)
    i_t = j * n_seg + n_rel
    i_step = j * n_seg
    x = rng.standard_normal((n, 16))
    eps = rng.standard_normal((n, 16))

    def lam(i):
        t = teacher_times(jnp.asarray(i), big_t)
        return jnp.where(jnp.asarray(i) == 0, jnp.inf, SCHEDULE.logsnr(t))

    lt, ls, lstep = lam(i_t), lam(i_t - 1), lam(i_step)
    x, eps = jnp.asarray(x, dtype), jnp.asarray(eps, dtype)
    at, st = alpha_sigma(lt[:, None])
    z_t = at * x + st * eps
    # a smooth stand-in for the target network: the x that would be exact for Gaussian data
    x_tgt, _ = consistency_target(
        lambda z, lam_: 0.7 * z * jax.nn.sigmoid(lam_)[:, None],
        z_t,
        x,
        0.0,
        lt,
        ls,
        lstep,
        at_segment_end=jnp.asarray(n_rel == 1),
    )
    return np.asarray(x_tgt, np.float64)


@pytest.mark.slow
@pytest.mark.parametrize("big_t", [64, 1280, 4096])
def test_float32_target_precision(big_t):
    """Check 2: the float32 target differs from the float64 one by ≤ 1e-3 relative (RMS)."""
    x32 = _target_at(jnp.float32, big_t)
    with jax.enable_x64(True):
        x64 = _target_at(jnp.float64, big_t)
    rel = np.sqrt(np.mean((x32 - x64) ** 2)) / np.sqrt(np.mean(x64**2))
    assert rel < 1e-3, rel


def test_equal_times_raise_naming_logsnr_s():
    """Check 2: an index with s = t has no teacher step: ValueError naming logsnr_s."""
    z = jnp.ones((2, 3))
    lam = jnp.array([0.5, 1.0])
    with pytest.raises(ValueError, match="logsnr_s"):
        consistency_target(
            lambda z, lam: z, z, z, 0.0, lam, lam, lam + 1.0, at_segment_end=jnp.array([0, 0])
        )


PAIRS = [(0.9, 0.8), (0.7, 0.5), (0.5, 0.45), (0.3, 0.1), (0.95, 0.2)]


def _deficit_closed_forms(t, s, r, d):
    lt, ls = float(SCHEDULE.logsnr(np.float64(t))), float(SCHEDULE.logsnr(np.float64(s)))
    at, st = alpha_sigma(lt)
    as_, ss = alpha_sigma(ls)
    v = at**2 * r**2 + st**2
    a = d * r**2 * (as_ * st - at * ss) ** 2 / v
    trvar = d * r**2 * st**2 / v
    b = (as_ * math.expm1(0.5 * (lt - ls))) ** 2 * trvar  # (α_s − α_t σ_s/σ_t)² tr Var
    return lt, ls, a, b, trvar


@pytest.mark.slow  # 13 s on a slower Xeon: over the fast-suite cap there (CI budget step)
def test_ddim_norm_deficit_monte_carlo():
    """Check 3 (MCM's variance argument): with exact x̂ on N(0, r²I), D = 16,
    E‖z*_s‖² − E‖z_s^DDIM‖² = D r²(α_s σ_t − α_t σ_s)²/(α_t² r² + σ_t²) = (α_s − α_t σ_s/σ_t)² tr
    Var[x|z_t]; closed forms to 1e-12 and 10⁶ Monte-Carlo draws within 4 standard errors."""
    from diff_consistency import addim_step

    r, d, n = 0.6, 16, 1_000_000
    rng = np.random.default_rng(3)
    x, e1, x2, e2 = (rng.standard_normal((n, d)) for _ in range(4))  # reused by every pair
    for t, s in PAIRS:
        lt, ls, a, b, _ = _deficit_closed_forms(t, s, r, d)
        assert abs(a - b) <= 1e-12 * max(abs(a), 1e-300), (t, s, a, b)
        at, st = alpha_sigma(lt)
        as_, ss = alpha_sigma(ls)
        z_t = at * r * x + st * e1
        x_hat = at * r**2 / (at**2 * r**2 + st**2) * z_t
        z_ddim = addim_step(z_t, x_hat, lt, ls, x_var=0.0)  # DDIM (x_var = 0)
        z_true = as_ * r * x2 + ss * e2
        diff = np.sum(z_true**2, axis=1) - np.sum(z_ddim**2, axis=1)
        se = diff.std() / math.sqrt(n)
        assert abs(diff.mean() - a) < 4 * se, (t, s, diff.mean(), a, se)


# -------------------------------------------------------------------------- loss identities


def _segment_batch(rng, n, big_t, s_steps, n_rel=None):
    n_seg = big_t // s_steps
    j = rng.integers(0, s_steps, n)
    n_rel = rng.integers(1, n_seg + 1, n) if n_rel is None else np.full(n, n_rel)
    i_t = j * n_seg + n_rel
    i_step = j * n_seg

    def lam(i):
        t = np.asarray(i, np.float64) / big_t
        return np.where(i == 0, np.inf, SCHEDULE.logsnr(t))

    return lam(i_t), lam(i_t - 1), lam(i_step), n_rel == 1


def _tiny_net(seed, d):
    k1, k2 = jax.random.split(jax.random.key(seed))
    w1 = jax.random.normal(k1, (d + 1, 16), jnp.float64) * 0.5
    w2 = jax.random.normal(k2, (16, d), jnp.float64) * 0.5

    def f(params, z, lam):
        h = jnp.tanh(jnp.concatenate([z, jnp.tanh(lam / 10)[:, None]], axis=1) @ params[0])
        return h @ params[1]

    return (w1, w2), f


@pytest.mark.slow
def test_anchor_at_segment_end_has_zero_gradient():
    """Check 5(a): at n_rel = 1 the target does not depend on the target network (gradient
    exactly 0 with the stop-gradient removed), equals invDDIM(z_s, z_t, t→s), and for CT is x."""
    rng = np.random.default_rng(5)
    n, d = 512, 3
    with jax.enable_x64(True):
        lt, ls, lstep, end = _segment_batch(rng, n, 64, 4)
        params, f = _tiny_net(0, d)
        x = jnp.asarray(rng.standard_normal((n, d)))
        eps = jnp.asarray(rng.standard_normal((n, d)))
        at, st = alpha_sigma(jnp.asarray(lt)[:, None])
        z_t = at * x + st * eps

        def target(p):
            return consistency_target(
                lambda z, lam: f(p, z, lam),
                z_t,
                x,
                0.0,
                jnp.asarray(lt),
                jnp.asarray(ls),
                jnp.asarray(lstep),
                at_segment_end=jnp.asarray(end),
                stop_gradient=False,
            )

        jac = jax.jacrev(lambda p: target(p)[0])(params)
        per_example = sum(np.abs(np.asarray(j)).reshape(n, -1).sum(axis=1) for j in jac)
        assert np.all(per_example[end] == 0.0)
        assert np.all(per_example[~end] > 0.0)
        x_tgt, diag = target(params)
        fin = end & np.isfinite(ls)
        ref = transitions.inv_ddim(diag["z_s"][fin], z_t[fin], lt[fin], ls[fin])
        np.testing.assert_allclose(np.asarray(x_tgt)[fin], np.asarray(ref), rtol=0, atol=1e-12)
        rel = np.abs(np.asarray(x_tgt)[end] - np.asarray(x)[end]) / (1 + np.abs(np.asarray(x)[end]))
        assert rel.max() < 1e-10


@pytest.mark.parametrize(
    "norm,space", [("pseudo_huber", "v"), ("pseudo_huber", "x"), ("squared", "v")]
)
def test_diffusion_limit_s_equals_t(norm, space):
    """Check 5(b): S = T (n_seg = 1). CT's loss is the diffusion loss with target x (1e-12
    relative per example); CD's is the same with x replaced by the teacher's x̂ (1e-10)."""
    rng = np.random.default_rng(7)
    n, d, big_t = 2048, 3, 16
    with jax.enable_x64(True):
        lt, ls, lstep, end = _segment_batch(rng, n, big_t, big_t)
        assert end.all()
        params, f = _tiny_net(1, d)
        x = jnp.asarray(rng.standard_normal((n, d)))
        eps = jnp.asarray(rng.standard_normal((n, d)))
        at, st = alpha_sigma(jnp.asarray(lt)[:, None])
        z_t = at * x + st * eps
        student = f(params, z_t, jnp.asarray(lt))
        kw = {"norm": norm, "eps": 1e-4, "loss_space": space}
        teacher_x = jnp.tanh(z_t)  # any teacher prediction
        for x_teach, tol in ((x, 1e-12), (teacher_x, 1e-10)):
            x_tgt, _ = consistency_target(
                lambda z, lam: f(params, z, lam),
                z_t,
                x_teach,
                0.0,
                jnp.asarray(lt),
                jnp.asarray(ls),
                jnp.asarray(lstep),
                at_segment_end=jnp.asarray(end),
            )
            got = np.asarray(consistency_loss_per_example(student, x_tgt, jnp.asarray(lt), **kw))
            want = np.asarray(consistency_loss_per_example(student, x_teach, jnp.asarray(lt), **kw))
            assert np.max(np.abs(got - want) / want) < tol


def test_single_step_target_is_consistency_model_target():
    """Check 5(c): S = 1: x_tgt = sg f(z_s, s) where n_rel > 1 and x_teach where n_rel = 1."""
    rng = np.random.default_rng(9)
    n, d = 1024, 2
    with jax.enable_x64(True):
        lt, ls, lstep, end = _segment_batch(rng, n, 32, 1)
        assert np.all(np.isinf(lstep))
        params, f = _tiny_net(2, d)
        x = jnp.asarray(rng.standard_normal((n, d)))
        at, st = alpha_sigma(jnp.asarray(lt)[:, None])
        z_t = at * x + st * jnp.asarray(rng.standard_normal((n, d)))
        x_teach = 0.9 * x
        x_tgt, diag = consistency_target(
            lambda z, lam: f(params, z, lam),
            z_t,
            x_teach,
            0.0,
            jnp.asarray(lt),
            jnp.asarray(ls),
            jnp.asarray(lstep),
            at_segment_end=jnp.asarray(end),
        )
        mid = ~end
        ref = f(params, diag["z_s"][mid], jnp.asarray(ls)[mid])
        np.testing.assert_allclose(np.asarray(x_tgt)[mid], np.asarray(ref), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(
            np.asarray(x_tgt)[end], np.asarray(x_teach)[end], rtol=1e-12, atol=1e-14
        )


def test_v_and_x_spaces_agree_in_squared_regime_and_differ_by_sqrt_w():
    """Check 5(d): ε = 10, errors ≤ 1e-2, λ ∈ [−5, 5]: "v" and "x" agree to 1e-4 relative; with
    ε = 1e-8 they differ by the factor √w."""
    rng = np.random.default_rng(11)
    n, d = 4096, 8
    with jax.enable_x64(True):
        lam = jnp.asarray(rng.uniform(-5, 5, n))
        a = jnp.asarray(rng.standard_normal((n, d)))
        b = a + jnp.asarray(rng.uniform(-1e-2, 1e-2, (n, d)))
        v = consistency_loss_per_example(a, b, lam, eps=10.0, loss_space="v")
        x = consistency_loss_per_example(a, b, lam, eps=10.0, loss_space="x")
        assert float(jnp.max(jnp.abs(v - x) / x)) < 1e-4
        w = jnp.exp(lam) + 1.0
        v = consistency_loss_per_example(a, b, lam, eps=1e-8, loss_space="v")
        x = consistency_loss_per_example(a, b, lam, eps=1e-8, loss_space="x")
        np.testing.assert_allclose(
            np.asarray(x / v), np.asarray(jnp.sqrt(w)), rtol=1e-5
        )  # ε/RMS ≈ 2e-6
        # the batch loss is the mean of the per-example ones
        np.testing.assert_allclose(
            float(consistency_loss(a, b, lam, eps=1e-8)), float(jnp.mean(v)), rtol=1e-12
        )


def test_loss_validation_names_the_argument():
    a = jnp.zeros((2, 3))
    for kw, name in (
        ({"norm": "l1"}, "norm"),
        ({"loss_space": "eps"}, "loss_space"),
        ({"weight": "snr"}, "kind"),
    ):
        with pytest.raises(ValueError, match=name):
            consistency_loss(a, a, jnp.zeros(2), **kw)
    with pytest.raises(ValueError, match="student_x shape"):
        consistency_loss(a, jnp.zeros((2, 4)), jnp.zeros(2))
