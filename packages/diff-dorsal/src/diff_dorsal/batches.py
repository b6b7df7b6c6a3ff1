"""A resumable stream of batches that are a pure function of (seed, step): both stages' loaders."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["SeededBatches", "pad_rows"]


class SeededBatches:
    """Batch ``s`` is ``batch_at(s)`` (a subclass draws it from ``derive_seed(seed, s)``), so
    ``state()`` / ``restore()`` (the trainer's data-stream hooks) resume the stream exactly.

    Subclasses set ``seed``, ``n`` (scenes) and ``position = 0`` and define ``batch_at``.
    """

    seed: int
    n: int
    position: int

    def batch_at(self, s: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def __iter__(self) -> SeededBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        out = self.batch_at(self.position)
        self.position += 1
        return out

    def state(self) -> dict[str, int]:
        return {"position": self.position, "seed": self.seed, "n_scenes": self.n}

    def restore(self, state: Mapping[str, Any]) -> None:
        if int(state["seed"]) != self.seed or int(state.get("n_scenes", self.n)) != self.n:
            raise ValueError(
                f"{type(self).__name__}.restore: the checkpoint's data stream (seed "
                f"{state['seed']}, {state.get('n_scenes')} scenes) differs from this one (seed "
                f"{self.seed}, {self.n} scenes)"
            )
        self.position = int(state["position"])


def pad_rows(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` padded to ``n`` rows by repeating its last row (fixed batch shapes: one compile)."""
    if x.shape[0] == n:
        return x
    return np.concatenate([x, np.repeat(x[-1:], n - x.shape[0], axis=0)])
