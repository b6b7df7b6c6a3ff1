"""Deterministic, resumable batch iteration over in-memory image sources.

Every batch is a pure function of ``(seed, position)``, so a run killed at step ``s`` and
restarted from ``Loader.state()`` sees exactly the batches an uninterrupted run would have seen,
whatever the number of processes that share the global batch.

Position rule (global example number ``n = s·B + slot``):

* epoch ``e = n // N`` and offset ``j = n % N``; the record is ``perm_e[j]`` with
  ``perm_e = numpy.random.default_rng([seed, e]).permutation(N)`` (identity when
  ``shuffle=False``);
* random augmentation of example ``n`` (crop offsets, flips) draws from
  ``numpy.random.default_rng([seed, n])``;
* process ``p`` of ``P`` yields slots ``[p·B/P, (p+1)·B/P)`` of every global batch, so the
  union of the processes' batches is the one-process batch.

Infinite sources (``num_examples is None``, e.g. photo crops) use ``n`` itself as the record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["ArraySource", "Augment", "Loader", "Source", "random_flip"]

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@runtime_checkable
class Source(Protocol):
    """What a :class:`Loader` reads from.

    Attributes:
      num_examples: number of records, or ``None`` for an infinite stream whose record ``n``
        is drawn from ``default_rng([seed, n])``.
      num_classes: number of distinct labels (labels lie in ``[0, num_classes)``).
      image_shape: ``(H, W, C)`` of every example.
      needs_rng: whether :meth:`take` consumes the per-example generators.
    """

    num_examples: int | None
    num_classes: int
    image_shape: tuple[int, int, int]
    needs_rng: bool

    def take(
        self, records: np.ndarray, rngs: list[np.random.Generator] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(x float32 (b, H, W, C) in [-1, 1], labels int32 (b,))`` for ``records``."""
        ...


