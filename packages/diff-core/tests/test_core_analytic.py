"""Exact distributions (core spec §3.9, check 28) and the named problems and helpers of §3.11."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp

from diff_core.analytic import ConditionalMixture, EmpiricalDistribution, GaussianMixture, gaussian
from diff_core.testing import (
    PROBLEMS,
    convergence_order,
    exact_flow_gaussian,
    problem,
    reference_ode,
)
from diff_protocol import Denoiser, to_x_eps
from diff_protocol.testing import BACKENDS, backend, to_numpy


def _alpha_sigma(lam: float) -> tuple[float, float]:
    return math.sqrt(1 / (1 + math.exp(-lam))), math.sqrt(1 / (1 + math.exp(lam)))


def _noisy(mix, lam: float, n: int, seed: int) -> np.ndarray:
    """Typical points of the noisy marginal: z = α x + σ ε."""
    x = mix.sample(n, seed)[0]
    a, s = _alpha_sigma(lam)
    return a * x + s * np.random.default_rng(seed + 1).standard_normal(x.shape)


def _brute_force(mix: GaussianMixture, z: np.ndarray, lam: np.ndarray):
    """Responsibilities, posterior mean, score, tr Var, log p from the textbook formulas, with
    per-dimension noise levels ``lam`` of z's shape (N, D)."""
    d = mix.dim
    w, mu = mix.weights, mix.means.reshape(mix.n_components, d)
    s = np.broadcast_to(mix.stds.reshape(mix.n_components, -1), (mix.n_components, d))
    a2, s2 = 1 / (1 + np.exp(-lam)), 1 / (1 + np.exp(lam))
    a = np.sqrt(a2)
    v = a2[:, None, :] * s[None] ** 2 + s2[:, None, :]
    diff = z[:, None, :] - a[:, None, :] * mu[None]
    lp = np.log(w)[None] - 0.5 * np.sum(diff**2 / v + np.log(2 * np.pi * v), axis=-1)
    r = np.exp(lp - logsumexp(lp, axis=1, keepdims=True))
    m = mu[None] + a[:, None, :] * s[None] ** 2 * diff / v
    mean = np.sum(r[..., None] * m, axis=1)
    score = -np.sum(r[..., None] * diff / v, axis=1)
    within = np.sum(s[None] ** 2 * s2[:, None, :] / v, axis=-1)
    trvar = np.sum(r * (within + np.sum(m**2, axis=-1)), axis=1) - np.sum(mean**2, axis=1)
    return r, mean, score, trvar, logsumexp(lp, axis=1)


# ----------------------------------------------------------------------------------------------
# check 28: Tweedie identities and finite differences


@pytest.mark.parametrize("name", ["ring6", "hadamard16"])
@pytest.mark.parametrize("lam", [-5.0, 0.0, 5.0])
def test_tweedie_score_and_trace_variance(name, lam):
    mix = problem(name).mixture
    z = _noisy(mix, lam, 12, seed=28)
    a, s = _alpha_sigma(lam)
    mean, score = mix.posterior_mean(z, lam), mix.score(z, lam)

    # E[x|z] = (z + σ² ∇log p)/α
    tweedie = (z + s**2 * score) / a
    assert np.max(np.abs(mean - tweedie)) <= 1e-7 * np.max(np.abs(mean))

    # score = ∇ log p_λ by central differences of log_marginal
    h, d = 1e-5, mix.dim
    eye = np.eye(d)
    fd = np.stack(
        [
            (mix.log_marginal(z + h * eye[j], lam) - mix.log_marginal(z - h * eye[j], lam))
            / (2 * h)
            for j in range(d)
        ],
        axis=1,
    )
    assert np.max(np.abs(fd - score)) <= 1e-7 * np.max(np.abs(score))

    # tr Var[x|z] = (σ²/α²)(d + σ² tr ∇² log p), the Hessian trace by differences of the score
    lap = sum(
        (mix.score(z + h * eye[j], lam)[:, j] - mix.score(z - h * eye[j], lam)[:, j]) / (2 * h)
        for j in range(d)
    )
    expected = (s**2 / a**2) * (d + s**2 * lap)
    np.testing.assert_allclose(mix.posterior_trace_var(z, lam), expected, rtol=1e-5)


