"""Explicit noise sources: ``noise(i)`` is the i-th fresh standard-normal draw shaped like the
state.

A draw is a pure function of ``(source, i)``: calling ``noise(5)`` twice, or after ``noise(7)``,
gives bitwise the same array. No code in the monorepo draws from global RNG state.

Index convention used by every sampler driver: draw 0 is the initial state ``z`` at the first grid
point; the step from grid point ``k`` to ``k + 1`` (k = 0..N−1) receives draw ``k + 1``; a method
that needs ``j ≥ 1`` extra draws per step uses indices ``k + 1 + j·(N + 1)``.

Seeds for numpy and torch draws come from :func:`derive_seed` (BLAKE2b), so draw ``i`` never depends
on how many draws happened before. With ``per_example=True`` each batch row gets its own seed, so
sample ``b`` is the same whatever the batch size (the complaint of crowsonkb/k-diffusion#25 and
huggingface/diffusers#1514).
"""

from __future__ import annotations

import hashlib
import operator
from typing import Any, Protocol, runtime_checkable

from .arrays import Array
from .checks import check_index
from .errors import arg_error

__all__ = [
    "NoiseSource",
    "derive_seed",
    "jax_noise",
    "jax_normal",
    "jax_truncated_normal",
    "jax_uniform",
    "numpy_noise",
    "register_jax_pytrees",
    "table_noise",
    "torch_noise",
]

_TAG = b"diff-protocol"
_MASK63 = (1 << 63) - 1


@runtime_checkable
class NoiseSource(Protocol):
    """``noise(i) -> array`` of fixed ``shape`` and ``dtype``; index-pure."""

    shape: tuple[int, ...]
    dtype: Any

    def __call__(self, i: Any) -> Array: ...


def derive_seed(seed: int, *path: int) -> int:
    """Seed for draw ``path`` of stream ``seed``.

    The first 8 bytes (little-endian) of BLAKE2b (64-byte digest) over ``b"diff-protocol"``
    followed by each integer of ``(seed, *path)`` as 8 little-endian unsigned bytes, masked to
    63 bits. Pure Python, stable across versions and platforms.

    >>> derive_seed(0) == derive_seed(0)
    True
    """
    h = hashlib.blake2b(_TAG)
    for pos, value in enumerate((seed, *path)):
        if isinstance(value, bool):
            raise arg_error(
                "derive_seed", "seed" if pos == 0 else "path", "integers", value, TypeError
            )
        try:
            v = operator.index(value)
        except TypeError:
            raise arg_error(
                "derive_seed", "seed" if pos == 0 else "path", "integers", value, TypeError
            ) from None
        if not 0 <= v < 1 << 64:
            raise arg_error("derive_seed", "seed" if pos == 0 else "path", "in [0, 2**64)", str(v))
        h.update(v.to_bytes(8, "little"))
    return int.from_bytes(h.digest()[:8], "little") & _MASK63


def _check_shape(func: str, shape: Any, per_example: bool) -> tuple[int, ...]:
    try:
        shape = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise arg_error(func, "shape", "a tuple of ints", repr(shape), TypeError) from None
    if any(s < 0 for s in shape):
        raise arg_error(func, "shape", "non-negative sizes", repr(shape))
    if per_example and len(shape) == 0:
        raise arg_error(func, "shape", "at least 1-D when per_example=True", repr(shape))
    return shape


def _check_index(func: str, i: Any) -> int:
    return check_index(func, "i", i)


class _NumpyNoise:
    def __init__(self, seed: int, shape: tuple[int, ...], dtype: Any, per_example: bool) -> None:
        import numpy as np

        self.seed, self.shape, self.per_example = seed, shape, per_example
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype("float32"), np.dtype("float64")):
            raise arg_error("numpy_noise", "dtype", "float32 or float64", str(self.dtype))

    def __call__(self, i: Any) -> Array:
        import numpy as np

        i = _check_index("numpy_noise", i)

        def draw(shape: tuple[int, ...], *path: int) -> Array:
            gen = np.random.Generator(np.random.PCG64(derive_seed(self.seed, *path)))
            return gen.standard_normal(shape, dtype=self.dtype)

        if not self.per_example:
            return draw(self.shape, i)
        rows = [draw(self.shape[1:], i, b) for b in range(self.shape[0])]
        return np.stack(rows) if rows else np.zeros(self.shape, self.dtype)

    def __repr__(self) -> str:
        return f"numpy_noise(seed={self.seed}, shape={self.shape}, dtype={self.dtype})"


def numpy_noise(
    seed: int, shape: tuple[int, ...], dtype: Any = "float64", per_example: bool = False
) -> NoiseSource:
    """Draw ``i`` = ``Generator(PCG64(derive_seed(seed, i))).standard_normal(shape, dtype)``.

    With ``per_example=True`` row ``b`` uses ``derive_seed(seed, i, b)``.
    """
    derive_seed(seed)
    return _NumpyNoise(seed, _check_shape("numpy_noise", shape, per_example), dtype, per_example)


