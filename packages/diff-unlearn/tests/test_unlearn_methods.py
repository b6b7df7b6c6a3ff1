"""Method mechanics (spec checks 5, 6, 7) and the methods' argument checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diff_unlearn import UnlearnConfig, UnlearnData, make_method, project, unlearn_trainer
from diff_unlearn.methods import METHODS
from diff_unlearn.methods.base import param_split
from diff_unlearn.methods.erasediff import erasediff, inner_descent


def _tree(rng, shapes):
    return {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes.items()}


def _dot(a, b):
    return float(
        sum(np.vdot(np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)) for k in a)
    )


@pytest.mark.smoke
def test_projection_removes_the_conflict_and_keeps_agreement():
    rng = np.random.default_rng(0)
    shapes = {"w": (7, 5), "b": (5,), "e": (3, 2, 4)}
    done = {"neg": 0, "pos": 0}
    for _ in range(200):
        g_f, g_r = _tree(rng, shapes), _tree(rng, shapes)
        out, conflict = project(g_f, g_r)
        dot = _dot(g_f, g_r)
        if dot < 0:
            assert bool(conflict)
            cos = _dot(out, g_r) / np.sqrt(_dot(out, out) * _dot(g_r, g_r))
            assert abs(cos) <= 1e-6
            done["neg"] += 1
        else:
            assert not bool(conflict)
            assert all(np.array_equal(out[k], g_f[k]) for k in g_f)
            done["pos"] += 1
    assert min(done.values()) > 50
    # g_r = 0 (θ = θ₀ for retain distillation): nothing is projected
    zero = jax.tree.map(jnp.zeros_like, g_f)
    out, conflict = project(g_f, zero)
    assert not bool(conflict) and all(np.array_equal(out[k], g_f[k]) for k in g_f)


@pytest.mark.slow
def test_salun_mask_and_frozen_complement(tmp_path, theta0, task, recipe, setup):
    method = make_method("salun", setup)
    trainer = unlearn_trainer(
        theta0,
        method,
        task,
        recipe,
        tmp_path / "salun",
        UnlearnConfig(steps=50, forget_batch=8, retain_batch=8, checkpoint_every=0, log_every=50),
        progress=False,
    )
    mask = jax.device_get(trainer.state.extra["mask"])  # the state is donated by run()
    sizes = [m.size for m in jax.tree.leaves(mask)]
    chosen = sum(int(np.sum(m)) for m in jax.tree.leaves(mask))
    assert abs(chosen / sum(sizes) - 0.5) <= 1e-4
    trainer.run()
    _, before, _ = param_split(theta0)
    _, after, _ = param_split(trainer.model())
    moved_inside, n_out = 0, 0
    for b, a, m in zip(jax.tree.leaves(before), jax.tree.leaves(after), jax.tree.leaves(mask)):
        b, a, m = np.asarray(b), np.asarray(a), np.asarray(m)
        assert np.array_equal(a[~m], b[~m])  # outside the mask: bitwise θ₀
        n_out += int((~m).sum())
        moved_inside += int(np.sum(a[m] != b[m]))
    assert n_out > 0 and moved_inside > 0.9 * chosen


@pytest.mark.slow  # one large compile (K inner gradient steps inside the step)
def test_erasediff_with_alpha_zero_is_retain_finetuning(theta0, task, setup):
    batch = {k: jnp.asarray(v) for k, v in next(UnlearnData(task, 8, 8, seed=0)).items()}
    key = jax.random.key(7)
    graphdef, params, rest = param_split(theta0)
    aux = {"original": theta0}
    ed = erasediff(setup, alpha=0.0)
    rf = make_method("retain_finetune", setup)

    @jax.jit
    def grads(params):
        def f(loss):
            return lambda p: loss(nnx.merge(graphdef, p, rest), batch, key, aux, {})[0]

        return jax.grad(f(ed.loss))(params), jax.grad(f(rf.loss))(params)

    g_ed, g_rf = grads(params)
    for a, b in zip(jax.tree.leaves(g_ed), jax.tree.leaves(g_rf)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    # the inner loop descends the forget objective from a copy; θᵢ itself is untouched
    x = jnp.arange(4.0)
    phi, values = inner_descent(lambda p: jnp.sum((p - 1.0) ** 2), x, 3, 0.1)
    assert values[0] > values[1] > values[2]
    assert np.array_equal(np.asarray(x), np.arange(4.0))
    np.testing.assert_allclose(np.asarray(phi), 1.0 + (np.arange(4.0) - 1.0) * 0.8**3, rtol=1e-6)


def test_method_arguments_are_checked(setup):
    assert set(METHODS) == {
        "retain_finetune",
        "neg_grad",
        "remap",
        "salun",
        "erasediff",
        "esd",
        "distill",
        "grad_project",
    }
    with pytest.raises(ValueError, match=r"salun: alpha must be >= 0, got -1"):
        make_method("salun", setup, alpha=-1)
    with pytest.raises(ValueError, match=r"erasediff: K \(inner steps\) must be >= 1, got 0"):
        erasediff(setup, inner_steps=0)
    with pytest.raises(
        ValueError, match="distill: target must be 'random_other', 'null' or a class"
    ):
        make_method("distill", setup, target=12)
    with pytest.raises(ValueError, match="esd: params must be 'all' or 'cond'"):
        make_method("esd", setup, params="some")
    with pytest.raises(ValueError, match="make_method: method must be one of"):
        make_method("forget_everything", setup)
    with pytest.raises(ValueError, match=r"remap takes \['alpha', 'target'\]"):
        make_method("remap", setup, beta=1.0)
    # equal methods are equal (trainers share compiled steps); the name spells the settings
    assert make_method("distill", setup).loss == make_method("distill", setup).loss
    assert make_method("distill", setup, beta=2.0).loss.__name__ == (
        "distill(beta=2.0, target='random_other', include_null=True)"
    )