@pytest.mark.parametrize("lam", [-5.0, 0.0, 5.0, 10.0])
def test_empirical_equals_a_mixture_of_tiny_gaussians(lam):
    data = np.random.default_rng(0).standard_normal((64, 6))
    emp = EmpiricalDistribution(data)
    tiny = GaussianMixture(np.ones(64), data, np.full(64, 1e-30))
    z = _noisy(emp, lam, 20, seed=1)
    np.testing.assert_allclose(emp.posterior_mean(z, lam), tiny.posterior_mean(z, lam), atol=1e-12)
    s2 = _alpha_sigma(lam)[1] ** 2
    np.testing.assert_allclose(s2 * emp.score(z, lam), s2 * tiny.score(z, lam), atol=1e-12)
    np.testing.assert_allclose(emp.log_marginal(z, lam), tiny.log_marginal(z, lam), rtol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 3, 16, 63])
def test_empirical_chunked_equals_unchunked_bitwise(chunk_size):
    rng = np.random.default_rng(2)
    data = rng.standard_normal((64, 6))
    z = rng.standard_normal((33, 6))
    whole, chunked = EmpiricalDistribution(data), EmpiricalDistribution(data, chunk_size)
    for lam in (-3.0, 0.0, 4.0):
        for method in ("posterior_mean", "score", "log_marginal"):
            ref = getattr(whole, method)(z, lam)
            assert np.array_equal(getattr(chunked, method)(z, lam), ref), (method, lam)
        for pred in ("x", "eps", "v"):
            ref = whole.denoiser(pred)(z, np.full(33, lam))
            assert np.array_equal(chunked.denoiser(pred)(z, np.full(33, lam)), ref)


def test_empirical_at_zero_noise_and_infinite_noise():
    data = np.random.default_rng(3).standard_normal((10, 3))
    emp = EmpiricalDistribution(data, chunk_size=4)
    np.testing.assert_array_equal(emp.posterior_mean(data, math.inf), data)
    np.testing.assert_array_equal(emp.assign(data + 1e-3), np.arange(10))
    z = np.random.default_rng(4).standard_normal((5, 3))
    np.testing.assert_allclose(emp.posterior_mean(z, -math.inf), np.tile(data.mean(0), (5, 1)))


# ----------------------------------------------------------------------------------------------
# formulas against brute force; methods, chunking, shapes


