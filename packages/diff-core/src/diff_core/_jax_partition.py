"""Split a pytree into traced arrays and a hashable static part, for arguments of ``jax.jit``.

:func:`partition` flattens an object with :func:`jax.tree_util.tree_flatten`. Its array leaves
(``jax.Array``, tracers included, and ``numpy.ndarray``) become a list passed to the jitted
function as a traced argument; the tree structure together with every other leaf (Python numbers,
strings, functions, unregistered objects) becomes a :class:`Static`, a hashable static argument.
Inside the jitted function ``static.rebuild(arrays)`` returns an object of the same structure
whose arrays are the traced ones (:func:`jax.tree_util.tree_unflatten`).

Consequences for a denoiser (or noise source, or condition) given to the JAX driver:

- a pytree-registered object (a Flax NNX module, a ``jax.tree_util.register_dataclass`` class, a
  ``register_pytree_node`` class) has traced weights: new weights, in place or in a new object of
  the same structure, reach the next call without recompiling;
- a plain function, or an object JAX does not know as a pytree, is one non-array leaf and
  therefore entirely static, as in diff-core 0.1: it is compared by its own ``__eq__``/``__hash__``
  (identity for functions), and arrays it closes over are compile-time constants;
- a change of structure or of a non-array leaf (a Python float attribute, a string) compiles a
  new program, which is correct but slower.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = ["Static", "is_traced_leaf", "partition"]


class _Traced:
    """Placeholder for an array leaf in :attr:`Static.leaves`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<traced>"


_TRACED = _Traced()


def is_traced_leaf(leaf: Any) -> bool:
    """True for the leaves that are passed as traced arguments: JAX and numpy arrays."""
    return isinstance(leaf, (jax.Array, np.ndarray))


class Static:
    """Hashable static part of a pytree: its treedef and its non-array leaves."""

    __slots__ = ("_hash", "leaves", "treedef")

    def __init__(self, treedef: Any, leaves: tuple[Any, ...]) -> None:
        self.treedef = treedef
        self.leaves = leaves
        self._hash = hash((treedef, leaves))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Static):
            return NotImplemented
        if self._hash != other._hash or self.treedef != other.treedef:
            return False
        return len(self.leaves) == len(other.leaves) and all(
            a is b or (type(a) is type(b) and a is not _TRACED and bool(a == b))
            for a, b in zip(self.leaves, other.leaves, strict=True)
        )

    def __repr__(self) -> str:
        return f"Static({self.treedef}, {self.leaves})"

    def rebuild(self, arrays: list[Any]) -> Any:
        """The object with its array leaves taken, in order, from ``arrays``."""
        it = iter(arrays)
        leaves = [next(it) if leaf is _TRACED else leaf for leaf in self.leaves]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


def _unhashable_error(func: str, name: str, obj: Any, cause: TypeError) -> TypeError:
    path = ""
    culprit: Any = obj
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(obj)[0]:
        if is_traced_leaf(leaf):
            continue
        try:
            hash(leaf)
        except TypeError:
            path, culprit = jax.tree_util.keystr(key_path), leaf
            break
    what = f"{name}{path}" if path else name
    return TypeError(
        f"{func}: under JAX the non-array parts of {name} are static arguments of jax.jit and "
        f"must be hashable, got {what} of unhashable type {type(culprit).__name__} ({cause}). "
        "Register the class as a JAX pytree (jax.tree_util.register_dataclass or "
        "register_pytree_node) so that its arrays are traced, keep only arrays and hashable "
        "values (tuples, not lists or dicts, as metadata) in it, or give it a __hash__ "
        "(e.g. a frozen dataclass)"
    )


def partition(obj: Any, *, func: str = "sample", name: str = "denoiser") -> tuple[list, Static]:
    """``(arrays, static)`` with ``static.rebuild(arrays)`` equal to ``obj``.

    Raises:
      TypeError: a non-array leaf of ``obj`` is unhashable; the message names its path inside
        ``name`` and how to fix it.
    """
    leaves, treedef = jax.tree_util.tree_flatten(obj)
    arrays = [leaf for leaf in leaves if is_traced_leaf(leaf)]
    static_leaves = tuple(_TRACED if is_traced_leaf(leaf) else leaf for leaf in leaves)
    try:
        static = Static(treedef, static_leaves)
    except TypeError as e:
        raise _unhashable_error(func, name, obj, e) from None
    return arrays, static
