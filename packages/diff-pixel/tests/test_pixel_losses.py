"""Recipes and the loss (spec checks 9 and 10): diff-core's schedules and weightings used as
specified, loss forms, the Gaussian floor, per-example randomness."""

import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diff_core import losses as core_losses
from diff_core import weighting
from diff_core.testing import gaussian
from diff_pixel.losses import drop_mask, example_keys, noise_batch, stratified_times
from diff_pixel.models import Cond, Predicts, build_model
from diff_pixel.sid import (
    RUN_PRESETS,
    SiD2Recipe,
    SiD2Variant,
    SiDRecipe,
    diffusion_loss,
    recipe_from_dict,
    recipe_loss,
)
from diff_protocol import diffuse, v_target


@pytest.mark.smoke
def test_sid2_recipe_numbers_and_round_trip():
    r = SiD2Recipe.for_resolution(512)
    assert r.bias == -3.0 and SiD2Recipe.for_resolution(256).bias == -1.0
    assert SiD2Recipe.for_resolution(128).bias == 0.0
    assert math.isclose(SiD2Recipe.for_resolution(16).bias, 2 * math.log(8), rel_tol=1e-12)  # 4.16
    lam = np.asarray(r.schedule().logsnr(np.array([0.0, 0.5, 1.0])))
    np.testing.assert_allclose(lam, [15.00, -2.77, -20.55], atol=0.01)
    sid = SiDRecipe.for_resolution(256)
    np.testing.assert_allclose(
        sid.schedule().logsnr(np.array([0.0, 1.0])),
        np.array([15.0, -15.0]) + 2 * math.log(64 / 256),
    )
    assert sid.weighting().name == "eps_mse" and r.weighting().name == "sigmoid"
    for rec in (
        r,
        sid,
        RUN_PRESETS["digits"].recipe("sid2").replace(guidance_interval=(-math.inf, 5.0)),
    ):
        assert recipe_from_dict(rec.to_dict()) == rec
        assert hash(rec) == hash(recipe_from_dict(rec.to_dict()))
    assert recipe_loss(r) is recipe_loss(SiD2Recipe.for_resolution(512))
    with pytest.raises(ValueError, match="p_uncond must be in"):
        SiD2Recipe.for_resolution(64, p_uncond=1.5)


def test_schedule_derivative_matches_jvp():
    for rec in (
        SiD2Recipe.for_resolution(512),
        SiD2Recipe.for_resolution(64),
        SiDRecipe.for_resolution(128),
    ):
        sched = rec.schedule()
        t = jnp.linspace(0.02, 0.98, 49)
        _, jvp = jax.jvp(sched.logsnr, (t,), (jnp.ones_like(t),))
        np.testing.assert_allclose(sched.dlogsnr_dt(t), jvp, rtol=1e-6)


