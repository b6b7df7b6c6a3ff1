"""The one conditioning interface of every diff-pixel backbone."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

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
        # only checks that hold for tracers and pytree placeholders too (jax rebuilds a Cond
        # with tracers, ints or None as leaves); values are checked by `check_values`
        for name in _FIELDS[:-1]:
            v = getattr(self, name)
            if isinstance(v, (str, bytes)):
                raise TypeError(f"Cond: {name} must be an array or None, got {type(v).__name__}")
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

    def check_values(self, func: str = "Cond", num_classes: int | None = None) -> None:
        """Host-side value checks, once per call (``sample`` runs them before compiling).

        ``label`` integers in [0, num_classes] (``num_classes`` is the null label; the range is
        checked when it is given), ``drop`` booleans, ``token_lengths`` integers in [0, K], the
        float entries (``vector``, ``tokens``, ``spatial``, ``extra[...]``) finite, and every
        entry with the same batch size. Tracers (inside ``jax.jit``) are skipped.

        Raises:
          ValueError / TypeError naming the entry (``cond.label``, ...), what was expected and
          what came.
        """

        def concrete(v: Any) -> Any:
            if v is None or isinstance(v, jax.core.Tracer):
                return None
            return np.asarray(v)

        sizes = {}
        for name in self.entries() + (("drop",) if self.drop is not None else ()):
            v = self.extra[name[6:-1]] if name.startswith("extra[") else getattr(self, name)
            shape = getattr(v, "shape", None)
            if shape is None or len(shape) == 0:
                raise ValueError(
                    f"{func}: cond.{name} must be a batch-first array, got "
                    f"{type(v).__name__} {v!r:.40}"
                )
            sizes[name] = int(shape[0])
        if len(set(sizes.values())) > 1:
            raise ValueError(f"{func}: cond entries must share the batch size, got {sizes}")
        label = concrete(self.label)
        if label is not None:
            if label.dtype.kind not in "iu":
                raise TypeError(f"{func}: cond.label must be integers, got dtype {label.dtype}")
            hi = num_classes if num_classes is not None else None
            bad = (label < 0) | (label > hi) if hi is not None else label < 0
            if bad.any():
                rng = f"[0, {hi}] ({hi} is the null label)" if hi is not None else ">= 0"
                raise ValueError(
                    f"{func}: cond.label must lie in {rng}, got {int(label[bad].flat[0])}"
                )
        drop = concrete(self.drop)
        if drop is not None and drop.dtype != np.bool_:
            raise TypeError(f"{func}: cond.drop must be booleans, got dtype {drop.dtype}")
        lengths = concrete(self.token_lengths)
        if lengths is not None:
            k = None if self.tokens is None else int(self.tokens.shape[1])
            if (
                lengths.dtype.kind not in "iu"
                or (lengths < 0).any()
                or (k is not None and (lengths > k).any())
            ):
                raise ValueError(
                    f"{func}: cond.token_lengths must be integers in [0, K = {k}], got "
                    f"{lengths.dtype} in [{lengths.min()}, {lengths.max()}]"
                )
        floats = {n: getattr(self, n) for n in ("vector", "tokens", "spatial")}
        floats.update({f"extra[{k}]": v for k, v in (self.extra or {}).items()})
        for name, v in floats.items():
            arr = concrete(v)
            if arr is None:
                continue
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{func}: cond.{name} must be real numbers, got dtype {arr.dtype}")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ValueError(f"{func}: cond.{name} must be finite, got NaN or inf")

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
