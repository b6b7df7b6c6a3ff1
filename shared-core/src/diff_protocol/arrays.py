"""Array helpers shared by every diff-* package: namespace lookup, dtype policy, tracer detection.

Public so that sibling packages (diff-core, ...) use one definition instead of copies.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat

Array = Any

_LOW_PRECISION = ("bfloat16", "float16")


class ScalarMath:
    """The few array-API functions the VP maths needs, on Python floats (IEEE double).

    :func:`namespace` returns it when every argument is a builtin number, so ``alpha_sigma(0.3)``
    or a sampler step given host logsnr floats computes its coefficients on the host in float64
    and multiplies the state by plain Python scalars (one array operation per coefficient instead
    of a dozen tiny ones). Overflow gives ``inf`` and ``log(0)`` gives ``-inf``, as in numpy.
    """

    float64 = float
    float32 = float
    bool = bool

    @staticmethod
    def exp(x: float) -> float:
        try:
            return math.exp(x)
        except OverflowError:
            return math.inf

    @staticmethod
    def expm1(x: float) -> float:
        try:
            return math.expm1(x)
        except OverflowError:
            return math.inf

    @staticmethod
    def log(x: float) -> float:
        if x == 0.0:
            return -math.inf
        return math.log(x) if x > 0 else math.nan

    @staticmethod
    def log1p(x: float) -> float:
        if x == -1.0:
            return -math.inf
        return math.log1p(x) if x > -1.0 else math.nan

    @staticmethod
    def sqrt(x: float) -> float:
        return math.sqrt(x) if x >= 0 else math.nan

    @staticmethod
    def abs(x: float) -> float:
        return abs(x)

    @staticmethod
    def maximum(a: float, b: float) -> float:
        return a if a >= b or math.isnan(a) else b

    @staticmethod
    def minimum(a: float, b: float) -> float:
        return a if a <= b or math.isnan(a) else b

    @staticmethod
    def isfinite(x: float) -> bool:
        return math.isfinite(x)

    @staticmethod
    def isinf(x: float) -> bool:
        return math.isinf(x)

    @staticmethod
    def where(cond: bool, a: float, b: float) -> float:
        return a if cond else b

    @staticmethod
    def zeros_like(x: float, **_: Any) -> float:
        return 0.0

    @staticmethod
    def ones_like(x: float, **_: Any) -> float:
        return 1.0

    @staticmethod
    def full_like(x: float, value: float, **_: Any) -> float:
        return float(value)

    @staticmethod
    def astype(x: float, dtype: Any, **_: Any) -> float:
        return float(x)

    @staticmethod
    def asarray(x: float, dtype: Any = None, **_: Any) -> float:
        return float(x)


scalar_math = ScalarMath()


def is_scalar(a: Any) -> bool:
    """True for builtin Python numbers (not numpy scalars, which carry numpy's namespace)."""
    return type(a) in (int, float)


def namespace(*arrays: Any) -> Any:
    """Array namespace of the given arrays (Python scalars are ignored).

    Only builtin scalars are dropped: numpy scalars such as ``np.float64`` (what numpy returns
    from operations on 0-d arrays) subclass ``float`` but carry numpy's namespace. When only
    builtin numbers are given, returns :data:`scalar_math`.
    """
    arrs = [a for a in arrays if a is not None and type(a) not in (int, float, bool)]
    if not arrs and any(type(a) in (int, float) for a in arrays):
        return scalar_math
    return array_api_compat.array_namespace(*arrs)


def is_lazy(a: Any) -> bool:
    """True for arrays whose values cannot be read now (JAX tracers).

    ``array_api_compat.is_lazy_array`` errs on the side of caution and is true for every JAX
    array, concrete ones included; value checks must still run on those, so JAX arrays are
    lazy only when they are tracers.
    """
    if array_api_compat.is_jax_array(a):
        import jax  # already imported: a JAX array exists

        return isinstance(a, jax.core.Tracer)
    try:
        return bool(array_api_compat.is_lazy_array(a))
    except Exception:  # pragma: no cover - very old array-api-compat
        return type(a).__name__.endswith("Tracer")


def is_low_precision(dtype: Any) -> bool:
    return any(name in str(dtype) for name in _LOW_PRECISION)


def work_dtype(xp: Any, z: Any) -> Any:
    """Dtype in which coefficient maths runs: z's dtype, upcast to float32 from bf16/f16."""
    return xp.float32 if is_low_precision(z.dtype) else z.dtype


def as_float_array(xp: Any, a: Any, like: Any) -> Any:
    """``a`` (array or Python number) as an array of ``like``'s namespace and float dtype.

    Arrays keep their own dtype when it is a float of at least float32 (so float64 logsnr
    keeps its precision); Python numbers take ``like``'s working dtype.
    """
    if isinstance(a, (int, float)):
        return xp.asarray(
            float(a), dtype=work_dtype(xp, like), device=array_api_compat.device(like)
        )
    if is_low_precision(a.dtype):
        return xp.astype(a, xp.float32)
    if not xp.isdtype(a.dtype, "real floating"):
        return xp.astype(a, work_dtype(xp, like))
    return a
