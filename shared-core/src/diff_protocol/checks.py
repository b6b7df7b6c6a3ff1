"""Input checks shared by every diff-* package: one definition of "bad input" and its message.

Every helper raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right kind, bad value)
with the message ``"<func>: <arg> must be <expected>, got <what came>"`` (:func:`arg_error`), and
returns the checked value (normalised: a Python ``float`` for numbers, an ``int`` for indices).

Cost rules, so validation costs nothing measurable on hot paths:

- type, shape and dtype checks read attributes only (no array operation, no device transfer);
  the dtype test is cached per dtype object;
- value checks (finite, ordering, sign, range) read the values and are skipped for JAX tracers
  (:func:`diff_protocol.arrays.is_lazy`): inside ``jax.jit`` only shapes and dtypes are checked;
- Python floats (what the sampling loops pass) are checked on the host without any array call.

Integer and boolean arrays are refused where a real floating array is required (they would be
truncated by the maths or silently cast); convert them explicitly (``x.astype(np.float32)``).
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any

from .arrays import is_lazy
from .errors import arg_error, describe

__all__ = [
    "check_array",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_finite",
    "check_float_dtype",
    "check_index",
    "check_int",
    "check_levels",
    "check_logsnr_order",
    "check_real",
    "check_same_shape",
    "is_array",
    "values_all",
]

_FLOAT_DTYPES: dict[Any, bool] = {}


def is_array(a: Any) -> bool:
    """True for objects that carry ``shape`` and ``dtype`` (numpy, JAX, torch, array-api arrays);
    numpy scalars count as 0-d arrays."""
    return getattr(a, "shape", None) is not None and getattr(a, "dtype", None) is not None


def _is_real_float_dtype(dtype: Any) -> bool:
    key = (type(dtype), dtype)  # the type first: no cross-library dtype comparison
    try:
        hit = _FLOAT_DTYPES.get(key)
    except TypeError:  # unhashable dtype object
        hit = None
    if hit is not None:
        return hit
    name = str(dtype).lower()
    ok = "float" in name and "complex" not in name
    try:
        _FLOAT_DTYPES[key] = ok
    except TypeError:
        pass
    return ok


def check_float_dtype(func: str, arg: str, a: Any) -> Any:
    """``a`` must be an array of a real floating dtype (float16 ... float64, bfloat16)."""
    if not _is_real_float_dtype(a.dtype):
        raise arg_error(
            func,
            arg,
            "a real floating array (convert integer or boolean data explicitly, "
            "e.g. x.astype(float32))",
            a,
            TypeError,
        )
    return a


def check_array(
    func: str,
    arg: str,
    a: Any,
    *,
    floating: bool = True,
    ndim: int | None = None,
    min_ndim: int | None = None,
) -> Any:
    """``a`` must be an array (``shape`` and ``dtype``), of a real floating dtype when
    ``floating``, with ``ndim`` axes (or at least ``min_ndim``) when given. Returns ``a``."""
    if not is_array(a) or isinstance(a, (str, bytes)):
        raise arg_error(func, arg, "an array (numpy, JAX or torch)", a, TypeError)
    if floating:
        check_float_dtype(func, arg, a)
    if ndim is not None and len(a.shape) != ndim:
        raise arg_error(func, arg, f"{ndim}-D", a)
    if min_ndim is not None and len(a.shape) < min_ndim:
        raise arg_error(func, arg, f"at least {min_ndim}-D", a)
    return a


def check_same_shape(func: str, arg: str, a: Any, ref_arg: str, ref: Any) -> Any:
    """``a.shape`` must equal ``ref.shape`` exactly (no silent broadcasting)."""
    if tuple(a.shape) != tuple(ref.shape):
        raise ValueError(
            f"{func}: {arg} shape {tuple(a.shape)} must equal {ref_arg} shape "
            f"{tuple(ref.shape)} (no broadcasting)"
        )
    return a


def _host_values(a: Any) -> Any:
    """A numpy view/copy of a concrete array (torch detached, JAX transferred)."""
    import numpy as np

    if hasattr(a, "detach"):
        a = a.detach().cpu()
        if str(a.dtype) == "torch.bfloat16":
            a = a.float()
    return np.asarray(a)


def values_all(a: Any, test: Any) -> bool | None:
    """``all(test(xp, a))`` for a concrete array, ``None`` for a tracer (nothing to read).

    numpy and torch evaluate on the array's own device (one reduction, one bool back); a
    concrete JAX array is read on the host, because inside a ``jax.jit`` trace even operations on
    concrete arrays are staged and could not be turned into a Python bool.
    """
    if is_lazy(a):
        return None
    from .arrays import namespace

    v = a.detach() if hasattr(a, "detach") else a
    if type(v).__module__.startswith("jax"):
        import numpy as np

        v = np.asarray(v)
    xp = namespace(v)
    return bool(xp.all(test(xp, v)))


def check_finite(func: str, arg: str, a: Any) -> Any:
    """Concrete arrays and numbers must be finite (no NaN, no ±inf); tracers pass unchecked."""
    if isinstance(a, numbers.Real) and not is_array(a):
        if not math.isfinite(float(a)):
            raise arg_error(func, arg, "finite", repr(a))
        return a
    if is_lazy(a):
        return a
    if values_all(a, lambda xp, v: xp.isfinite(v)):
        return a
    import numpy as np

    v = _host_values(a)
    bad = ~np.isfinite(v)
    if bad.any():
        n_nan = int(np.isnan(v).sum())
        raise arg_error(
            func,
            arg,
            "finite",
            f"{int(bad.sum())} non-finite values ({n_nan} NaN) in {describe(a)}",
        )
    return a


def check_levels(func: str, arg: str, logsnr: Any) -> Any:
    """A log-SNR level or array of levels: a real number or a real (int or float) array, not
    NaN (±inf are legal endpoints). Integer arrays are converted exactly by the maths."""
    if type(logsnr) is float:
        if logsnr != logsnr:
            raise arg_error(func, arg, "a log-SNR (±inf allowed, not NaN)", "nan")
        return logsnr
    if isinstance(logsnr, bool) or logsnr is None or isinstance(logsnr, (str, bytes)):
        raise arg_error(func, arg, "a real number or array of log-SNR levels", logsnr, TypeError)
    if isinstance(logsnr, numbers.Real) and not is_array(logsnr):
        if math.isnan(float(logsnr)):
            raise arg_error(func, arg, "a log-SNR (±inf allowed, not NaN)", "nan")
        return logsnr
    if not is_array(logsnr):
        raise arg_error(func, arg, "a real number or array of log-SNR levels", logsnr, TypeError)
    name = str(logsnr.dtype).lower()
    if "bool" in name or "complex" in name:
        raise arg_error(func, arg, "a real array of log-SNR levels", logsnr, TypeError)
    if is_lazy(logsnr):
        return logsnr
    import numpy as np

    v = _host_values(logsnr)
    if v.dtype.kind == "f" and np.isnan(v).any():
        raise arg_error(
            func, arg, "log-SNR levels (±inf allowed, not NaN)", f"NaN in {describe(logsnr)}"
        )
    return logsnr


def check_logsnr_order(func: str, logsnr_t: Any, logsnr_s: Any) -> None:
    """``logsnr_s > logsnr_t`` (s is the less noisy time) wherever both are concrete.

    Host floats are compared directly; arrays (0-d or per example) elementwise after
    broadcasting. NaN fails the comparison and is reported too.
    """
    if type(logsnr_t) is float and type(logsnr_s) is float:
        if logsnr_s > logsnr_t:
            return
        raise ValueError(
            f"{func}: logsnr_s must be > logsnr_t (s is the less noisy time), got logsnr_s="
            f"{logsnr_s:.6g} and logsnr_t={logsnr_t:.6g}"
        )
    if is_lazy(logsnr_t) or is_lazy(logsnr_s):
        return
    import numpy as np

    lt = np.asarray(_host_values(logsnr_t) if is_array(logsnr_t) else logsnr_t, dtype=np.float64)
    ls = np.asarray(_host_values(logsnr_s) if is_array(logsnr_s) else logsnr_s, dtype=np.float64)
    try:
        ok = np.greater(
            ls.reshape(ls.shape + (1,) * max(0, lt.ndim - ls.ndim)),
            lt.reshape(lt.shape + (1,) * max(0, ls.ndim - lt.ndim)),
        )
    except ValueError:
        raise ValueError(
            f"{func}: logsnr_s shape {ls.shape} and logsnr_t shape {lt.shape} must be 0-d or "
            "prefixes of one another"
        ) from None
    if not np.all(ok):
        k = int(np.argmin(ok.reshape(-1)))
        pair = np.broadcast_arrays(
            ls.reshape(ls.shape + (1,) * max(0, lt.ndim - ls.ndim)),
            lt.reshape(lt.shape + (1,) * max(0, ls.ndim - lt.ndim)),
        )
        s_v, t_v = float(pair[0].reshape(-1)[k]), float(pair[1].reshape(-1)[k])
        raise ValueError(
            f"{func}: logsnr_s must be > logsnr_t (s is the less noisy time), got logsnr_s="
            f"{s_v:.6g} and logsnr_t={t_v:.6g} (element {k})"
        )


def check_real(
    func: str,
    arg: str,
    value: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    allow_inf: bool = False,
    expected: str | None = None,
) -> float:
    """A real Python/numpy number (not bool, not an array) within ``[lo, hi]`` (open ends with
    ``lo_open``/``hi_open``); returned as a Python float. NaN is refused, ±inf unless
    ``allow_inf``. ``expected`` replaces the generated description in messages."""
    if expected is None:
        if lo is None and hi is None:
            expected = "a real number" if allow_inf else "a finite real number"
        elif lo is not None and hi is None:
            expected = f"{'>' if lo_open else '>='} {lo:g}"
        elif lo is None and hi is not None:
            expected = f"{'<' if hi_open else '<='} {hi:g}"
        else:
            expected = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = (
            expected if expected.startswith(("a ", "an ", "None")) else f"a real number {expected}"
        )
        raise arg_error(func, arg, kind, value, TypeError)
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise arg_error(func, arg, expected, repr(v))
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise arg_error(func, arg, expected, repr(v))
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise arg_error(func, arg, expected, repr(v))
    return v


def check_int(
    func: str, arg: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """An integer (``operator.index``; not bool, not float) within ``[minimum, maximum]``."""
    lo = "" if minimum is None else f" >= {minimum}"
    hi = "" if maximum is None else f" <= {maximum}"
    kind = f"an integer{lo}{' and' if lo and hi else ''}{hi}"
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise arg_error(func, arg, kind, value, TypeError)
    try:
        v = operator.index(value)
    except TypeError:
        raise arg_error(func, arg, kind, value, TypeError) from None
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise arg_error(func, arg, kind, str(v))
    return int(v)


def check_index(func: str, arg: str, i: Any, n: int | None = None) -> Any:
    """A draw or table index: an integer (Python, numpy or a concrete 0-d integer array) in
    ``[0, n)``; booleans, floats, strings and None are refused. A traced index passes unchecked
    (it is read inside ``lax.scan``). Out of range is a :class:`ValueError` that is also an
    :class:`IndexError`."""
    if is_lazy(i):
        return i
    kind = "an integer draw index" + ("" if n is None else f" in [0, {n})")
    if isinstance(i, bool) or i is None or "bool" in str(getattr(i, "dtype", "")):
        raise arg_error(func, arg, kind, i, TypeError)
    try:
        v = operator.index(i)
    except TypeError:
        raise arg_error(func, arg, kind, i, TypeError) from None
    if v < 0 or (n is not None and v >= n):
        from .errors import DrawIndexError

        raise arg_error(func, arg, ">= 0" if n is None else f"in [0, {n})", str(v), DrawIndexError)
    return v


def check_bool(func: str, arg: str, value: Any) -> bool:
    """A Python or numpy bool (not 0/1, not a string)."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise arg_error(func, arg, "True or False", value, TypeError)
    return bool(value)


def check_callable(func: str, arg: str, value: Any, *, allow_none: bool = False) -> Any:
    """A callable (or None when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not callable(value):
        raise arg_error(
            func, arg, "callable" + (" or None" if allow_none else ""), value, TypeError
        )
    return value


def check_choice(func: str, arg: str, value: Any, choices: Sequence[str]) -> str:
    """One of the strings ``choices`` (a ``str`` subclass is returned as a plain ``str``)."""
    if not isinstance(value, str) or value not in choices:
        expected = "one of " + ", ".join(repr(c) for c in choices)
        raise arg_error(func, arg, expected, repr(value) if isinstance(value, str) else value)
    return str(value)