def test_loss_forms_agree():
    rng = np.random.default_rng(0)
    b = 64
    lam = jnp.asarray(np.linspace(-20.0, 15.0, b), jnp.float32)
    dlam = jnp.asarray(-rng.uniform(1.0, 30.0, b), jnp.float32)
    x = jnp.asarray(rng.uniform(-1, 1, (b, 4, 4, 3)), jnp.float32)
    eps = jnp.asarray(rng.standard_normal((b, 4, 4, 3)), jnp.float32)
    v_hat = v_target(x, eps, lam) + jnp.asarray(0.3 * rng.standard_normal(x.shape), jnp.float32)
    w = weighting.sigmoid(-1.0)
    forms = [
        core_losses.diffusion_loss(v_hat, x, eps, lam, dlam, prediction="v", weighting=w, space=s)
        for s in ("eps", "x", "v")
    ]
    for f in forms[1:]:
        np.testing.assert_allclose(f, forms[0], rtol=1e-5)
    # Written out in float64: ½(−λ')sigmoid(b − λ)·mean(ε − ε̂)² with ε̂ = σz + αv̂, z = αx + σε.
    lam64, x64, e64, v64 = (np.asarray(a, np.float64) for a in (lam, x, eps, v_hat))
    alpha = np.sqrt(1 / (1 + np.exp(-lam64)))[:, None, None, None]
    sigma = np.sqrt(1 / (1 + np.exp(lam64)))[:, None, None, None]
    eps_hat = sigma * (alpha * x64 + sigma * e64) + alpha * v64
    w = 1 / (1 + np.exp(lam64 + 1.0))
    manual = 0.5 * -np.asarray(dlam, np.float64) * w * np.mean((e64 - eps_hat) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(forms[0], manual, rtol=1e-5)


class _ExactV:
    """diff-core's exact Gaussian denoiser with the model signature (no condition)."""

    prediction = "v"

    def __init__(self, mean, std):
        self.den = gaussian(mean, std).denoiser("v")

    def __call__(self, z, logsnr, cond=None, *, dropout_key=None):
        assert cond is None
        return self.den(z, logsnr)


def _gaussian_losses(recipe, reps, n=65536):
    """``reps`` batch losses of ``recipe`` for n examples of x ~ N(0.3, 0.5²) (4×4 pixels) with
    the exact denoiser, each batch from its own key."""
    model = _ExactV(0.3, 0.5)

    @jax.jit
    def one(rep):
        key = jax.random.fold_in(jax.random.key(0), rep)
        x = 0.3 + 0.5 * jax.random.normal(jax.random.fold_in(key, 7), (n, 4, 4, 1))
        batch = {"x": x, "index": jnp.arange(n, dtype=jnp.int32)}
        return diffusion_loss(model, batch, key, recipe)[0]

    return [float(one(r)) for r in range(reps)]


def test_gaussian_floor():
    # x ~ N(0.3, 0.5²) per pixel, cosine ±15 (interpolated 32 → 32 is the plain cosine), b = −1:
    # E loss = ½∫ sigmoid(b − λ) sigmoid(λ + 2 ln 0.5) dλ over [−15, 15] (closed form of core §3.2).
    recipe = SiD2Recipe(resolution=32, resolution_lo=32, bias=-1.0)
    b, c = -1.0, 2 * math.log(0.5)
    k = b + c

    def sp(v):
        return math.log1p(math.exp(-abs(v))) + max(v, 0.0)

    def f(lam):
        return sp(lam + c) - sp(b - lam) - lam

    expected = 0.5 * (f(15.0) - f(-15.0)) / (1 - math.exp(-k))
    assert abs(expected - 0.12085) < 5e-5
    losses = _gaussian_losses(recipe, 32)
    assert abs(np.mean(losses) / expected - 1) < 0.01, (np.mean(losses), expected)


def test_per_example_randomness_and_metrics():
    key = jax.random.key(3)
    idx = jnp.arange(100, 108, dtype=jnp.int32)
    keys = example_keys(key, idx)
    sub = example_keys(key, idx[4:])
    np.testing.assert_array_equal(
        noise_batch(keys, (8, 3, 3, 1))[4:], noise_batch(sub, (4, 3, 3, 1))
    )
    np.testing.assert_array_equal(drop_mask(keys, 0.3)[4:], drop_mask(sub, 0.3))
    t = stratified_times(keys)
    assert bool(jnp.all((t >= jnp.arange(8) / 8) & (t < (jnp.arange(8) + 1) / 8)))
    slot = jnp.array([3, 1, 0, 2, 7, 6, 4, 5])
    t_slot = stratified_times(keys, slot)
    np.testing.assert_allclose(
        t_slot * 8 - slot, t * 8 - jnp.arange(8), atol=1e-5
    )  # same u, own stratum
    # Label dropout happens at the rate p_uncond.
    many = drop_mask(example_keys(key, jnp.arange(20000, dtype=jnp.int32)), 0.1)
    assert abs(float(many.mean()) - 0.1) < 0.01


def test_loss_on_a_backbone_bins_and_dropout():
    model = build_model("tiny-16")
    recipe = SiD2Recipe.for_resolution(16, p_uncond=0.5)
    rng = np.random.default_rng(0)
    batch = {
        "x": jnp.asarray(rng.uniform(-1, 1, (16, 16, 16, 1)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, 10, 16), jnp.int32),
        "index": jnp.arange(16, dtype=jnp.int32),
    }
    sched = recipe.schedule()

    @jax.jit
    def run(batch, key):
        loss, metrics = diffusion_loss(model, batch, key, recipe)
        # At initialisation v̂ = 0, so ε̂ = σz and the loss is known in closed form per example.
        keys = example_keys(jax.random.fold_in(key, 0), batch["index"])
        t = stratified_times(keys)
        eps = noise_batch(keys, batch["x"].shape)
        lam, dlam = sched.logsnr(t), sched.dlogsnr_dt(t)
        z = diffuse(batch["x"], eps, lam)
        sigma = jnp.sqrt(jax.nn.sigmoid(-lam))[:, None, None, None]
        err = jnp.mean((eps - sigma * z) ** 2, axis=(1, 2, 3))
        per = 0.5 * -dlam * jax.nn.sigmoid(recipe.bias - lam) * err
        return loss, metrics, per.mean()

    loss, metrics, expected = run(batch, jax.random.key(0))
    assert float(metrics["bin_loss_count"].sum()) == 16
    np.testing.assert_allclose(metrics["bin_loss_sum"].sum() / 16, loss, rtol=1e-5)
    assert np.isfinite(float(loss)) and float(metrics["x_mse"]) > 0
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_multiscale_loss():
    # SiD's multiscale loss: Σ_s (1/s)·mean((Pool_s ε − Pool_s ε̂)²) over s = 32, 64, …, d.
    model = _ExactV(0.0, 0.5)
    base = SiDRecipe.for_resolution(64)
    multi = base.replace(multiscale=True)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.uniform(-1, 1, (4, 64, 64, 1)), jnp.float32)
    batch = {"x": x, "index": jnp.arange(4, dtype=jnp.int32)}

    def pool(a):
        return a.reshape(4, 32, 2, 32, 2, 1).mean(axis=(2, 4))

    @jax.jit
    def run(key):
        full = diffusion_loss(model, batch, key, base)[0]
        ms = diffusion_loss(model, batch, key, multi)[0]
        # The 32×32 term recomputed from the same draws.
        keys = example_keys(jax.random.fold_in(key, 0), batch["index"])
        t = stratified_times(keys)
        eps = noise_batch(keys, x.shape)
        lam = base.schedule().logsnr(t)
        z = diffuse(x, eps, lam)
        alpha = jnp.sqrt(jax.nn.sigmoid(lam))[:, None, None, None]
        sigma = jnp.sqrt(jax.nn.sigmoid(-lam))[:, None, None, None]
        eps_hat = sigma * z + alpha * model(z, lam)
        term32 = jnp.mean(0.5 * jnp.mean((pool(eps) - pool(eps_hat)) ** 2, axis=(1, 2, 3)))
        return full, ms, term32

    full, ms, term32 = run(jax.random.key(2))
    np.testing.assert_allclose(ms, full / 64 + term32 / 32, rtol=1e-4)
    with pytest.raises(ValueError, match="multiscale must be False for resolutions below 32"):
        SiDRecipe.for_resolution(16, multiscale=True)


