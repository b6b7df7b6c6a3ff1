"""Classifier-free guidance over pytree conditions, and Guided as a JAX pytree.

The condition here is shaped like diff-pixel's ``Cond``: a registered dataclass whose ``drop`` flags
are None on the conditional side and an array on the null side, with a ``concat`` method and a
``null`` method passed as the callable ``null_cond``. Every guided output is compared with the
hand-written CFG combination ``out_u + w (out_c − out_u)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import array_api_compat
import numpy as np
import pytest

from diff_core import grids, sample
from diff_core.guidance import guided, in_interval, uncond_evaluations
from diff_core.samplers import ddim
from diff_core.schedules import CosineSchedule
from diff_protocol import as_denoiser

jax = pytest.importorskip("jax")
jnp = jax.numpy

from diff_core._jax_scan import _sample_jit  # noqa: E402  (needs jax)

INTERVAL = (-1.0, 3.0)
SCALE = 3.0
B = 16
GRID = grids.uniform_t(CosineSchedule(-10.0, 10.0), 16)


@dataclasses.dataclass
class Cond:
    label: Any
    drop: Any = None  # None: keep every label; a bool (B,) array: drop where True

    def null(self) -> Cond:
        xp = array_api_compat.array_namespace(self.label)
        return Cond(self.label, xp.ones(self.label.shape, dtype=xp.bool))

    def concat(self, other: Cond) -> Cond:
        xp = array_api_compat.array_namespace(self.label)

        def flags(c):
            return xp.zeros(c.label.shape, dtype=xp.bool) if c.drop is None else c.drop

        return Cond(xp.concat([self.label, other.label]), xp.concat([flags(self), flags(other)]))


jax.tree_util.register_dataclass(Cond, data_fields=["label", "drop"], meta_fields=[])


@dataclasses.dataclass
class CondMLP:
    """An ε-denoiser with a label embedding (row 0 of ``emb`` is the null embedding)."""

    w1: Any
    emb: Any
    w2: Any
    prediction: str = "eps"

    def __call__(self, z, logsnr, cond):
        xp = array_api_compat.array_namespace(z)  # also runs in the numpy loop (references)
        keep = xp.ones(cond.label.shape, dtype=xp.bool) if cond.drop is None else ~cond.drop
        e = xp.where(keep[:, None], xp.take(self.emb, cond.label + 1, axis=0), self.emb[0, ...])
        h = xp.tanh(z @ self.w1 + e + 0.05 * logsnr[:, None])
        return h @ self.w2


jax.tree_util.register_dataclass(
    CondMLP, data_fields=["w1", "emb", "w2"], meta_fields=["prediction"]
)


def _model(seed: int) -> CondMLP:
    rng = np.random.default_rng(seed)
    return CondMLP(
        jnp.asarray(rng.standard_normal((2, 16)), jnp.float32),
        jnp.asarray(rng.standard_normal((4, 16)), jnp.float32),
        jnp.asarray(0.3 * rng.standard_normal((16, 2)), jnp.float32),
    )


def _cond():
    return Cond(jnp.asarray(np.arange(B) % 3, jnp.int32))


def _z(seed: int = 0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((B, 2)), jnp.float32)


def _by_hand(model, z, lam, cond, interval):
    """``out_u + w (out_c − out_u)``, written out (no diff_core.guidance)."""
    out_c = model(z, lam, cond)
    out_u = model(z, lam, cond.null())
    if interval is None:
        return out_u + SCALE * (out_c - out_u)
    inside = (lam >= interval[0]) & (lam < interval[1])
    w = inside[:, None] * (SCALE - 1.0) + 1.0
    return out_u + w * (out_c - out_u)


def _as_numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def test_guided_pytree_condition_under_jit_equals_hand_written_cfg():
    model, z, cond = _model(0), _z(), _cond()
    lam = jnp.linspace(-4.0, 6.0, B)  # per example, across both ends of the interval
    cases = [(iv, batch) for iv in (None, INTERVAL) for batch in (True, False)]
    gs = tuple(guided(model, SCALE, null_cond=Cond.null, interval=iv, batch=b) for iv, b in cases)
    # the Guided objects are arguments of jax.jit (pytrees), the interval case runs lax.cond
    outs = jax.jit(lambda gs, zz, ll, cc: [g(zz, ll, cc) for g in gs])(gs, z, lam, cond)
    for (iv, _), out in zip(cases, outs, strict=True):
        np.testing.assert_allclose(out, _by_hand(model, z, lam, cond, iv), rtol=1e-6, atol=1e-5)
    # eagerly as well, where the interval branch is taken on the host
    eager = guided(model, SCALE, null_cond=Cond.null, interval=INTERVAL)(z, lam, cond)
    np.testing.assert_allclose(eager, _by_hand(model, z, lam, cond, INTERVAL), atol=1e-5)
    assert not bool(jnp.all(in_interval(lam, INTERVAL)))  # some examples are outside


@dataclasses.dataclass
class Counting:
    """Wraps a denoiser and counts, at run time, the calls that carry the null half (2B rows)."""

    inner: Any
    prediction: str = "eps"

    def __call__(self, z, logsnr, cond):
        if z.shape[0] == 2 * B:  # static: the batched conditional + null call
            jax.debug.callback(lambda: HITS.append(1))
        return self.inner(z, logsnr, cond)


jax.tree_util.register_dataclass(Counting, data_fields=["inner"], meta_fields=["prediction"])
HITS: list = []


def _cfg_denoiser(model, interval):
    def fn(z, lam, cond):
        return _by_hand(model, z, lam, cond, interval)

    return as_denoiser(fn, "eps")


@pytest.mark.parametrize("interval", [None, INTERVAL])
def test_guided_sampling_equals_hand_written_cfg_and_skips_outside_the_interval(interval):
    model, z, cond = _model(1), _z(), _cond()
    HITS.clear()
    g = guided(Counting(model), SCALE, null_cond=Cond.null, interval=interval)
    x = sample(g, ddim(), GRID, None, z_init=z, cond=cond)
    jax.effects_barrier()
    # reference: the hand-written combination sampled by the numpy loop with the same weights
    ref = sample(
        _cfg_denoiser(_as_numpy(model), interval),
        ddim(),
        GRID,
        None,
        z_init=np.asarray(z),
        cond=_as_numpy(cond),
    )
    np.testing.assert_allclose(np.asarray(x), ref, rtol=1e-5, atol=1e-5)
    # lax.cond runs the null half only at the grid points inside the interval
    assert len(HITS) == uncond_evaluations(GRID, "denoise", interval)
    if interval is not None:
        assert 0 < len(HITS) < GRID.n_steps


def test_guided_pytree_denoiser_does_not_recompile_for_new_weights():
    model, z, cond = _model(2), _z(), _cond()
    g = guided(Counting(model), SCALE, null_cond=Cond.null, interval=INTERVAL)
    old = np.asarray(sample(g, ddim(), GRID, None, z_init=z, cond=cond))
    size = _sample_jit._cache_size()
    new = _model(3)
    model.w1, model.emb, model.w2 = new.w1, new.emb, new.w2  # in place, same Guided object
    updated = np.asarray(sample(g, ddim(), GRID, None, z_init=z, cond=cond))
    fresh = guided(Counting(new), SCALE, null_cond=Cond.null, interval=INTERVAL)
    swapped = np.asarray(sample(fresh, ddim(), GRID, None, z_init=z, cond=_cond()))
    assert _sample_jit._cache_size() == size
    assert np.abs(updated - old).max() > 1e-2
    np.testing.assert_array_equal(updated, swapped)
    # the weights are Guided's pytree leaves; Cond.null, the scale and the interval are static
    assert len(jax.tree_util.tree_leaves(g)) == 3
    # a pytree null condition is a child: its arrays are traced as well
    assert len(jax.tree_util.tree_leaves(guided(model, SCALE, null_cond=cond.null()))) == 5


def test_structure_mismatch_without_concat_names_both_structures():
    def fn(z, lam, cond):
        return z * (1.0 + cond[0][:, None])

    den = as_denoiser(fn, "x")
    z, lam = _z(), jnp.zeros(B)
    cond = (jnp.ones(B), None)  # a tuple pytree with no concat method

    def null(c):
        return (jnp.zeros(B), jnp.ones(B, bool))

    with pytest.raises(ValueError, match=r"tree structure of cond.*got PyTreeDef\(\(\*, \*\)\)"):
        guided(den, 2.0, null_cond=null)(z, lam, cond)
    # an equal structure is concatenated leaf by leaf; batch=False calls the null separately
    same = (jnp.ones(B), jnp.zeros(B))
    for batch in (True, False):
        out = guided(den, 2.0, null_cond=lambda c: (0 * c[0], c[1]), batch=batch)(z, lam, same)
        np.testing.assert_allclose(out, z * 1.0 + 2.0 * (2.0 * z - z), rtol=0, atol=1e-6)


def test_callable_null_cond_on_numpy():
    def fn(z, lam, cond):
        return z * (1.0 + cond["label"][:, None])

    den = as_denoiser(fn, "x")
    z, lam = np.linspace(-1, 1, 8)[:, None], np.zeros(8)
    cond = {"label": np.full(8, 2.0)}
    by_number = guided(den, 4.0, null_cond=0.0)(z, lam, cond)
    by_callable = guided(den, 4.0, null_cond=lambda c: {"label": np.zeros(8)})(z, lam, cond)
    np.testing.assert_array_equal(by_callable, by_number)
    np.testing.assert_allclose(by_number, z + 4.0 * (3.0 * z - z), rtol=1e-15)