class ArraySource:
    """A finite, in-memory source: images ``(N, H, W, C)`` in [-1, 1] with integer labels.

    Args:
      images: float array (N, H, W, C), values in [-1, 1].
      labels: int array (N,) in ``[0, num_classes)``.
      num_classes: number of classes (default ``max(labels) + 1``).
      name: a short description used in reprs and run configs.
    """

    needs_rng = False

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        num_classes: int | None = None,
        name: str = "arrays",
    ) -> None:
        images = np.asarray(images)
        labels = np.asarray(labels)
        if not isinstance(name, str):
            raise TypeError(f"ArraySource: name must be a str, got {type(name).__name__}")
        if images.dtype.kind != "f":
            hint = " (uint8 pixels: x / 127.5 - 1)" if images.dtype.kind in "iu" else ""
            raise TypeError(
                f"ArraySource: images must be floats in [-1, 1], got dtype {images.dtype}{hint}"
            )
        if images.ndim != 4:
            raise ValueError(
                f"ArraySource: images must have shape (N, H, W, C), got {images.shape}"
            )
        if labels.shape != images.shape[:1]:
            raise ValueError(
                f"ArraySource: labels must have shape ({images.shape[0]},), got {labels.shape}"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"ArraySource: labels must be integers, got dtype {labels.dtype}")
        if images.shape[0] == 0:
            raise ValueError("ArraySource: images must contain at least one image, got 0")
        if not np.all(np.isfinite(images)):
            raise ValueError("ArraySource: images must be finite, got NaN or inf values")
        lo, hi = float(images.min()), float(images.max())
        if lo < -1.0 - 1e-3 or hi > 1.0 + 1e-3:
            raise ValueError(
                f"ArraySource: images must lie in [-1, 1], got values in [{lo:g}, {hi:g}]"
            )
        if num_classes is not None and (
            isinstance(num_classes, bool)
            or not isinstance(num_classes, (int, np.integer))
            or num_classes < 1
        ):
            raise ValueError(
                f"ArraySource: num_classes must be a positive int or None, got {num_classes!r}"
            )
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.labels = labels.astype(np.int32)
        self.num_classes = int(num_classes if num_classes is not None else labels.max() + 1)
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(
                f"ArraySource: labels must lie in [0, {self.num_classes}), "
                f"got [{labels.min()}, {labels.max()}]"
            )
        self.num_examples: int | None = int(images.shape[0])
        self.image_shape = tuple(int(d) for d in images.shape[1:])
        self.name = name

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take(
        self, records: np.ndarray, rngs: list[np.random.Generator] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.images[records], self.labels[records]

    def __repr__(self) -> str:
        return f"ArraySource({self.name}, n={len(self)}, shape={self.image_shape})"


def random_flip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Horizontal flip with probability 1/2 (one draw from ``rng``)."""
    return x[:, ::-1] if rng.random() < 0.5 else x


def _check_int(func: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{func}: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{func}: {name} must be >= {minimum}, got {value}")
    return int(value)


class Loader:
    """Deterministic batches ``{"x", "label", "index", "slot"}`` from a :class:`Source`.

    Args:
      source: the data (``digits()``, ``photos()``, ``image_folder()`` or any :class:`Source`).
      batch_size: the *global* batch size ``B`` (all processes together).
      seed: the data seed; batches depend only on ``(seed, position)``.
      shuffle: permute records per epoch (``perm_e`` above); ``False`` keeps source order.
      augment: optional ``augment(x (H, W, C), rng) -> x`` applied per example with
        ``rng = default_rng([seed, n])`` (after the source's own draws, if any).
      process_index, process_count: this process's share of the global batch.

    Yields:
      ``x`` float32 (b, H, W, C); ``label`` int32 (b,); ``index`` int64 (b,), the global example
      number ``n``; ``slot`` int32 (b,), the position in the global batch; ``b = B / P``.

    Example:
      >>> loader = Loader(digits(), 128, seed=0)
      >>> batch = next(loader)
      >>> state = loader.state()  # {"position": 128, "seed": 0}
    """

    def __init__(
        self,
        source: Source,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        augment: Augment | None = None,
        process_index: int = 0,
        process_count: int = 1,
    ) -> None:
        if not isinstance(source, Source):
            raise TypeError(
                "Loader: source must be a Source (digits(), photos(), image_folder()), "
                f"got {type(source).__name__}"
            )
        self.source = source
        self.batch_size = _check_int("Loader", "batch_size", batch_size, 1)
        self.seed = _check_int("Loader", "seed", seed, 0)
        self.process_count = _check_int("Loader", "process_count", process_count, 1)
        self.process_index = _check_int("Loader", "process_index", process_index, 0)
        if self.process_index >= self.process_count:
            raise ValueError(
                f"Loader: process_index must be < process_count={self.process_count}, "
                f"got {self.process_index}"
            )
        if self.batch_size % self.process_count:
            raise ValueError(
                f"Loader: batch_size must be divisible by process_count={self.process_count}, "
                f"got {self.batch_size}"
            )
        if augment is not None and not callable(augment):
            raise TypeError(
                f"Loader: augment must be callable or None, got {type(augment).__name__}"
            )
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"Loader: shuffle must be a bool, got {shuffle!r:.40}")
        self.shuffle = bool(shuffle)
        self.augment = augment
        self.position = 0
        self._perm_cache: dict[int, np.ndarray] = {}

    # -- state ---------------------------------------------------------------------------------
    @property
    def local_batch_size(self) -> int:
        """Examples per batch on this process, ``B / P``."""
        return self.batch_size // self.process_count

    def state(self) -> dict[str, int]:
        """The resumable state: global position of the next batch and the seed (JSON-able)."""
        return {"position": int(self.position), "seed": int(self.seed)}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state` dict; the seed must match this loader's."""
        if not isinstance(state, Mapping) or "position" not in state:
            raise ValueError(f"Loader.restore: state must be a dict with 'position', got {state!r}")
        seed = state.get("seed", self.seed)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed != self.seed:
            raise ValueError(
                f"Loader.restore: state['seed'] must equal the loader's seed {self.seed}, "
                f"got {state['seed']}"
            )
        position = _check_int("Loader.restore", "state['position']", state["position"], 0)
        self.position = position

    def seek(self, step: int) -> None:
        """Set the position to the start of global batch ``step`` (``n = step·B``)."""
        self.position = _check_int("Loader.seek", "step", step, 0) * self.batch_size

    # -- batches -------------------------------------------------------------------------------
    def _perm(self, epoch: int) -> np.ndarray:
        perm = self._perm_cache.get(epoch)
        if perm is None:
            n = self.source.num_examples
            assert n is not None
            if self.shuffle:
                perm = np.random.default_rng([self.seed, epoch]).permutation(n)
            else:
                perm = np.arange(n)
            # a batch spans at most two epochs: keep the previous one, drop older ones
            self._perm_cache = {k: v for k, v in self._perm_cache.items() if k == epoch - 1}
            self._perm_cache[epoch] = perm
        return perm

    def records(self, positions: np.ndarray) -> np.ndarray:
        """The source record read at each global position ``n``."""
        n_records = self.source.num_examples
        if n_records is None:
            return positions.astype(np.int64)
        epochs = positions // n_records
        offsets = positions % n_records
        out = np.empty_like(positions)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self._perm(int(e))[offsets[sel]]
        return out

    def batch_at(self, position: int) -> dict[str, np.ndarray]:
        """This process's share of the global batch starting at global position ``position``."""
        position = _check_int("Loader.batch_at", "position", position, 0)
        b = self.local_batch_size
        slots = np.arange(self.process_index * b, (self.process_index + 1) * b, dtype=np.int64)
        positions = position + slots
        records = self.records(positions)
        rngs = None
        if self.source.needs_rng or self.augment is not None:
            rngs = [np.random.default_rng([self.seed, int(n)]) for n in positions]
        x, labels = self.source.take(records, rngs)
        if self.augment is not None:
            assert rngs is not None
            x = np.stack([self.augment(xi, r) for xi, r in zip(x, rngs, strict=True)])
        return {
            "x": np.ascontiguousarray(x, dtype=np.float32),
            "label": np.asarray(labels, dtype=np.int32),
            "index": positions.astype(np.int64),
            "slot": slots.astype(np.int32),
        }

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = self.batch_at(self.position)
        self.position += self.batch_size
        return batch

    def __repr__(self) -> str:
        return (
            f"Loader({self.source!r}, batch_size={self.batch_size}, seed={self.seed}, "
            f"position={self.position}, process={self.process_index}/{self.process_count})"
        )
