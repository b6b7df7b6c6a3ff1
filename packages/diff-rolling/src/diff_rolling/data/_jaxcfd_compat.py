"""jax-cfd 0.2.1 calls ``jax.tree_map`` & co., removed from new jax, in its finite-volume path.

:func:`install` sets each missing alias to its ``jax.tree.*`` counterpart (only when missing) and
must run before jax-cfd's finite-volume modules are used. The spectral path works without it.
"""

from __future__ import annotations

import jax

_ALIASES = {
    "tree_map": "map",
    "tree_leaves": "leaves",
    "tree_flatten": "flatten",
    "tree_unflatten": "unflatten",
    "tree_structure": "structure",
}


def install() -> list[str]:
    """Add the missing ``jax.tree_*`` aliases; returns the names added."""
    added = []
    for old, new in _ALIASES.items():
        try:
            getattr(jax, old)
            continue
        except AttributeError:
            pass
        setattr(jax, old, getattr(jax.tree, new))
        added.append(old)
    return added
