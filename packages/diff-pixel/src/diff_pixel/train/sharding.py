"""Data parallelism with ``jax.sharding``: one mesh axis ``data``, replicated state.

The train state is replicated (``NamedSharding(mesh, P())``) and every batch is split along its
leading axis over the ``data`` axis (``P("data")``); the compiler inserts the gradient
all-reduce. On several hosts each process loads its own slice of the global batch
(``Loader(process_index=jax.process_index(), process_count=jax.process_count())``) and
:func:`shard_batch` assembles the global array with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "batch_sharding",
    "data_mesh",
    "mesh_size",
    "replicate",
    "replicated",
    "shard_batch",
]


def data_mesh(n: int | None = None, axis: str = "data") -> Mesh:
    """A 1-D mesh over the first ``n`` devices (all when ``None``) with axis name ``axis``.

    Built as ``Mesh(np.array(jax.devices()[:n]), (axis,))`` rather than ``jax.make_mesh``, whose
    default axis types changed across jax versions.
    """
    devices = jax.devices()
    if n is None:
        n = len(devices)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= len(devices):
        raise ValueError(f"data_mesh: n must be an int in [1, {len(devices)}], got {n!r}")
    if not isinstance(axis, str) or not axis:
        raise TypeError(f"data_mesh: axis must be a non-empty str, got {axis!r}")
    return Mesh(np.array(devices[: int(n)]), (axis,))


def mesh_size(mesh: Mesh, axis: str = "data") -> int:
    """Number of devices along ``axis``."""
    if axis not in mesh.axis_names:
        raise ValueError(f"mesh_size: axis must be one of {mesh.axis_names}, got {axis!r}")
    return int(mesh.shape[axis])


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of the train state: a full copy on every device of ``mesh``."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, axis: str = "data") -> NamedSharding:
    """The sharding of a batch: leading (example) axis split over ``axis``."""
    return NamedSharding(mesh, P(axis))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every array of ``tree`` replicated on ``mesh``."""
    return jax.device_put(tree, replicated(mesh))


def _device_dtype(a: np.ndarray) -> np.ndarray:
    # Global example numbers are int64 on the host; with 64-bit types disabled (the default) jax
    # would truncate them anyway, so convert explicitly (exact below 2**31 examples).
    if a.dtype == np.int64 and not jax.config.jax_enable_x64:
        if a.size and (a.max() >= 2**31 or a.min() < -(2**31)):
            raise ValueError(
                "shard_batch: integer batch entries must fit in int32, got values >= 2**31"
            )
        return a.astype(np.int32)
    return a


def shard_batch(batch: Mapping[str, Any], mesh: Mesh, axis: str = "data") -> dict[str, jax.Array]:
    """Put a (process-local) batch on ``mesh``, split along the leading axis.

    With one process the local batch is the global batch (``jax.device_put``); with several,
    each process passes its slice and the global array is assembled with
    ``jax.make_array_from_process_local_data``.
    """
    sharding = batch_sharding(mesh, axis)
    n = mesh_size(mesh, axis)
    out = {}
    for k, v in batch.items():
        a = _device_dtype(np.asarray(v))
        if a.ndim == 0:
            raise ValueError(
                f"shard_batch: batch[{k!r}] must have a leading batch axis, got a scalar"
            )
        if jax.process_count() > 1:
            out[k] = jax.make_array_from_process_local_data(sharding, a)
        else:
            if a.shape[0] % n:
                raise ValueError(
                    f"shard_batch: batch_size must be divisible by the {n} devices of mesh axis "
                    f"{axis!r}, got batch[{k!r}] with leading size {a.shape[0]}"
                )
            out[k] = jax.device_put(a, sharding)
    return out
