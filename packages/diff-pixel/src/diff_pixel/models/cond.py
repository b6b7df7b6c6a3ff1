"""The one conditioning interface of every diff-pixel backbone."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["Cond"]

_FIELDS = ("label", "vector", "tokens", "token_lengths", "spatial", "drop")


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Cond:
    """Conditions passed to a backbone; all optional, batch-first, a pytree (so it passes
    ``jax.jit``).

    Attributes:
      label: (B,) int32 in [0, num_classes]; ``num_classes`` is the null label (classifier-free
        guidance).
      vector: (B, Dv) or, for frame models, (B, F, Dv): an encoder embedding, a camera pose, ...
      tokens: (B, K, Dt): a sequence for cross-attention (slots, patch tokens).
      token_lengths: (B,) int32: valid tokens are a prefix of length ``token_lengths``; default K.
      spatial: (B, H, W, Cs) or (B, F, H, W, Cs): a map with the same H, W as z, concatenated on
        channels before the stem.
      drop: (B,) bool: True replaces every condition of that example by its null. The unconditional
        input of classifier-free guidance is ``cond.replace(drop=ones)``.
    """

    label: jax.Array | None = None
    vector: jax.Array | None = None
    tokens: jax.Array | None = None
    token_lengths: jax.Array | None = None
    spatial: jax.Array | None = None
    drop: jax.Array | None = None

    def replace(self, **changes: Any) -> Cond:
        """A copy with the given fields changed (``dataclasses.replace``)."""
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise ValueError(f"Cond.replace: fields must be among {_FIELDS}, got {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def dropped(self) -> Cond:
        """The null-conditioned copy: ``drop`` all True (batch size taken from the fields)."""
        return self.replace(drop=jnp.ones((self.batch_size(),), bool))

    def batch_size(self) -> int:
        """Leading dimension shared by the given fields."""
        for name in _FIELDS:
            v = getattr(self, name)
            if v is not None:
                return int(v.shape[0])
        raise ValueError("Cond.batch_size: cond must have at least one field, got an empty Cond")

    def fields(self) -> tuple[str, ...]:
        """Names of the fields that are set."""
        return tuple(n for n in _FIELDS if getattr(self, n) is not None)
