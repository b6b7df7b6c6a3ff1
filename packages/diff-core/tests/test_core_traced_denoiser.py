"""The JAX driver traces a denoiser's (and noise source's, and condition's) array leaves.

A pytree-registered denoiser updated in place, or swapped for another of the same structure, must
give the new samples on the next call without recompiling; plain functions and unregistered
objects stay static as in diff-core 0.1; an unhashable static part is a clear TypeError. The
float policy of the driver (diff_core.sampling) is checked on every backend at the end.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import array_api_compat
import numpy as np
import pytest

from diff_core import grids, sample
from diff_core.samplers import ddim, ddpm
from diff_core.schedules import CosineSchedule
from diff_protocol import as_denoiser, numpy_noise, table_noise

jax = pytest.importorskip("jax")
jnp = jax.numpy

from diff_core._jax_partition import partition  # noqa: E402  (needs jax)
from diff_core._jax_scan import _sample_jit  # noqa: E402

GRID = grids.uniform_t(CosineSchedule(-10.0, 10.0), 6)
SHAPE = (32, 2)


@dataclasses.dataclass
class MLP:
    """A tiny ε-denoiser holding its weights as pytree children."""

    w1: Any
    b1: Any
    w2: Any
    prediction: str = "eps"

    def __call__(self, z, logsnr, cond=None):
        xp = array_api_compat.array_namespace(z)  # also runs in the numpy loop (references)
        h = xp.tanh(z @ self.w1 + 0.05 * logsnr[:, None] + self.b1)
        return h @ self.w2


jax.tree_util.register_dataclass(MLP, data_fields=["w1", "b1", "w2"], meta_fields=["prediction"])


def _mlp(seed: int) -> MLP:
    rng = np.random.default_rng(seed)
    return MLP(
        jnp.asarray(rng.standard_normal((2, 16)), jnp.float32),
        jnp.asarray(0.1 * rng.standard_normal(16), jnp.float32),
        jnp.asarray(0.2 * rng.standard_normal((16, 2)), jnp.float32),
    )


@dataclasses.dataclass
class KeyNoise:
    """A noise source of our own: ``normal(fold_in(key, i))``, a registered dataclass."""

    key: Any
    shape: tuple

    def __call__(self, i):
        return jax.random.normal(jax.random.fold_in(self.key, i), self.shape, jnp.float32)


jax.tree_util.register_dataclass(KeyNoise, data_fields=["key"], meta_fields=["shape"])


def _z_init(seed: int = 0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(SHAPE), jnp.float32)


def _as_numpy(model: MLP) -> MLP:
    return MLP(*(np.asarray(w) for w in (model.w1, model.b1, model.w2)))


def _ddpm(den, key: int):
    return np.asarray(sample(den, ddpm(), GRID, KeyNoise(jax.random.key(key), SHAPE)))


def _reference(model: MLP, key: int):
    """The numpy Python loop with the same weights and the same draws."""
    source = KeyNoise(jax.random.key(key), SHAPE)
    table = np.stack([np.asarray(source(i)) for i in range(GRID.n_steps + 1)])
    return sample(_as_numpy(model), ddpm(), GRID, table_noise(table))


def test_weights_updated_in_place_reach_the_next_call_without_recompiling():
    model = _mlp(0)
    old = _ddpm(model, 0)
    size = _sample_jit._cache_size()
    other = _mlp(1)
    # (b) an equal-structure denoiser with other weights: no recompile, different samples
    swapped = _ddpm(other, 0)
    assert _sample_jit._cache_size() == size
    assert np.abs(swapped - old).max() > 1e-2
    # (a) the same wrapper object with its weights replaced in place: the new samples, exactly
    # those of a fresh wrapper holding the new weights (0.1 gave the old samples here)
    model.w1, model.b1, model.w2 = other.w1, other.b1, other.w2
    updated = _ddpm(model, 0)
    assert _sample_jit._cache_size() == size
    np.testing.assert_array_equal(updated, swapped)
    # and they are right: the numpy Python loop with the same weights gives the same samples
    np.testing.assert_allclose(updated, _reference(other, 0), rtol=2e-5, atol=1e-5)
    # numpy weights are array leaves as well: traced arguments, not constants
    arrays, static = partition(_as_numpy(other))
    assert len(arrays) == 3 and static == partition(other)[1]


def test_pytree_noise_source_is_traced():
    model = _mlp(0)
    a = _ddpm(model, 0)
    size = _sample_jit._cache_size()
    b = _ddpm(model, 1)
    assert _sample_jit._cache_size() == size  # a new key: no recompile
    assert np.abs(a - b).max() > 0.1
    arrays, _ = partition(KeyNoise(jax.random.key(1), SHAPE), name="noise")
    assert len(arrays) == 1
    # the draws used are the source's: the numpy loop fed the same draws gives the same samples
    np.testing.assert_allclose(b, _reference(model, 1), rtol=2e-5, atol=1e-5)


class Unregistered:
    """An object JAX does not know as a pytree: one static leaf, hashed by identity."""

    prediction = "eps"

    def __init__(self, model: MLP) -> None:
        self.model = model

    def __call__(self, z, logsnr, cond=None):
        return self.model(z, logsnr)


def test_plain_functions_and_unregistered_objects_stay_static():
    model = _mlp(3)
    obj = Unregistered(model)
    seen = []

    def fn(z, lam, cond):
        seen.append(type(cond["scale"]))
        return cond["scale"] * model(z, lam) + cond["shift"][:, None]

    plain = as_denoiser(fn, "eps")
    for den in (plain, obj):  # one static leaf each: no traced arrays
        arrays, static = partition(den)
        assert arrays == [] and static.leaves == (den,)
    cond = {"shift": jnp.zeros(SHAPE[0], jnp.float32), "scale": 1.0}
    first = np.asarray(sample(plain, ddim(), GRID, None, z_init=_z_init(), cond=cond))
    size = _sample_jit._cache_size()
    # the same function with a new z and new condition arrays: no recompile
    shifted = {**cond, "shift": jnp.full(SHAPE[0], 0.1, jnp.float32)}
    again = np.asarray(sample(plain, ddim(), GRID, None, z_init=_z_init(1), cond=shifted))
    assert _sample_jit._cache_size() == size
    assert seen and all(t is float for t in seen)  # the Python number in cond stayed static
    # it still samples right: the numpy loop with the same weights and condition
    np_cond = {"shift": np.full(SHAPE[0], 0.1, np.float32), "scale": 1.0}
    np_plain = as_denoiser(
        lambda z, lam, c: c["scale"] * _as_numpy(model)(z, lam) + c["shift"][:, None], "eps"
    )
    reference = sample(np_plain, ddim(), GRID, None, z_init=np.asarray(_z_init(1)), cond=np_cond)
    np.testing.assert_allclose(again, reference, rtol=2e-5, atol=1e-5)
    assert np.abs(again - first).max() > 1e-2
    # ``plain`` is itself an unregistered object (as_denoiser's wrapper) around a plain
    # function: the path every static denoiser takes, ``obj`` included (one leaf, see above)


@dataclasses.dataclass
class Helper:  # eq=True without frozen: __hash__ is None
    scale: float = 1.0


@dataclasses.dataclass
class WithHelper:
    w: Any
    helper: Any
    prediction: str = "x"

    def __call__(self, z, logsnr, cond=None):
        return self.helper.scale * self.w * z


jax.tree_util.register_dataclass(
    WithHelper, data_fields=["w", "helper"], meta_fields=["prediction"]
)


def test_unhashable_static_part_is_a_clear_type_error():
    z = _z_init()
    den = WithHelper(jnp.ones(2), Helper())
    with pytest.raises(TypeError) as info:
        sample(den, ddim(), GRID, None, z_init=z)
    msg = str(info.value)
    assert msg.startswith("sample: under JAX the non-array parts of denoiser")
    assert "denoiser.helper of unhashable type Helper" in msg
    assert "register_dataclass" in msg
    # an unregistered, unhashable object as the whole denoiser
    bare = dataclasses.make_dataclass("Bare", [("prediction", str)], namespace={"__call__": None})
    with pytest.raises(TypeError, match=r"got denoiser of unhashable type Bare"):
        partition(bare("x"))
    with pytest.raises(TypeError, match=r"non-array parts of cond .* got cond\['flags'\]"):
        partition({"flags": {1, 2}, "label": jnp.zeros(3)}, name="cond")


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_float_policy_denoiser_sees_working_dtype(name):
    """State in its own dtype (bf16 worked in float32), logsnr a (B,) vector in the working dtype."""
    seen = []

    def fn(z, lam):
        seen.append((str(lam.dtype).rsplit(".", 1)[-1], tuple(lam.shape), str(z.dtype)))
        return 0.5 * z

    den = as_denoiser(fn, "x")
    grid = grids.uniform_t(CosineSchedule(-10.0, 10.0), 4)
    if name == "numpy":
        z = numpy_noise(0, (8, 2))(0).astype(np.float32)
        state_dt, work_dt = "float32", "float32"
    elif name == "torch":
        torch = pytest.importorskip("torch")
        z = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.bfloat16)
        state_dt, work_dt = "bfloat16", "float32"
    else:
        z = jnp.asarray(np.random.default_rng(0).standard_normal((8, 2)), jnp.bfloat16)
        state_dt, work_dt = "bfloat16", "float32"
    out = sample(den, ddim(), grid, None, z_init=z, final="step")
    assert str(out.dtype).rsplit(".", 1)[-1] == state_dt
    assert seen and all(s == (work_dt, (8,), str(z.dtype)) for s in seen)
