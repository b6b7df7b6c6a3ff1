"""`MoleculeLoader`: deterministic, resumable, rank-sharded mini-batches of a `MoleculeSet`.

Epoch e visits the molecules in the order ``Generator(PCG64([seed, e])).permutation(S)``. Global
batch k is the slice ``[k·B, (k+1)·B)`` of that order; it is cut into W contiguous pieces
(``np.array_split``) and rank r takes piece r, so the global batch does not depend on W. The state
is just ``(epoch, position)``: no RNG state needs saving, and a restored loader continues with
exactly the batch an uninterrupted one would have produced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from diff_edm3d.data.molecules import MoleculeSet

__all__ = ["MoleculeLoader"]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"MoleculeLoader: {name} must be a positive integer, got {value!r}")
    return int(value)


class MoleculeLoader:
    """Mini-batches of molecules for one rank.

    Args:
        molecules: the data set.
        batch_size: the global batch size B (all ranks together); must be divisible by
            ``world_size``.
        shuffle: permute each epoch (``False``: file order every epoch).
        seed: the data-order seed.
        drop_last: drop the final partial batch. With W > 1 a final batch smaller than W is always
            dropped (a rank would otherwise get no molecules).
        rank: this process's rank r.
        world_size: the number of ranks W.
        collate_fn: applied to each rank-local :class:`MoleculeSet` (e.g. ``diff_edm3d.collate``);
            the set itself is yielded when ``None``.

    Example:
        >>> loader = MoleculeLoader(train, batch_size=64, seed=0)  # doctest: +SKIP
        >>> len(loader)  # doctest: +SKIP
        1563
    """

    def __init__(
        self,
        molecules: MoleculeSet,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        collate_fn: Callable[[MoleculeSet], Any] | None = None,
    ) -> None:
        if not isinstance(molecules, MoleculeSet):
            raise TypeError(
                f"MoleculeLoader: molecules must be a MoleculeSet, got {type(molecules).__name__}"
            )
        if len(molecules) == 0:
            raise ValueError("MoleculeLoader: molecules must be non-empty, got 0 molecules")
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.world_size = _positive_int(world_size, "world_size")
        if (
            isinstance(rank, bool)
            or not isinstance(rank, (int, np.integer))
            or not (0 <= rank < self.world_size)
        ):
            raise ValueError(
                f"MoleculeLoader: rank must lie in [0, {self.world_size}), got {rank!r}"
            )
        if self.batch_size % self.world_size:
            raise ValueError(
                f"MoleculeLoader: batch_size must be divisible by world_size={self.world_size}, "
                f"got {self.batch_size}"
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"MoleculeLoader: seed must be a non-negative integer, got {seed!r}")
        self.molecules = molecules
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.rank = int(rank)
        self.collate_fn = collate_fn
        self.epoch = 0
        self.position = 0
        self._perm_epoch = -1
        self._perm = np.zeros(0, dtype=np.int64)

    # ----------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Global steps per epoch (1,563 for 100,000 molecules at batch 64)."""
        full, rest = divmod(len(self.molecules), self.batch_size)
        keep_rest = rest > 0 and not self.drop_last and rest >= self.world_size
        return full + int(keep_rest)

    def permutation(self, epoch: int) -> np.ndarray:
        """The visiting order of epoch ``epoch``."""
        if not self.shuffle:
            return np.arange(len(self.molecules), dtype=np.int64)
        if epoch != self._perm_epoch:
            rng = np.random.Generator(np.random.PCG64([self.seed, int(epoch)]))
            self._perm = rng.permutation(len(self.molecules)).astype(np.int64)
            self._perm_epoch = int(epoch)
        return self._perm

    def global_indices(self, epoch: int, step: int) -> np.ndarray:
        """Molecule indices of global batch ``step`` of ``epoch`` (all ranks)."""
        if not 0 <= step < len(self):
            raise IndexError(
                f"MoleculeLoader.global_indices: step must lie in [0, {len(self)}), got {step}"
            )
        perm = self.permutation(epoch)
        return perm[step * self.batch_size : (step + 1) * self.batch_size]

    def local_indices(self, epoch: int, step: int) -> np.ndarray:
        """This rank's contiguous piece of global batch ``step``."""
        return np.array_split(self.global_indices(epoch, step), self.world_size)[self.rank]

    def next_batch(self) -> Any:
        """The next rank-local batch; rolls over to the next epoch at the end of one."""
        batch = self.molecules.subset(self.local_indices(self.epoch, self.position))
        self.position += 1
        if self.position >= len(self):
            self.epoch += 1
            self.position = 0
        return batch if self.collate_fn is None else self.collate_fn(batch)

    def __iter__(self) -> Iterator[Any]:
        """The remaining batches of the current epoch (all of them for a fresh epoch)."""
        for _ in range(len(self) - self.position):
            yield self.next_batch()

    # ----------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, int | bool]:
        """JSON-able position: epoch and step within it, plus the settings that define the order."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "n_molecules": len(self.molecules),
            "shuffle": self.shuffle,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a saved position; the order-defining settings must match."""
        for key in ("seed", "batch_size", "n_molecules", "shuffle"):
            if key in state and state[key] != self.state_dict()[key]:
                raise ValueError(
                    f"MoleculeLoader.load_state_dict: state[{key!r}] must equal this loader's "
                    f"{self.state_dict()[key]!r}, got {state[key]!r}"
                )
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position < len(self):
            raise ValueError(
                f"MoleculeLoader.load_state_dict: epoch must be >= 0 and position in "
                f"[0, {len(self)}), got epoch={epoch}, position={position}"
            )
        self.epoch, self.position = epoch, position
