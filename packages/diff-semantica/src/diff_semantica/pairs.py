r"""Training pairs: a conditioning image ``a`` and a target ``b`` from the same group ("page").

Semantica (arXiv 2405.14857) trains on pairs of images from the same web page: the condition is
a random image of a page and the target another random image of that page. Web pages also hold
unrelated images (logos, ads): :attr:`PairConfig.corrupt_fraction` replaces ``b`` by a uniformly
random image of the whole dataset; :attr:`PairConfig.duplicate_fraction` makes ``b`` a
near-duplicate ``clip(a · U(0.9, 1.1) + N(0, 0.05²), −1, 1)`` (which teaches copying);
:attr:`PairConfig.self_pairs` gives ``b = a``, the reconstruction baseline of the paper's v3.

:func:`sample_pairs` picks ``a`` uniformly over the images, then ``b ≠ a`` uniformly within
``a``'s group, so each group is drawn in proportion to its size and every ordered pair of a group
is equally likely. It is a pure function of ``(config.seed, step)``: the generator is
``PCG64(derive_seed(seed, step))``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diff_protocol import derive_seed
from diff_protocol.io import atomic_write
from diff_semantica.data import GroupedImages

__all__ = [
    "KINDS",
    "PairConfig",
    "Pairs",
    "load_pairs",
    "pair_images",
    "sample_pairs",
    "save_pairs",
]

#: pair kinds, for diagnostics only (never seen by training)
KINDS: tuple[str, ...] = ("clean", "corrupt", "duplicate", "self")


@dataclass(frozen=True)
class PairConfig:
    """How candidate pairs are drawn (our defaults; the paper's values are not confirmed).

    Attributes:
      pairs_per_epoch: candidates per call of :func:`sample_pairs`.
      corrupt_fraction: share of pairs whose ``b`` is a uniformly random image of the dataset.
      duplicate_fraction: share of pairs whose ``b`` is a near-duplicate of ``a``.
      self_pairs: every pair is ``(a, a)`` (the self-reconstruction baseline).
      seed: the stream's seed.
    """

    pairs_per_epoch: int = 20_000
    corrupt_fraction: float = 0.0
    duplicate_fraction: float = 0.0
    self_pairs: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        n = self.pairs_per_epoch
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"PairConfig: pairs_per_epoch must be a positive int, got {n!r}")
        for name in ("corrupt_fraction", "duplicate_fraction"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"PairConfig: {name} must be in [0, 1], got {v!r}")
        if self.corrupt_fraction + self.duplicate_fraction > 1.0:
            raise ValueError(
                "PairConfig: corrupt_fraction + duplicate_fraction must be <= 1, got "
                f"{self.corrupt_fraction} + {self.duplicate_fraction}"
            )
        if not isinstance(self.self_pairs, bool):
            raise TypeError(f"PairConfig: self_pairs must be a bool, got {self.self_pairs!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise TypeError(f"PairConfig: seed must be an int, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Pairs:
    """Pairs as indices into a :class:`~diff_semantica.data.GroupedImages`.

    Attributes:
      a_idx: (n,) conditioning image indices.
      b_idx: (n,) target indices: into the dataset, or for ``kind == duplicate`` into ``b_extra``.
      kind: (n,) int8 index into :data:`KINDS`.
      b_extra: (m, H, W, C) near-duplicate targets (None when there are none).
    """

    a_idx: np.ndarray
    b_idx: np.ndarray
    kind: np.ndarray
    b_extra: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.a_idx.shape[0])

    def select(self, mask: np.ndarray) -> Pairs:
        """The pairs where ``mask`` is True (near-duplicate images re-indexed)."""
        mask = np.asarray(mask, bool)
        kind, b = self.kind[mask], self.b_idx[mask].copy()
        extra = None
        dup = kind == KINDS.index("duplicate")
        if self.b_extra is not None and dup.any():
            extra = self.b_extra[b[dup]]
            b[dup] = np.arange(int(dup.sum()))
        return Pairs(self.a_idx[mask], b, kind, extra)

    def counts(self) -> dict[str, int]:
        return {k: int(np.sum(self.kind == i)) for i, k in enumerate(KINDS)}


def _check_groups(data: GroupedImages) -> list[np.ndarray]:
    members = [np.flatnonzero(data.groups == g) for g in range(len(data.names))]
    small = [g for g, m in enumerate(members) if 0 < len(m) < 2]
    if small:
        desc = ", ".join(f"group {g} has {len(members[g])} image" for g in small)
        raise ValueError(f"sample_pairs: {desc}; every group needs >= 2")
    return members


def sample_pairs(data: GroupedImages, config: PairConfig, step: int = 0) -> Pairs:
    """``config.pairs_per_epoch`` candidate pairs for epoch ``step`` (a pure function of
    ``(config, step)`` and the data)."""
    if not isinstance(data, GroupedImages):
        raise TypeError(f"sample_pairs: data must be GroupedImages, got {type(data).__name__}")
    if not isinstance(config, PairConfig):
        raise TypeError(f"sample_pairs: config must be a PairConfig, got {type(config).__name__}")
    members = _check_groups(data)
    n, size = len(data), int(config.pairs_per_epoch)
    rng = np.random.Generator(np.random.PCG64(derive_seed(int(config.seed), int(step))))
    a = rng.integers(0, n, size)
    kind = np.zeros(size, np.int8)
    if config.self_pairs:
        return Pairs(a, a.copy(), np.full(size, KINDS.index("self"), np.int8))
    # b ≠ a uniformly within a's group: position of a in its group + 1 + U{0..m−2}, mod m
    sizes = np.array([len(m) for m in members])
    pos = np.empty(n, np.int64)
    for m in members:
        pos[m] = np.arange(len(m))
    g = data.groups[a]
    offs = rng.integers(0, np.maximum(sizes[g] - 1, 1))
    j = (pos[a] + 1 + offs) % sizes[g]
    starts = np.zeros(len(members), np.int64)
    order = np.concatenate(members) if members else np.zeros(0, np.int64)
    starts[1:] = np.cumsum(sizes)[:-1]
    b = order[starts[g] + j]
    u = rng.random(size)
    corrupt = u < config.corrupt_fraction
    dup = (u >= config.corrupt_fraction) & (u < config.corrupt_fraction + config.duplicate_fraction)
    b = np.where(corrupt, rng.integers(0, n, size), b)
    kind[corrupt] = KINDS.index("corrupt")
    extra = None
    if dup.any():
        k = int(dup.sum())
        scale = rng.uniform(0.9, 1.1, (k, 1, 1, 1))
        noise = rng.normal(0.0, 0.05, (k, *data.image_shape))
        extra = np.clip(data.images[a[dup]] * scale + noise, -1.0, 1.0).astype(np.float32)
        b[dup] = np.arange(k)
        kind[dup] = KINDS.index("duplicate")
    return Pairs(a.astype(np.int64), b.astype(np.int64), kind, extra)


def pair_images(pairs: Pairs, data: GroupedImages) -> tuple[np.ndarray, np.ndarray]:
    """``(x_a, x_b)`` images of ``pairs``."""
    x_a = data.images[pairs.a_idx]
    dup = pairs.kind == KINDS.index("duplicate")
    x_b = data.images[np.where(dup, 0, pairs.b_idx)]
    if dup.any():
        x_b = x_b.copy()
        x_b[dup] = pairs.b_extra[pairs.b_idx[dup]]
    return x_a, x_b


def save_pairs(pairs: Pairs, path: str | Path) -> Path:
    """Write ``pairs.npz`` atomically."""
    import io

    buf = io.BytesIO()
    arrays = {"a_idx": pairs.a_idx, "b_idx": pairs.b_idx, "kind": pairs.kind}
    if pairs.b_extra is not None:
        arrays["b_extra"] = pairs.b_extra
    np.savez(buf, **arrays)
    return atomic_write(Path(path), buf.getvalue())


def load_pairs(path: str | Path) -> Pairs:
    """Read a ``pairs.npz`` written by :func:`save_pairs` (no pickles)."""
    try:
        with np.load(Path(path), allow_pickle=False) as f:
            return Pairs(
                f["a_idx"], f["b_idx"], f["kind"], f["b_extra"] if "b_extra" in f else None
            )
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(
            f"load_pairs: {path} is not a pairs.npz of diff-semantica ({err})"
        ) from None
