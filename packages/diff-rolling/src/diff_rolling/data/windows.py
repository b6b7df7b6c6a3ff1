"""Clips of K + W consecutive frames drawn from stored trajectories, resumably.

Batch c of a :class:`ClipSampler` is a pure function of ``(seed, c)``: its (trajectory, offset)
pairs come from ``numpy.random.Generator(PCG64(derive_seed(seed, c)))``, so the sampler's state is
the count alone and a resumed run reads exactly the batches an uninterrupted one would. The global
clip numbers ``index = c·B + arange(B)`` drive the per-example randomness of the loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from diff_protocol import derive_seed

__all__ = ["ClipSampler", "load_sequences"]


def load_sequences(
    path: str | Path, key: str = "frames", func: str = "load_sequences"
) -> np.ndarray:
    """The ``frames (N, T, h, w, C)`` array of a user's ``.npz`` (float32).

    A missing key or another rank is a ``ValueError`` naming the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{func}: path must be an existing .npz file, got {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = sorted(f.files)
            if key not in f.files:
                raise ValueError(
                    f"{func}: path must hold an array {key!r}, got keys {keys} in {path.name}"
                )
            frames = np.asarray(f[key])
    except (OSError, ValueError) as err:
        if str(err).startswith(func):
            raise
        raise ValueError(f"{func}: {path} is not a readable .npz file ({err})") from None
    if frames.ndim != 5:
        raise ValueError(
            f"{func}: {key!r} in {path.name} must have shape (N, T, h, w, C), got {frames.shape}"
        )
    if not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"{func}: {key!r} in {path.name} must be floating, got {frames.dtype}")
    return frames.astype(np.float32, copy=False)


class ClipSampler:
    """Uniform (trajectory, offset) clips of ``context + window`` frames: ``{"x", "index"}``.

    Args:
      frames: ``(N, T, h, w, C)`` trajectories (already normalised).
      context, window: K and W; clips have ``K + W <= T`` frames.
      batch: clips per batch. seed: the data seed.
    """

    def __init__(self, frames: Any, context: int, window: int, batch: int, seed: int = 0) -> None:
        frames = np.asarray(frames, np.float32)
        if frames.ndim != 5:
            raise ValueError(
                f"ClipSampler: frames must have shape (N, T, h, w, C), got {frames.shape}"
            )
        length = int(context) + int(window)
        if length > frames.shape[1]:
            raise ValueError(
                f"ClipSampler: context + window must be <= the trajectory length "
                f"{frames.shape[1]}, "
                f"got {length}"
            )
        if batch < 1:
            raise ValueError(f"ClipSampler: batch must be >= 1, got {batch}")
        self.frames = frames
        self.length = length
        self.batch_size = int(batch)
        self.seed = int(seed)
        self.count = 0

    def __iter__(self) -> ClipSampler:
        return self

    def batch_at(self, count: int) -> dict[str, np.ndarray]:
        n, t = self.frames.shape[:2]
        rng = np.random.Generator(np.random.PCG64(derive_seed(self.seed, int(count))))
        traj = rng.integers(0, n, self.batch_size)
        off = rng.integers(0, t - self.length + 1, self.batch_size)
        idx = off[:, None] + np.arange(self.length)[None]
        x = self.frames[traj[:, None], idx]
        index = (count * self.batch_size + np.arange(self.batch_size)).astype(np.int32)
        return {"x": x, "index": index}

    def __next__(self) -> dict[str, np.ndarray]:
        out = self.batch_at(self.count)
        self.count += 1
        return out

    def state(self) -> dict[str, int]:
        return {"count": self.count, "seed": self.seed}

    def restore(self, state: Mapping[str, Any]) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(
                f"ClipSampler.restore: state seed {state.get('seed')} differs from the "
                f"sampler's {self.seed}"
            )
        self.count = int(state["count"])

    def __repr__(self) -> str:
        return (
            f"ClipSampler(trajectories={self.frames.shape[0]}, length={self.frames.shape[1]}, "
            f"clip={self.length}, batch={self.batch_size}, seed={self.seed})"
        )