@pytest.mark.parametrize("per_dim_std", [False, True])
@pytest.mark.parametrize("per_dim_logsnr", [False, True])
@pytest.mark.parametrize("chunk_elements", [1, 2**22])
def test_mixture_matches_brute_force(per_dim_std, per_dim_logsnr, chunk_elements):
    rng = np.random.default_rng(5)
    k, d, n = 5, 3, 7
    stds = rng.uniform(0.1, 0.5, (k, d) if per_dim_std else k)
    mix = GaussianMixture(rng.uniform(0.5, 1.5, k), rng.standard_normal((k, d)), stds,
                          chunk_elements=chunk_elements)  # fmt: skip
    z = rng.standard_normal((n, d))
    lam = rng.uniform(-6, 6, (n, d) if per_dim_logsnr else n)
    full = lam if per_dim_logsnr else np.repeat(lam[:, None], d, axis=1)
    r, mean, score, trvar, logp = _brute_force(mix, z, full)
    np.testing.assert_allclose(mix.responsibilities(z, lam), r, atol=1e-14)
    np.testing.assert_allclose(mix.posterior_mean(z, lam), mean, atol=1e-13)
    np.testing.assert_allclose(mix.score(z, lam), score, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(mix.posterior_trace_var(z, lam), trvar, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(mix.log_marginal(z, lam), logp, rtol=1e-13)


def test_matmul_method_agrees_and_rejects_per_dimension_stds():
    mix = problem("hadamard16").mixture
    fast = GaussianMixture(mix.weights, mix.means, mix.stds, method="matmul")
    for lam in (-4.0, 0.0, 4.0):
        z = _noisy(mix, lam, 16, seed=6)
        np.testing.assert_allclose(
            fast.posterior_mean(z, lam), mix.posterior_mean(z, lam), atol=1e-12
        )
        np.testing.assert_allclose(fast.score(z, lam), mix.score(z, lam), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(fast.log_marginal(z, lam), mix.log_marginal(z, lam), rtol=1e-12)
        np.testing.assert_allclose(fast.posterior_trace_var(z, lam),
                                   mix.posterior_trace_var(z, lam), rtol=1e-8)  # fmt: skip
    assert mix.denoiser("x", method="matmul") is mix.denoiser("x", method="matmul")
    per_dim = GaussianMixture([1.0], [[0.0, 0.0]], [[0.1, 0.2]], method="matmul")
    with pytest.raises(ValueError, match="method='matmul' needs isotropic stds"):
        per_dim.posterior_mean(np.zeros((2, 2)), 0.0)


@pytest.mark.smoke
def test_denoiser_predictions_are_consistent_and_exact_at_the_ends():
    mix = problem("ring6").mixture
    z = _noisy(mix, 1.0, 9, seed=7)
    lam = np.linspace(-8, 8, 9)
    x_ref = mix.posterior_mean(z, lam)
    for pred in ("x", "eps", "v"):
        den = mix.denoiser(pred)
        assert isinstance(den, Denoiser) and den.prediction == pred
        assert den is mix.denoiser(pred)  # cached: a stable JAX static argument
        x_hat, _ = to_x_eps(den(z, lam), z, lam, pred)
        np.testing.assert_allclose(x_hat, x_ref, atol=1e-12)
    # λ = −inf: x̂ = E[x]; λ = +inf: x̂ = z and ε̂ = 0 exactly
    np.testing.assert_allclose(
        mix.denoiser("x")(z, -math.inf), np.tile(mix.mean(), (9, 1)), atol=1e-15
    )
    np.testing.assert_allclose(mix.denoiser("x")(z, math.inf), z, atol=1e-15)
    assert np.all(mix.denoiser("eps")(z, math.inf) == 0)
    assert hash(mix) == object.__hash__(mix) and mix != GaussianMixture(
        mix.weights, mix.means, mix.stds
    )


def test_batch_and_event_shapes():
    mix = problem("image3x32").mixture
    assert mix.means.shape == (100, 32, 32, 3) and mix.event_shape == (32, 32, 3)
    z = np.random.default_rng(8).standard_normal((2, 3, 32, 32, 3))
    lam = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])  # per example of a (2, 3) batch
    out = mix.posterior_mean(z, lam)
    assert out.shape == z.shape
    np.testing.assert_allclose(out[1, 2], mix.posterior_mean(z[1, 2], 5.0), atol=1e-12)
    assert mix.responsibilities(z, lam).shape == (2, 3, 100)
    assert mix.log_marginal(z, 0.0).shape == (2, 3)
    with pytest.raises(ValueError, match=r"z shape \(4, 2\) must end with the event shape"):
        mix.posterior_mean(np.zeros((4, 2)), 0.0)
    with pytest.raises(ValueError, match="logsnr shape"):
        problem("ring6").mixture.posterior_mean(np.zeros((4, 2)), np.zeros(3))


def test_clean_data_statistics():
    from scipy.stats import multivariate_normal

    mix = problem("ring6").mixture
    x, labels = mix.sample(4000, seed=9)
    dens = sum(
        w * multivariate_normal(m, s**2 * np.eye(2)).pdf(x)
        for w, m, s in zip(mix.weights, mix.means, mix.stds)
    )
    np.testing.assert_allclose(mix.log_prob(x), np.log(dens), rtol=1e-12, atol=1e-13)
    assert np.mean(np.asarray(mix.assign(x)) == labels) > 0.999
    np.testing.assert_allclose(x.mean(0), mix.mean(), atol=0.03)
    np.testing.assert_allclose(np.cov(x.T), mix.covariance(), atol=0.03)
    # exact moments: law of total variance
    mu = mix.means - mix.mean()
    cov = (mix.weights[:, None] * mu).T @ mu + np.eye(2) * (mix.weights @ mix.stds**2)
    np.testing.assert_allclose(mix.covariance(), cov, atol=1e-15)


@pytest.mark.parametrize("name", BACKENDS)
def test_backends_agree_with_numpy(name):
    _, asarray = backend(name)
    mix = problem("hadamard16").mixture
    emp = EmpiricalDistribution(mix.means, chunk_size=3)
    z = _noisy(mix, 1.0, 8, seed=10)
    lam = np.linspace(-4, 6, 8)

    def evaluate(zz, ll):
        outs = [mix.denoiser(pred)(zz, ll) for pred in ("x", "eps", "v")]
        return outs + [mix.log_marginal(zz, 1.5), emp.posterior_mean(zz, ll)]

    expected = evaluate(z, lam)
    dtype = "float32" if name == "jax" else "float64"
    tol = 2e-5 if dtype == "float32" else 1e-12
    if name == "jax":  # one compilation instead of op-by-op dispatch
        import jax

        evaluate = jax.jit(evaluate)
    got = evaluate(asarray(z, dtype), asarray(lam, dtype))
    for g, e in zip(got, expected):
        assert dtype in str(g.dtype)
        np.testing.assert_allclose(to_numpy(g), e, rtol=tol, atol=tol)


def test_jax_jit_and_bfloat16():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    mix = problem("ring6").mixture
    den = mix.denoiser("x")
    z = _noisy(mix, 2.0, 16, seed=11)
    jitted = jax.jit(lambda zz, ll: den(zz, ll))
    out = jitted(jnp.asarray(z, jnp.float32), jnp.full((16,), 2.0, jnp.float32))
    np.testing.assert_allclose(np.asarray(out), den(z, 2.0), atol=2e-6)
    # the denoiser is hashable (by identity) and usable as a static argument
    static = jax.jit(lambda d, zz: d(zz, 2.0), static_argnums=0)
    np.testing.assert_allclose(
        np.asarray(static(den, jnp.asarray(z, jnp.float32))), den(z, 2.0), atol=2e-6
    )
    low = den(jnp.asarray(z, jnp.bfloat16), 2.0)
    assert low.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(low, np.float64), den(z, 2.0), atol=0.05)


