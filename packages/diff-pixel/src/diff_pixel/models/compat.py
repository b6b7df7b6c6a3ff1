"""Reading diff-pixel 0.1 backbone states with the 0.2 models.

0.2 moved the label and vector conditioning of the backbones into embedder modules, so three
parameter paths changed; everything else (λ embedding, frame embedding, token projections, stem,
blocks, head) kept its path. :func:`upgrade_v01_paths` renames the keys of a flat state (paths
as tuples, e.g. from ``nnx.to_flat_state`` or a flattened checkpoint) so that a 0.1 checkpoint's
weights load into a model rebuilt from its description (0.1 type names are accepted by
:func:`~diff_pixel.models.registry.from_description`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["V01_PARAM_PATHS", "upgrade_v01_paths"]

#: 0.1 path prefix → 0.2 path prefix.
V01_PARAM_PATHS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("label_emb", "embedding"): ("label_emb", "embed", "embedding"),
    ("vector_proj",): ("vector_emb", "proj"),
    ("vector_null",): ("vector_emb", "null"),
}


def upgrade_v01_paths(flat: Mapping[tuple[Any, ...], Any]) -> dict[tuple[Any, ...], Any]:
    """A copy of the flat state ``flat`` with 0.1 paths renamed to their 0.2 names (other paths,
    0.2 ones included, unchanged)."""
    if not isinstance(flat, Mapping):
        raise TypeError(
            f"upgrade_v01_paths: flat must be a mapping from path tuples to values, got "
            f"{type(flat).__name__}"
        )
    out: dict[tuple[Any, ...], Any] = {}
    for path, value in flat.items():
        if not isinstance(path, tuple):
            raise TypeError(f"upgrade_v01_paths: paths must be tuples, got {path!r}")
        new = path
        for old, renamed in V01_PARAM_PATHS.items():
            if path[: len(old)] == old:
                new = renamed + path[len(old) :]
                break
        if new in out:
            raise ValueError(f"upgrade_v01_paths: flat must not hold both 0.1 and 0.2 {new}")
        out[new] = value
    return out
