"""Backend helpers for test suites of every diff-* package.

``BACKENDS`` lists the array libraries the protocol supports. :func:`backend` returns the
namespace and a converter, skipping the calling test (via pytest) when the library is absent.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["BACKENDS", "assert_close", "backend", "to_backend", "to_numpy"]

BACKENDS = ("numpy", "array_api_strict", "jax", "torch")

_MODULES = {
    "numpy": "numpy",
    "array_api_strict": "array_api_strict",
    "jax": "jax",
    "torch": "torch",
}


def _import(name: str) -> Any:
    if name not in _MODULES:
        raise ValueError(f"backend: name must be one of {BACKENDS}, got {name!r}")
    try:
        return importlib.import_module(_MODULES[name])
    except ImportError:
        import pytest

        pytest.skip(f"backend {name!r} is not installed")


def _dtype(name: str, dtype: Any) -> Any:
    if dtype is None or not isinstance(dtype, str):
        return dtype
    if name == "jax":
        import jax
        import jax.numpy as jnp

        if dtype == "float64" and not jax.config.jax_enable_x64:
            raise ValueError(
                "to_backend: dtype float64 on jax needs jax.config.update('jax_enable_x64', True)"
            )
        return getattr(jnp, dtype)
    if name == "torch":
        import torch

        return getattr(torch, dtype)
    if name == "array_api_strict":
        import array_api_strict

        return getattr(array_api_strict, dtype)
    import numpy as np

    return np.dtype(dtype)


def to_backend(a: Any, name: str, dtype: Any = None) -> Any:
    """Convert a host (numpy or Python) value to backend ``name`` with ``dtype`` (name or dtype)."""
    import numpy as np

    _import(name)
    host = np.asarray(to_numpy(a) if not isinstance(a, (int, float, list, tuple)) else a)
    dt = _dtype(name, dtype)
    if name == "numpy":
        return host.astype(dt) if dt is not None else host.copy()
    if name == "torch":
        import torch

        t = torch.from_numpy(np.array(host, copy=True))
        return t.to(dt) if dt is not None else t
    if name == "jax":
        import jax.numpy as jnp

        return jnp.asarray(host, dtype=dt)
    import array_api_strict

    return array_api_strict.asarray(host, dtype=dt)


def backend(name: str) -> tuple[Any, Callable[..., Any]]:
    """``(xp, asarray)`` for backend ``name``; ``asarray(a, dtype=None)`` converts host arrays.

    Skips the calling pytest test when the backend is not installed.
    """
    mod = _import(name)
    if name == "array_api_strict":
        xp = mod
    elif name == "jax":
        import jax.numpy as jnp

        xp = jnp
    else:
        xp = importlib.import_module(f"array_api_compat.{name}")

    def asarray(a: Any, dtype: Any = None) -> Any:
        return to_backend(a, name, dtype)

    return xp, asarray


def to_numpy(a: Any) -> Any:
    """Host numpy copy of an array from any backend (torch tensors are detached)."""
    import numpy as np

    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def assert_close(a: Any, b: Any, rtol: float = 1e-7, atol: float = 0.0, err_msg: str = "") -> None:
    """``numpy.testing.assert_allclose`` over arrays of any backends (compared on the host)."""
    import numpy as np

    np.testing.assert_allclose(
        np.asarray(to_numpy(a), dtype=np.float64),
        np.asarray(to_numpy(b), dtype=np.float64),
        rtol=rtol,
        atol=atol,
        err_msg=err_msg,
    )