# ----------------------------------------------------------------------------------------------
# conditional mixtures


def test_conditional_mixture_labels_and_null():
    cm = problem("guidance1d").mixture
    assert isinstance(cm, ConditionalMixture)
    z = np.linspace(-3, 3, 6)[:, None]
    labels = np.array([0, 1, -1, 0, 1, -1])
    out = cm.posterior_mean(z, 0.5, labels)
    for c, ref in ((0, cm.components[0]), (1, cm.components[1]), (-1, cm.union)):
        np.testing.assert_allclose(
            out[labels == c], ref.posterior_mean(z[labels == c], 0.5), atol=1e-14
        )
    np.testing.assert_allclose(
        cm.posterior_mean(z, 0.5), cm.union.posterior_mean(z, 0.5), atol=1e-15
    )
    np.testing.assert_allclose(
        cm.posterior_mean(z, 0.5, 1), cm.components[1].posterior_mean(z, 0.5), atol=1e-14
    )
    np.testing.assert_allclose(cm.log_marginal(z, 0.5, labels)[labels == 0],
                               cm.components[0].log_marginal(z[labels == 0], 0.5), rtol=1e-13)  # fmt: skip
    for pred in ("x", "eps", "v"):
        x_hat, _ = to_x_eps(cm.denoiser(pred)(z, 0.5, labels), z, 0.5, pred)
        np.testing.assert_allclose(x_hat, out, atol=1e-12)
    x, y = cm.sample(1000, seed=12)
    assert set(np.unique(y)) == {0, 1}
    assert np.all(np.asarray(cm.components[0].assign(x[y == 0])) >= 0)
    with pytest.raises(ValueError, match="cond must be labels in 0..1 or null_label=-1, got"):
        cm.posterior_mean(z, 0.5, np.array([0, 1, 2, 0, 1, 0]))
    with pytest.raises(TypeError, match="cond must be an integer label array"):
        cm.posterior_mean(z, 0.5, np.zeros(6))


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_conditional_mixture_on_framework_backends(name):
    xp, asarray = backend(name)
    cm = problem("guidance1d").mixture
    z = np.linspace(-3, 3, 6)[:, None]
    labels = np.array([0, 1, -1, 0, 1, -1])
    ref = cm.posterior_mean(z, 0.5, labels)
    got = cm.denoiser("x")(asarray(z, "float32"), 0.5, asarray(labels))
    np.testing.assert_allclose(to_numpy(got), ref, atol=2e-6)


# ----------------------------------------------------------------------------------------------
# named problems and helpers


