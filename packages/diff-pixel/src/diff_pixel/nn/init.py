"""Parameter initialisers that draw on the host: fast, deterministic construction.

Building a model eagerly with ``jax.random`` initialisers runs one small XLA program per parameter
shape (each compiled on first use: ~8 s for ``tiny-16`` in a fresh process), and a jitted
construction compiles one large program of the same random ops (several seconds on CPU). The
initialisers here draw the values with NumPy from the layer's own key instead:

- eagerly (the usual case), the key's words seed a NumPy ``Generator`` (PCG64) and the values
  are placed on the device with ``jax.device_put``, so no XLA program is compiled;
- inside a trace (``jax.jit``, ``nnx.jit``), the same host function runs through
  ``jax.pure_callback``, so a jitted construction gives the very same values;
- under ``jax.eval_shape`` / ``nnx.eval_shape`` nothing is drawn (abstract models cost nothing).

So the values are a deterministic function of the key (hence of the seed of ``nnx.Rngs``) in
every context. The distributions are those of the ``jax.nn.initializers`` of the same name
(``variance_scaling`` with truncation at ±2 standard deviations before rescaling, as in JAX and
Flax); the values themselves differ from ``jax.random``'s. Within :func:`device_init` the
initialisers draw with ``jax.random`` on the device instead (the 0.1 behaviour, kept as the
baseline of ``benchmarks/build_time.py``).
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import math
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from diff_protocol import jax_normal, jax_truncated_normal

__all__ = [
    "Initializer",
    "dense_inits",
    "device_init",
    "jax_lecun_normal",
    "lecun_normal",
    "norm_inits",
    "normal",
    "ones",
    "variance_scaling",
    "zeros",
]

_DEVICE: contextvars.ContextVar[bool] = contextvars.ContextVar("device_init", default=False)
_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")
# Standard deviation of a standard normal truncated to [-2, 2] (JAX's constant).
_TRUNC_STD = 0.87962566103423978


@contextlib.contextmanager
def device_init() -> Iterator[None]:
    """Within the context, initialisers draw with ``jax.random`` on the device (one XLA program
    per parameter shape when eager): the pre-0.2 construction path, kept for benchmarks."""
    token = _DEVICE.set(True)
    try:
        yield
    finally:
        _DEVICE.reset(token)


def _key_words(key: Any) -> jax.Array:
    """The raw uint32 words of a PRNG key (typed or legacy)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return jnp.asarray(key)


