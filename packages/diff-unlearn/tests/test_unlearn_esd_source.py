"""ESD with z_t from the model's own partial trajectories (``source="model"``): the states are
those of a DDIM loop written here, the stops cover the grid, and no gradient flows through the
sampling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diff_pixel import Cond, example_keys
from diff_protocol import to_x_eps
from diff_unlearn import UnlearnData, forget_esd, make_method
from diff_unlearn.losses import KeyedNoise, _error, esd_target, model_trajectory_inputs
from diff_unlearn.methods.base import param_split

STEPS, GUIDANCE, B = 4, 3.0, 24


@jax.jit
def _x(model, z, lam, cond):
    return to_x_eps(model(z, lam, cond, dropout_key=None), z, lam, "v")[0]


def _reference_states(model, schedule, labels, keys):
    """z after k guided DDIM steps (k = 0..STEPS−1) for every example, written out in float64
    from the model's float32 outputs: x̂ = clip(x̂_∅ + w (x̂_c − x̂_∅)), ε̂ = (z − α x̂)/σ,
    z ← α_s x̂ + σ_s ε̂."""
    t = 1.0 - np.arange(STEPS + 1) / STEPS
    lam = np.asarray(schedule.logsnr(t), np.float64)
    noise = KeyedNoise(jax.vmap(lambda k: jax.random.fold_in(k, 6))(keys), (B, 8, 8, 1))
    z = np.asarray(noise(0), np.float64)
    states = [z]
    cond = Cond(label=jnp.asarray(labels, jnp.int32))
    for k in range(STEPS - 1):
        zf = jnp.asarray(z, jnp.float32)
        lk = jnp.full((B,), lam[k], jnp.float32)

        def x_of(c, zf=zf, lk=lk):
            return np.asarray(_x(model, zf, lk, c), np.float64)

        xc, xu = x_of(cond), x_of(cond.null())
        x = np.clip(xu + GUIDANCE * (xc - xu), -1.0, 1.0)
        a_t, s_t = np.sqrt(1 / (1 + np.exp(-lam[k]))), np.sqrt(1 / (1 + np.exp(lam[k])))
        a_s, s_s = np.sqrt(1 / (1 + np.exp(-lam[k + 1]))), np.sqrt(1 / (1 + np.exp(lam[k + 1])))
        eps = (z - a_t * x) / s_t
        z = a_s * x + s_s * eps
        states.append(z)
    return np.stack(states), t[:STEPS]


@pytest.fixture(scope="module")
def forget_batch(task):
    b = next(UnlearnData(task, B, 4, seed=0))
    return {k[len("forget_") :]: jnp.asarray(v) for k, v in b.items() if k.startswith("forget_")}


@pytest.fixture(scope="module")
def computed(theta0, setup, forget_batch):
    """Everything from one compiled function: the trajectory inputs, the ESD loss with
    ``source="model"``, the same loss on those inputs given as constants, and the gradient of
    the inputs with respect to θ."""
    key = jax.random.key(11)
    graphdef, params, rest = param_split(theta0)
    labels = forget_batch["label"]
    keys = example_keys(jax.random.fold_in(key, 0), forget_batch["index"])

    def inputs(p):
        m = nnx.merge(graphdef, p, rest)
        return model_trajectory_inputs(
            setup, m, Cond(label=labels), keys, (B, 8, 8, 1), STEPS, GUIDANCE
        )

    @jax.jit
    def run(p):
        m = nnx.merge(graphdef, p, rest)
        n = inputs(p)
        loss = forget_esd(
            setup,
            m,
            theta0,
            forget_batch,
            key,
            1.0,
            source="model",
            sample_steps=STEPS,
            sample_guidance=GUIDANCE,
        )[0]
        c = jax.tree.map(jax.lax.stop_gradient, n)
        eps_star = esd_target(setup, theta0, c, labels, 1.0)
        out = m(c.z, c.logsnr, Cond(label=labels), dropout_key=None).astype(jnp.float32)
        fixed = jnp.mean(_error(setup, m, out, c, eps_star))
        dz = jax.grad(lambda q: jnp.sum(inputs(q).z ** 2))(p)
        return {"n": n, "loss": loss, "fixed": fixed, "dz": dz}

    return jax.device_get(run(params)), keys


def test_partial_trajectories_are_ddim_states(theta0, setup, forget_batch, computed):
    out, keys = computed
    n = out["n"]
    stops = np.asarray(
        jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 5), (), 0, STEPS))(keys)
    )
    assert set(stops.tolist()) == set(range(STEPS))  # every stop of the grid occurs
    states, t = _reference_states(theta0, setup.recipe.schedule(), forget_batch["label"], keys)
    want = states[stops, np.arange(B)]
    z = np.asarray(n.z)
    first = stops == 0
    assert np.array_equal(z[first], want[first].astype(np.float32))  # the initial noise, bitwise
    np.testing.assert_allclose(z, want, rtol=0, atol=2e-5)
    sched = setup.recipe.schedule()
    np.testing.assert_allclose(np.asarray(n.logsnr), sched.logsnr(t[stops]), rtol=1e-6)
    assert np.abs(z[~first]).mean() > 0.1


def test_no_gradient_flows_through_the_sampling(computed):
    """The inputs carry no gradient (exactly zero), and the loss is the ESD loss on them: θ
    moves only through its own prediction at z_t."""
    out, _ = computed
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(out["dz"]))
    assert float(out["loss"]) > 0
    np.testing.assert_allclose(float(out["loss"]), float(out["fixed"]), rtol=1e-4)


def test_esd_source_arguments(setup):
    m = make_method("esd", setup, source="model", sample_steps=10)
    assert dict(m.hparams)["source"] == "model" and "source='model'" in m.loss.__name__
    with pytest.raises(ValueError, match=r"esd: source must be one of \('data', 'model'\)"):
        make_method("esd", setup, source="trajectory")
    with pytest.raises(ValueError, match="esd: sample_steps must be an int >= 1, got 0"):
        make_method("esd", setup, source="model", sample_steps=0)