def test_named_problems():
    for name in PROBLEMS:
        prob = problem(name)
        assert prob is problem(name) and prob.description
        assert prob.schedule.logsnr_range == (-15.0, 15.0)
    had = problem("hadamard16").mixture
    mu = had.means
    np.testing.assert_allclose(np.linalg.norm(mu, axis=1), 1.0, atol=1e-15)
    dist = np.linalg.norm(mu[:, None] - mu[None], axis=-1)[~np.eye(8, dtype=bool)]
    np.testing.assert_allclose(dist, math.sqrt(2), atol=1e-15)
    np.testing.assert_allclose(had.stds, 0.10 + 0.02 * np.arange(8), atol=1e-15)
    np.testing.assert_allclose(had.weights, (np.arange(8) + 1) / 36, atol=1e-15)
    ring6 = problem("ring6").mixture
    np.testing.assert_allclose(ring6.weights, np.array([1, 1.5, 2, 2.5, 3, 3.5]) / 13.5)
    np.testing.assert_allclose(ring6.means[1], [0.5, math.sqrt(3) / 2], atol=1e-15)
    mix64 = problem("mix64").mixture
    rng = np.random.default_rng(64)
    np.testing.assert_array_equal(mix64.means, 0.5 * rng.standard_normal((16, 64)))
    np.testing.assert_array_equal(mix64.stds, rng.uniform(0.1, 0.3, 16))
    img = problem("image3x32").mixture
    np.testing.assert_allclose(np.abs(img.means).max(axis=(1, 2, 3)), 0.9, atol=1e-15)
    assert np.all((img.stds >= 0.05) & (img.stds <= 0.2)) and abs(img.weights.sum() - 1) < 1e-15
    # blurred with a 3 px filter: neighbouring pixels are strongly correlated
    m = img.means
    corr = np.corrcoef(m[:, :-1].reshape(-1), m[:, 1:].reshape(-1))[0, 1]
    assert corr > 0.9
    gauss = problem("gauss1d").mixture
    assert gauss.event_shape == (1,) and gauss.means[0, 0] == 0.3 and gauss.stds[0] == 0.5
    with pytest.raises(ValueError, match="problem: name must be one of"):
        problem("ring7")


def test_exact_flow_and_reference_ode():
    den = problem("gauss1d").mixture.denoiser("x")
    z = np.linspace(-3, 3, 7)[:, None]
    # the flow composes and maps N(0.3·α, ·) marginals onto each other
    mid = exact_flow_gaussian(z, -4.0, 0.5, 0.3, 0.5)
    np.testing.assert_allclose(exact_flow_gaussian(mid, 0.5, 6.0, 0.3, 0.5),
                               exact_flow_gaussian(z, -4.0, 6.0, 0.3, 0.5), atol=1e-14)  # fmt: skip
    ref = reference_ode(den, z, -4.0, 6.0, n_steps=512)
    errors = [
        np.max(
            np.abs(
                reference_ode(den, z, -4.0, 6.0, n_steps=n)
                - exact_flow_gaussian(z, -4.0, 6.0, 0.3, 0.5)
            )
        )
        for n in (128, 256, 512)
    ]
    assert errors[-1] < 1.2e-5 and convergence_order((128, 256, 512), errors) > 1.9  # 8.4e-6, 2.0
    assert ref.shape == z.shape
    full = reference_ode(den, z, -math.inf, math.inf, n_steps=1024)
    assert np.max(np.abs(full - exact_flow_gaussian(z, -math.inf, math.inf, 0.3, 0.5))) < 2e-4


def test_convergence_order_is_the_least_squares_slope():
    steps = np.array([8, 16, 32, 64])
    assert abs(convergence_order(steps, 3.0 * steps**-2.0) - 2.0) < 1e-12
    with pytest.raises(ValueError, match="convergence_order: errors must be positive"):
        convergence_order([1, 2], [0.1, 0.0])


def test_bad_input_messages():
    with pytest.raises(ValueError, match="GaussianMixture: weights must be positive"):
        GaussianMixture([1.0, -1.0], [[0.0], [1.0]], [0.1, 0.1])
    with pytest.raises(ValueError, match=r"GaussianMixture: stds must be shaped \(K,\) or"):
        GaussianMixture([1.0], [[0.0, 0.0]], [[0.1, 0.1, 0.1]])
    with pytest.raises(ValueError, match="GaussianMixture: method must be one of"):
        GaussianMixture([1.0], [[0.0]], [1.0], method="fast")
    with pytest.raises(ValueError, match="GaussianMixture: means must be finite"):
        GaussianMixture([1.0], [[np.nan]], [1.0])
    with pytest.raises(
        ValueError, match="EmpiricalDistribution: chunk_size must be a positive int"
    ):
        EmpiricalDistribution(np.zeros((3, 2)), chunk_size=0)
    with pytest.raises(
        TypeError, match="GaussianMixture.posterior_mean: z must be a real floating array"
    ):
        gaussian(0.0, 1.0).posterior_mean(np.zeros((2, 1), dtype=np.int64), 0.0)
    with pytest.raises(ValueError, match="GaussianMixture.denoiser: prediction must be one of"):
        gaussian(0.0, 1.0).denoiser("epsilon")
    with pytest.raises(ValueError, match="ConditionalMixture: null_label must be outside 0..1"):
        ConditionalMixture([gaussian(0.0, 1.0), gaussian(1.0, 1.0)], [1.0, 1.0], null_label=1)
