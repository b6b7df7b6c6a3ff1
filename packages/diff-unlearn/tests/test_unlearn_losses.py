"""Loss identities at θ = θ₀ (spec checks 8, 9, 10) and the remapping targets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from diff_core import guided
from diff_pixel import Cond, as_denoiser
from diff_protocol import to_x_eps
from diff_unlearn import UnlearnData, forget_remap, retain_data, retain_distill
from diff_unlearn.losses import esd_target, noised, remap_targets
from diff_unlearn.methods.base import param_split
from diff_unlearn.testing import esd_target_reference


@pytest.fixture(scope="module")
def batch(task):
    b = next(UnlearnData(task, 16, 16, seed=0))
    return {k: jnp.asarray(v) for k, v in b.items()}


def _part(batch, name):
    return {k: batch[f"{name}_{k}"] for k in ("x", "label", "index")}


@pytest.fixture(scope="module")
def identities(theta0, setup, batch):
    """Every quantity of checks 8–10 from one compiled function (θ = θ₀)."""
    key = jax.random.key(3)
    graphdef, params, rest = param_split(theta0)
    fb, rb = _part(batch, "forget"), _part(batch, "retain")

    @jax.jit
    def run(params):
        model = nnx.merge(graphdef, params, rest)

        def distill(p):
            return retain_distill(setup, nnx.merge(graphdef, p, rest), model, rb, key)[0]

        def data(p):
            return retain_data(setup, nnx.merge(graphdef, p, rest), rb, key)[0]

        out = {"remap_self": forget_remap(setup, model, model, fb, key, target=3)[0]}
        out["distill"], g_d = jax.value_and_grad(distill)(params)
        _, g_r = jax.value_and_grad(data)(params)
        out["g_distill"] = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(g_d)))
        out["g_data"] = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(g_r)))
        n = noised(setup, fb["x"], fb["index"], key, 0)
        for eta in (0.0, 1.0, 3.0):
            out[f"esd_{eta}"] = esd_target(setup, model, n, fb["label"], eta)
            out[f"ref_{eta}"] = esd_target_reference(model, n.z, n.logsnr, fb["label"], eta)
            g = guided(as_denoiser(model), -eta, null_cond=Cond.null, batch=False)
            out[f"guided_{eta}"] = to_x_eps(
                g(n.z, n.logsnr, Cond(label=fb["label"])), n.z, n.logsnr, "v"
            )[1]
        null = Cond(label=fb["label"]).null()
        out["uncond"] = to_x_eps(model(n.z, n.logsnr, null), n.z, n.logsnr, "v")[1]
        return out

    return jax.device_get(run(params))


def test_remap_onto_the_forgotten_class_itself_is_zero(identities):
    assert abs(float(identities["remap_self"])) <= 1e-7


def test_distillation_is_zero_at_the_start(identities):
    assert abs(float(identities["distill"])) <= 1e-7
    assert float(identities["g_data"]) > 1e-3
    assert float(identities["g_distill"]) <= 1e-5 * float(identities["g_data"])


@pytest.mark.parametrize("eta", [0.0, 1.0, 3.0])
def test_esd_target_is_negative_guidance(identities, eta):
    esd = identities[f"esd_{eta}"]
    np.testing.assert_allclose(esd, identities[f"guided_{eta}"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(esd, identities[f"ref_{eta}"], rtol=0, atol=1e-5)
    if eta == 0.0:
        assert np.array_equal(esd, identities["uncond"])


def test_random_other_targets_are_uniform_over_retain_classes(setup):
    n = 100_000
    keys = jax.random.split(jax.random.key(0), n)
    labels = jnp.full((n,), 3, jnp.int32)
    targets = np.asarray(
        jax.jit(lambda k, y: remap_targets(setup, k, y, "random_other").label)(keys, labels)
    )
    assert not np.any(targets == 3)
    counts = np.bincount(targets, minlength=10)[list(setup.retain)]
    assert counts.sum() == n
    assert stats.chisquare(counts).pvalue > 0.001
    fixed = remap_targets(setup, keys[:4], labels[:4], 5)
    assert np.array_equal(np.asarray(fixed.label), [5, 5, 5, 5])
    assert np.all(np.asarray(remap_targets(setup, keys[:4], labels[:4], "null").drop))