class _TorchNoise:
    def __init__(
        self, seed: int, shape: tuple[int, ...], dtype: Any, device: Any, per_example: bool
    ):
        import torch

        self.seed, self.shape, self.per_example = seed, shape, per_example
        self.dtype = dtype
        self.device = torch.device(device)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise arg_error(
                "torch_noise", "dtype", "a floating torch.dtype", repr(dtype), TypeError
            )

    def __call__(self, i: Any) -> Array:
        import torch

        i = _check_index("torch_noise", i)

        def draw(shape: tuple[int, ...], *path: int) -> Array:
            gen = torch.Generator(device=self.device).manual_seed(derive_seed(self.seed, *path))
            return torch.randn(shape, generator=gen, dtype=self.dtype, device=self.device)

        if not self.per_example:
            return draw(self.shape, i)
        if self.shape[0] == 0:
            return torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        return torch.stack([draw(self.shape[1:], i, b) for b in range(self.shape[0])])

    def __repr__(self) -> str:
        return f"torch_noise(seed={self.seed}, shape={self.shape}, dtype={self.dtype})"


def torch_noise(
    seed: int,
    shape: tuple[int, ...],
    dtype: Any = None,
    device: Any = "cpu",
    per_example: bool = False,
) -> NoiseSource:
    """Draw ``i`` from a fresh ``torch.Generator(device).manual_seed(derive_seed(seed, i))``.

    ``dtype`` defaults to ``torch.float32``. With ``per_example=True`` row ``b`` uses
    ``derive_seed(seed, i, b)``.
    """
    import torch

    derive_seed(seed)
    shape = _check_shape("torch_noise", shape, per_example)
    return _TorchNoise(seed, shape, torch.float32 if dtype is None else dtype, device, per_example)


def jax_normal(key: Any, shape: tuple[int, ...], dtype: Any = None) -> Array:
    """``jax.random.normal(key, shape, dtype)``, bitwise, drawn as one flat vector and reshaped.

    The values are the same: a threefry draw (JAX's default key) gives element ``j`` of the
    row-major order the same bits whatever the shape. The compile is not: XLA's CPU compiler
    (jax 0.10.2) spends 6.7 s on a draw of shape (4096, 4, 16, 16, 1), 1.9 s on (8, 32, 32, 3)
    and 2.0 s on (3, 5, 7), against 0.4-0.5 s for the same counts drawn flat, once per jitted
    program and per shape in eager code (``benchmarks/normal_compile.py`` measures it). Other key
    implementations (``rbg``) are drawn with ``shape`` directly. ``dtype`` defaults to float32.
    Inside ``jax.vmap`` over keys it gives the same values as the vmapped ``jax.random.normal``.
    """
    import jax

    return _flat_draw(jax.random.normal, key, shape, dtype)


def jax_uniform(
    key: Any, shape: tuple[int, ...], dtype: Any = None, minval: Any = 0.0, maxval: Any = 1.0
) -> Array:
    """``jax.random.uniform(key, shape, dtype, minval, maxval)``, bitwise, drawn flat and
    reshaped for the compile time :func:`jax_normal` explains (2.1 s against 0.4 s for an image
    batch). ``minval`` / ``maxval`` must be scalars here."""
    import jax

    return _flat_draw(jax.random.uniform, key, shape, dtype, minval=minval, maxval=maxval)


def jax_truncated_normal(
    key: Any, lower: Any, upper: Any, shape: tuple[int, ...], dtype: Any = None
) -> Array:
    """``jax.random.truncated_normal(key, lower, upper, shape, dtype)``, bitwise, drawn flat and
    reshaped for the compile time :func:`jax_normal` explains (a 4-D conv kernel: 1.5-2 s against
    0.4 s; it is the draw of Flax's default ``lecun_normal`` kernel initialiser). ``lower`` /
    ``upper`` must be scalars here."""
    import jax

    return _flat_draw(jax.random.truncated_normal, key, shape, dtype, lower=lower, upper=upper)


def _flat_draw(sampler: Any, key: Any, shape: tuple[int, ...], dtype: Any, **kwargs: Any) -> Array:
    """``sampler(key, shape=shape, dtype=dtype, **kwargs)`` (dtype None: float32), drawn flat and
    reshaped for threefry keys of rank >= 2 (the same bits, a fraction of the compile)."""
    import math

    import jax.numpy as jnp

    kwargs["dtype"] = jnp.float32 if dtype is None else dtype
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2 or not _threefry(key):
        return sampler(key, shape=shape, **kwargs)
    return sampler(key, shape=(math.prod(shape),), **kwargs).reshape(shape)