def _canonical_shape(shape: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except TypeError as exc:
        raise TypeError(f"initializer: shape must be a sequence of ints, got {shape!r}") from exc
    if any(s < 0 for s in out):
        raise ValueError(f"initializer: shape must have non-negative sizes, got {out}")
    return out


class Initializer(abc.ABC):
    """``init(key, shape, dtype=float32) -> array``, Flax's initializer signature.

    Subclasses implement :meth:`host` (NumPy, from a ``Generator``) and :meth:`device`
    (``jax.random``, the same distribution).
    """

    uses_key = True

    @abc.abstractmethod
    def host(self, rng: np.random.Generator | None, shape: tuple[int, ...]) -> np.ndarray:
        """The values on the host (NumPy draws from ``rng``)."""

    @abc.abstractmethod
    def device(self, key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        """The same distribution with ``jax.random`` (the 0.1-style device path)."""

    def _host_cast(self, words: np.ndarray | None, shape: tuple[int, ...], dtype: Any) -> Any:
        rng = None
        if words is not None:
            entropy = [int(w) for w in np.asarray(words, np.uint32).ravel()]
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
        return np.asarray(self.host(rng, shape), np.float32).astype(jnp.dtype(dtype))

    def __call__(self, key: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        shape = _canonical_shape(shape)
        dtype = jnp.float32 if dtype is None else dtype
        if _DEVICE.get():
            return self.device(key, shape, dtype)
        # jax.device_put places a host array without compiling anything (jnp.asarray would run
        # one small XLA program per shape).
        if not self.uses_key:
            return jax.device_put(self._host_cast(None, shape, dtype))
        words = _key_words(key)
        if not isinstance(words, jax.core.Tracer):
            return jax.device_put(self._host_cast(np.asarray(words), shape, dtype))
        out = jax.ShapeDtypeStruct(shape, jnp.dtype(dtype))
        return jax.pure_callback(
            lambda w: self._host_cast(w, shape, dtype), out, words, vmap_method="sequential"
        )


class _Constant(Initializer):
    uses_key = False

    def __init__(self, value: float) -> None:
        self.value = float(value)

    def host(self, rng: np.random.Generator | None, shape: tuple[int, ...]) -> np.ndarray:
        return np.full(shape, self.value, np.float32)

    def device(self, key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return jnp.full(shape, self.value, dtype)

    def __repr__(self) -> str:
        return f"constant({self.value})"


def _truncated_standard_normal(rng: np.random.Generator, size: int) -> np.ndarray:
    """Standard normal draws conditioned on [-2, 2] (resampling the ~4.6% outside)."""
    out = rng.standard_normal(size, dtype=np.float32)
    bad = np.flatnonzero(np.abs(out) > 2.0)
    while bad.size:
        out[bad] = rng.standard_normal(bad.size, dtype=np.float32)
        bad = bad[np.abs(out[bad]) > 2.0]
    return out


def _fans(
    shape: tuple[int, ...], in_axis: int | Sequence[int], out_axis: int | Sequence[int]
) -> tuple[float, float]:
    def size(axes: int | Sequence[int]) -> int:
        return shape[axes] if isinstance(axes, int) else math.prod(shape[a] for a in axes)

    if len(shape) < 2 and in_axis == -2:
        raise ValueError(
            f"variance_scaling: shape must have at least 2 axes with the default in_axis, got "
            f"{shape}"
        )
    fan_in, fan_out = size(in_axis), size(out_axis)
    receptive = math.prod(shape) / max(fan_in * fan_out, 1)
    return fan_in * receptive, fan_out * receptive


class VarianceScaling(Initializer):
    """Zero-mean draws with standard deviation sqrt(scale / n), n the fan of ``mode``."""

    def __init__(
        self,
        scale: float,
        mode: str,
        distribution: str,
        in_axis: int | Sequence[int] = -2,
        out_axis: int | Sequence[int] = -1,
    ) -> None:
        if not (isinstance(scale, (int, float)) and scale > 0):
            raise ValueError(f"variance_scaling: scale must be a positive number, got {scale!r}")
        if mode not in _MODES:
            raise ValueError(f"variance_scaling: mode must be one of {_MODES}, got {mode!r}")
        if distribution not in _DISTRIBUTIONS:
            raise ValueError(
                f"variance_scaling: distribution must be one of {_DISTRIBUTIONS}, got "
                f"{distribution!r}"
            )
        self.scale, self.mode, self.distribution = float(scale), mode, distribution
        self.in_axis, self.out_axis = in_axis, out_axis

    def _std(self, shape: tuple[int, ...]) -> float:
        fan_in, fan_out = _fans(shape, self.in_axis, self.out_axis)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        return math.sqrt(self.scale / max(n, 1.0))

    def host(self, rng: np.random.Generator | None, shape: tuple[int, ...]) -> np.ndarray:
        assert rng is not None
        std, size = self._std(shape), math.prod(shape)
        if self.distribution == "truncated_normal":
            draw = _truncated_standard_normal(rng, size) * np.float32(std / _TRUNC_STD)
        elif self.distribution == "normal":
            draw = rng.standard_normal(size, dtype=np.float32) * np.float32(std)
        else:
            limit = math.sqrt(3.0) * std
            draw = rng.uniform(-limit, limit, size).astype(np.float32)
        return draw.reshape(shape)

    def device(self, key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return jax.nn.initializers.variance_scaling(
            self.scale, self.mode, self.distribution, self.in_axis, self.out_axis
        )(key, shape, dtype)

    def __repr__(self) -> str:
        return f"variance_scaling({self.scale}, {self.mode!r}, {self.distribution!r})"


class _Normal(Initializer):
    def __init__(self, stddev: float) -> None:
        if not (isinstance(stddev, (int, float)) and stddev >= 0):
            raise ValueError(f"normal: stddev must be a non-negative number, got {stddev!r}")
        self.stddev = float(stddev)

    def host(self, rng: np.random.Generator | None, shape: tuple[int, ...]) -> np.ndarray:
        assert rng is not None
        draw = rng.standard_normal(math.prod(shape), dtype=np.float32) * np.float32(self.stddev)
        return draw.reshape(shape)

    def device(self, key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return self.stddev * jax_normal(key, shape, dtype)

    def __repr__(self) -> str:
        return f"normal({self.stddev})"


#: All zeros (no key used).
zeros: Initializer = _Constant(0.0)
#: All ones (no key used).
ones: Initializer = _Constant(1.0)


def variance_scaling(
    scale: float,
    mode: Literal["fan_in", "fan_out", "fan_avg"],
    distribution: Literal["truncated_normal", "normal", "uniform"],
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
) -> Initializer:
    """``jax.nn.initializers.variance_scaling`` drawn on the host (see the module docstring)."""
    return VarianceScaling(scale, mode, distribution, in_axis, out_axis)


def lecun_normal(
    in_axis: int | Sequence[int] = -2, out_axis: int | Sequence[int] = -1
) -> Initializer:
    """LeCun normal (Flax's default kernel initialiser): truncated normal, variance 1/fan_in."""
    return VarianceScaling(1.0, "fan_in", "truncated_normal", in_axis, out_axis)


def jax_lecun_normal(in_axis: int = -2, out_axis: int = -1) -> Any:
    """Flax's default kernel initialiser, ``jax.nn.initializers.lecun_normal()``, with bitwise the
    same values, drawing its truncated normal flat (:func:`diff_protocol.jax_truncated_normal`).

    For layers whose weights must stay those of Flax's default (trained checkpoints and
    calibrated thresholds depend on them): the values of ``nnx.Conv(..., rngs=rngs)`` with the
    default ``kernel_init``, but a 4-D kernel's draw compiles in about 0.4 s instead of 1.5-2 s
    on CPU (jax 0.10.2). New layers should prefer :func:`lecun_normal` (host draws, no compile).
    """
    for name, axis in (("in_axis", in_axis), ("out_axis", out_axis)):
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"jax_lecun_normal: {name} must be an int, got {axis!r}")

    def init(key: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        shape = _canonical_shape(shape)
        dtype = jnp.float32 if dtype is None else dtype
        if len(shape) < 2:
            raise ValueError(f"jax_lecun_normal: shape must have at least 2 axes, got {shape}")
        in_size, out_size = shape[in_axis], shape[out_axis]
        fan_in = in_size * (math.prod(shape) / in_size / out_size)  # as jax's _compute_fans
        # the same operations as jax.nn.initializers.variance_scaling, hence the same bits
        stddev = jnp.sqrt(jnp.array(1.0 / fan_in, dtype)) / jnp.array(0.87962566103423978, dtype)
        return jax_truncated_normal(key, -2, 2, shape, dtype) * stddev

    return init


def normal(stddev: float = 1.0) -> Initializer:
    """Zero-mean normal with standard deviation ``stddev``."""
    return _Normal(stddev)


def dense_inits(*, zero: bool = False) -> dict[str, Initializer]:
    """``kernel_init`` / ``bias_init`` keyword arguments for ``nnx.Linear`` and ``nnx.Conv``:
    LeCun normal (or zero with ``zero=True``) kernels and zero biases, drawn on the host."""
    return {"kernel_init": zeros if zero else lecun_normal(), "bias_init": zeros}


def norm_inits() -> dict[str, Initializer]:
    """``scale_init`` / ``bias_init`` keyword arguments for ``nnx.GroupNorm`` and
    ``nnx.LayerNorm``: ones and zeros."""
    return {"scale_init": ones, "bias_init": zeros}