def _batch(n=16, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x": jnp.asarray(rng.uniform(-1, 1, (n, size, size, 1)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, 10, n), jnp.int32),
        "index": jnp.arange(n, dtype=jnp.int32),
    }


def test_sid2_variant_swaps_one_ingredient():
    # With its defaults the variant is SiD2; shifted cosine + ε-MSE is SiD: same loss, bitwise.
    model, batch, key = _ExactV(0.3, 0.5), _batch(), jax.random.key(1)
    same = [
        (SiD2Variant.for_resolution(16), SiD2Recipe.for_resolution(16)),
        (
            SiD2Variant.for_resolution(
                16, schedule_kind="shifted_cosine", weighting_kind="eps_mse"
            ),
            SiDRecipe.for_resolution(16),
        ),
    ]
    t = np.linspace(0.0, 1.0, 11)
    for variant, original in same:
        np.testing.assert_array_equal(variant.schedule().logsnr(t), original.schedule().logsnr(t))
        assert variant.weighting() == original.weighting()
        a = jax.jit(lambda b, k, r=variant: diffusion_loss(model, b, k, r)[0])(batch, key)
        b = jax.jit(lambda b, k, r=original: diffusion_loss(model, b, k, r)[0])(batch, key)
        assert float(a) == float(b)
    plain = SiD2Variant.for_resolution(16, schedule_kind="cosine").schedule()
    np.testing.assert_allclose(
        plain.logsnr(np.array([0.0, 0.5, 1.0])), [15.0, 0.0, -15.0], atol=1e-9
    )
    for kind in ("v_mse", "elbo", "eps_mse"):
        assert SiD2Variant.for_resolution(16, weighting_kind=kind).weighting().name == kind
    v = SiD2Variant.for_resolution(32, weighting_kind="elbo", schedule_kind="shifted_cosine")
    assert recipe_from_dict(v.to_dict()) == v and recipe_loss(v) is recipe_loss(
        SiD2Variant.for_resolution(32, weighting_kind="elbo", schedule_kind="shifted_cosine")
    )
    with pytest.raises(ValueError, match="weighting_kind must be one of"):
        SiD2Variant.for_resolution(16, weighting_kind="sigmoid_loss")
    with pytest.raises(ValueError, match="schedule_kind must be one of"):
        SiD2Variant.for_resolution(16, schedule_kind="linear")