def _threefry(key: Any) -> bool:
    import jax

    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return str(jax.random.key_impl(key)) == "threefry2x32"
    return str(jax.config.jax_default_prng_impl) == "threefry2x32"


class JaxNoise:
    """``normal(fold_in(key, i), shape)``; a pytree (key is the leaf) usable inside ``lax.scan``."""

    def __init__(self, key: Any, shape: tuple[int, ...], dtype: Any, per_example: bool) -> None:
        self.key, self.shape, self.dtype, self.per_example = key, shape, dtype, per_example

    def __call__(self, i: Any) -> Array:
        import jax

        i = check_index("jax_noise", "i", i)  # a traced i (inside lax.scan) passes unchecked
        k = jax.random.fold_in(self.key, i)
        if not self.per_example:
            return jax_normal(k, self.shape, self.dtype)
        import jax.numpy as jnp

        rows = jnp.arange(self.shape[0], dtype=jnp.uint32)
        keys = jax.vmap(lambda b: jax.random.fold_in(k, b))(rows)
        return jax.vmap(lambda kb: jax_normal(kb, self.shape[1:], self.dtype))(keys)

    def __repr__(self) -> str:
        return f"jax_noise(shape={self.shape}, dtype={self.dtype}, per_example={self.per_example})"


class TableNoise:
    """Draw ``i`` = ``table[i]``: the same values on every backend (parity tests)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.table.shape[1:])

    @property
    def dtype(self) -> Any:
        return self.table.dtype

    @property
    def n_draws(self) -> int:
        return int(self.table.shape[0])

    def __call__(self, i: Any) -> Array:
        i = check_index("table_noise", "i", i, self.n_draws)  # traced i passes unchecked
        return self.table[i, ...]  # the trailing ellipsis is what the array API requires

    def __repr__(self) -> str:
        return f"table_noise(draws={self.n_draws}, shape={self.shape}, dtype={self.dtype})"


_JAX_REGISTERED = False


def register_jax_pytrees() -> None:
    """Register :class:`JaxNoise` and :class:`TableNoise` as JAX pytrees (idempotent).

    Called by :func:`jax_noise` and by JAX drivers, so noise sources are traced arguments of a
    jitted sampling loop: a new key or table does not recompile.
    """
    global _JAX_REGISTERED
    if _JAX_REGISTERED:
        return
    import jax

    jax.tree_util.register_pytree_node(
        JaxNoise,
        lambda n: ((n.key,), (n.shape, n.dtype, n.per_example)),
        lambda aux, children: JaxNoise(children[0], *aux),
    )
    jax.tree_util.register_pytree_node(
        TableNoise, lambda n: ((n.table,), None), lambda aux, children: TableNoise(children[0])
    )
    _JAX_REGISTERED = True


def jax_noise(key: Any, shape: tuple[int, ...], dtype: Any = None, per_example: bool = False):
    """Draw ``i`` = ``jax.random.normal(fold_in(key, i), shape, dtype)`` (default float32).

    With ``per_example=True`` row ``b`` uses ``fold_in(fold_in(key, i), b)``. The source is a
    pytree, so it can be passed through ``jax.jit`` and called with a traced ``i`` in ``lax.scan``.
    """
    import jax
    import jax.numpy as jnp

    func = "jax_noise"
    register_jax_pytrees()
    shape = _check_shape(func, shape, per_example)
    key_dtype = getattr(key, "dtype", None)
    if key_dtype is None:
        raise arg_error(func, "key", "a JAX PRNG key (jax.random.key or PRNGKey)", key, TypeError)
    typed = jax.dtypes.issubdtype(key_dtype, jax.dtypes.prng_key)
    if not typed and not (str(key_dtype) == "uint32" and tuple(key.shape) == (2,)):
        raise arg_error(
            func,
            "key",
            "a JAX PRNG key (jax.random.key, or PRNGKey: uint32 of shape (2,))",
            key,
            TypeError,
        )
    try:
        dt = jnp.dtype(jnp.float32 if dtype is None else dtype)
    except TypeError:
        raise arg_error(func, "dtype", "a real floating dtype", repr(dtype), TypeError) from None
    if not jnp.issubdtype(dt, jnp.floating):
        raise arg_error(func, "dtype", "a real floating dtype", str(dt), TypeError)
    if not isinstance(per_example, bool):
        raise arg_error(func, "per_example", "True or False", per_example, TypeError)
    return JaxNoise(key, shape, dt, per_example)


def table_noise(table: Array) -> NoiseSource:
    """Noise source reading precomputed draws: ``noise(i) = table[i]``, ``table`` of shape
    ``(n, ...)``."""
    shape = getattr(table, "shape", None)
    if shape is None or len(shape) < 1:
        raise arg_error(
            "table_noise", "table", "an array with a leading draw axis", table, TypeError
        )
    if type(table).__module__.startswith("jax"):
        register_jax_pytrees()
    return TableNoise(table)
