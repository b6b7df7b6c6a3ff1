"""A resumable stream of batches drawn by a sampling function (toy data, exact distributions)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["SampledData"]


class SampledData:
    """A resumable stream of batches drawn by ``sample_x(n, rng)`` (rng a numpy ``Generator``).

    Batch s uses ``np.random.default_rng([seed, s])``, so the stream is a pure function of
    (seed, s) and ``state()``/``restore()`` resume it exactly. Yields ``{"x", "index", "slot"}``.
    """

    def __init__(
        self, sample_x: Callable[[int, np.random.Generator], Any], batch_size: int, *, seed: int = 0
    ) -> None:
        if not callable(sample_x):
            raise TypeError(
                f"SampledData: sample_x must be callable, got {type(sample_x).__name__}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"SampledData: batch_size must be a positive int, got {batch_size!r}")
        self.sample_x, self.batch_size, self.seed = sample_x, batch_size, int(seed)
        self.position = 0

    def __iter__(self) -> SampledData:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        s = self.position // self.batch_size
        out = self.sample_x(self.batch_size, np.random.default_rng([self.seed, s]))
        x = np.asarray(out[0] if isinstance(out, tuple) else out, np.float32)
        if x.shape[0] != self.batch_size:
            raise ValueError(
                f"SampledData: sample_x must return {self.batch_size} rows, got shape {x.shape}"
            )
        index = np.arange(self.position, self.position + self.batch_size, dtype=np.int64)
        self.position += self.batch_size
        return {"x": x, "index": index, "slot": np.arange(self.batch_size, dtype=np.int32)}

    def state(self) -> dict[str, int]:
        return {"position": self.position, "seed": self.seed}

    def restore(self, state: Mapping[str, int]) -> None:
        if int(state["seed"]) != self.seed:
            raise ValueError(f"SampledData.restore: seed must be {self.seed}, got {state['seed']}")
        self.position = int(state["position"])

    def __repr__(self) -> str:
        name = getattr(self.sample_x, "__qualname__", "sample_x")
        return f"SampledData({name}, batch_size={self.batch_size}, seed={self.seed})"