def test_elbo_weighting_of_the_exact_denoiser_is_the_i_mmse_integral():
    # x ~ N(0.3, 0.5²): E ½(−λ')‖ε − ε̂‖² per pixel = ½∫ s²e^λ/(1 + s²e^λ) dλ = ½ ln(1 + s²e^λ)|
    # over the schedule's range (the I-MMSE relation; plain cosine on [−5, 5]).
    recipe = SiD2Variant(
        resolution=32,
        weighting_kind="elbo",
        schedule_kind="cosine",
        logsnr_min=-5.0,
        logsnr_max=5.0,
    )
    s2 = 0.25
    expected = 0.5 * (math.log1p(s2 * math.exp(5.0)) - math.log1p(s2 * math.exp(-5.0)))
    losses = np.array(_gaussian_losses(recipe, 16))
    stderr = losses.std(ddof=1) / math.sqrt(losses.size)
    assert abs(losses.mean() - expected) < 4 * stderr + 1e-4, (losses.mean(), expected, stderr)
    assert stderr < 2e-3 * expected


class _LabelAsEps(nnx.Module):
    """A conditional 'network' whose output is its label (read through its built-in embedder)."""

    prediction = "v"
    config = SimpleNamespace(num_classes=10)

    def embedders(self):
        return ("label",)

    def __call__(self, z, logsnr, cond, *, dropout_key=None):
        return jnp.broadcast_to(cond.label.astype(z.dtype)[:, None, None, None], z.shape)


def test_parameterisation_wrapper_keeps_the_condition():
    # Predicts(net, "eps") reads the labels through net: ε̂ = label exactly.
    recipe = SiD2Recipe.for_resolution(16, p_uncond=0.0)
    model = Predicts(_LabelAsEps(), "eps")
    sched = recipe.schedule()

    @jax.jit
    def run(batch, key):
        loss = diffusion_loss(model, batch, key, recipe)[0]
        explicit = diffusion_loss(model, dict(batch, cond=Cond(label=batch["label"])), key, recipe)
        keys = example_keys(jax.random.fold_in(key, 0), batch["index"])
        t = stratified_times(keys)
        eps = noise_batch(keys, batch["x"].shape)
        lam, dlam = sched.logsnr(t), sched.dlogsnr_dt(t)
        label = batch["label"].astype(jnp.float32)[:, None, None, None]
        err = jnp.mean((eps - label) ** 2, axis=(1, 2, 3))
        expected = jnp.mean(0.5 * -dlam * jax.nn.sigmoid(recipe.bias - lam) * err)
        return loss, explicit[0], expected

    loss, explicit, expected = run(_batch(), jax.random.key(2))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert float(explicit) == float(loss)
