"""Array helpers shared by every diff-* package: namespace lookup, dtype policy, tracer detection.

Public so that sibling packages (diff-core, ...) use one definition instead of copies.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

Array = Any

_LOW_PRECISION = ("bfloat16", "float16")


def namespace(*arrays: Any) -> Any:
    """Array namespace of the given arrays (Python scalars are ignored).

    Only builtin scalars are dropped: numpy scalars such as ``np.float64`` (what numpy returns
    from operations on 0-d arrays) subclass ``float`` but carry numpy's namespace.
    """
    arrs = [a for a in arrays if a is not None and type(a) not in (int, float, bool)]
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
