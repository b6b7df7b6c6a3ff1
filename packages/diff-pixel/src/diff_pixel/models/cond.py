"""The one conditioning interface of every diff-pixel backbone."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["Cond"]

_FIELDS = ("label", "vector", "tokens", "token_lengths", "spatial", "drop", "extra")


def _fail(func: str, arg: str, expected: str, got: Any) -> ValueError:
    return ValueError(f"Cond.{func}: {arg} must be {expected}, got {got}")


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Cond:
    """Conditions passed to a backbone; all optional, batch-first, a pytree (so it passes
    ``jax.jit``).

    Each entry is read by one of the backbone's embedders (:mod:`diff_pixel.models.embedders`);
    an entry no embedder reads is an error.

    Attributes:
      label: (B,) int32 in [0, num_classes]; ``num_classes`` is the null label (classifier-free
        guidance).
      vector: (B, Dv) or, for frame models, (B, F, Dv): an encoder embedding, a camera pose, ...
      tokens: (B, K, Dt): a sequence for cross-attention (slots, patch tokens).
      token_lengths: (B,) int32: valid tokens are a prefix of length ``token_lengths``; default K.
      spatial: (B, H, W, Cs) or (B, F, H, W, Cs): a map with the same H, W as z, concatenated on
        channels before the stem (and, with ``UViTConfig.spatial_levels``, injected at every
        level).
      drop: (B,) bool: True replaces every condition of that example by its null. The unconditional
        input of classifier-free guidance is :meth:`null`.
      extra: ``{name: array}``, batch-first: entries for embedders of other packages (camera rays,
        an autoencoder's latent map, ...), so a new kind of condition needs no new field.
    """

    label: jax.Array | None = None
    vector: jax.Array | None = None
    tokens: jax.Array | None = None
    token_lengths: jax.Array | None = None
    spatial: jax.Array | None = None
    drop: jax.Array | None = None
    extra: dict[str, jax.Array] | None = None

    def __post_init__(self) -> None:
        if self.extra is not None:
            if not isinstance(self.extra, Mapping):
                raise TypeError(
                    f"Cond: extra must be None or a dict of arrays, got {type(self.extra).__name__}"
                )
            bad = [k for k in self.extra if not isinstance(k, str)]
            if bad:
                raise TypeError(f"Cond: extra keys must be str, got {bad!r}")
            if not isinstance(self.extra, dict):
                object.__setattr__(self, "extra", dict(self.extra))

    def replace(self, **changes: Any) -> Cond:
        """A copy with the given fields changed (``dataclasses.replace``)."""
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise ValueError(f"Cond.replace: fields must be among {_FIELDS}, got {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def null(self) -> Cond:
        """The same condition with ``drop`` all True: every example gets its null condition."""
        return self.replace(drop=jnp.ones((self.batch_size(),), bool))

    def dropped(self) -> Cond:
        """Alias of :meth:`null`."""
        return self.null()

    def batch_size(self) -> int:
        """Leading dimension shared by the given fields."""
        for name in _FIELDS:
            v = getattr(self, name)
            if name == "extra" and v:
                return int(next(iter(v.values())).shape[0])
            if name != "extra" and v is not None:
                return int(v.shape[0])
        raise ValueError("Cond.batch_size: cond must have at least one field, got an empty Cond")

    def fields(self) -> tuple[str, ...]:
        """Names of the fields that are set (``"extra"`` when it holds any entry)."""
        return tuple(
            n
            for n in _FIELDS
            if getattr(self, n) is not None and not (n == "extra" and not self.extra)
        )

    def entries(self) -> tuple[str, ...]:
        """Every set entry as it is named in messages: ``label``, ..., ``extra[<key>]``; not
        ``drop``."""
        out = [n for n in self.fields() if n not in ("extra", "drop")]
        out += [f"extra[{k}]" for k in sorted(self.extra or {})]
        return tuple(out)

    def concat(self, other: Cond) -> Cond:
        """Batch-concatenate two conditions with the same entries: ``self`` first.

        A missing ``drop`` counts as all False and a missing ``token_lengths`` as all K, so
        ``cond.concat(cond.null())`` is the 2B batch of classifier-free guidance.
        """
        if not isinstance(other, Cond):
            raise TypeError(f"Cond.concat: other must be a Cond, got {type(other).__name__}")
        mine = set(self.entries()) - {"token_lengths"}
        theirs = set(other.entries()) - {"token_lengths"}
        if mine != theirs:
            raise _fail(
                "concat", "other", f"a Cond with the same entries {sorted(mine)}", sorted(theirs)
            )
        b1, b2 = self.batch_size(), other.batch_size()

        def cat(a: jax.Array, c: jax.Array, name: str) -> jax.Array:
            if tuple(a.shape[1:]) != tuple(c.shape[1:]):
                raise _fail(
                    "concat",
                    f"other.{name}",
                    f"of shape (B, {', '.join(map(str, a.shape[1:]))}) like self.{name}",
                    tuple(c.shape),
                )
            return jnp.concatenate([a, jnp.asarray(c, a.dtype)], axis=0)

        out: dict[str, Any] = {}
        for name in ("label", "vector", "tokens", "spatial"):
            a, c = getattr(self, name), getattr(other, name)
            out[name] = None if a is None else cat(a, c, name)
        if self.token_lengths is not None or other.token_lengths is not None:

            def lengths(cond: Cond, b: int) -> jax.Array:
                if cond.token_lengths is not None:
                    return jnp.asarray(cond.token_lengths, jnp.int32)
                return jnp.full((b,), cond.tokens.shape[1], jnp.int32)

            out["token_lengths"] = jnp.concatenate([lengths(self, b1), lengths(other, b2)])
        if self.extra:
            out["extra"] = {k: cat(v, other.extra[k], f"extra[{k}]") for k, v in self.extra.items()}
        if self.drop is not None or other.drop is not None:

            def drop(cond: Cond, b: int) -> jax.Array:
                return jnp.zeros((b,), bool) if cond.drop is None else jnp.asarray(cond.drop, bool)

            out["drop"] = jnp.concatenate([drop(self, b1), drop(other, b2)])
        return Cond(**out)
