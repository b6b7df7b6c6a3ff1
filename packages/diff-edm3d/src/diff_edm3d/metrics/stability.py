"""Atom and molecule stability (EDM, arXiv:2203.17003, section 5.1; official ``check_stability``).

The valence of atom i is the sum of its bond orders (:mod:`diff_edm3d.metrics.bonds`) over all
other atoms of its molecule. An atom is stable iff its valence is one of its element's allowed
valences (H 1, C 4, N 3, O 2, F 1, ...); a molecule is stable iff all its atoms are. Atom stability
pools atoms over molecules: stable atoms / atoms. Both fractions come with Wilson score 95%
intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from diff_edm3d.data.molecules import MoleculeSet, as_molecule_set
from diff_edm3d.elements import ElementSet
from diff_edm3d.metrics.bonds import (
    DEFAULT_MARGINS,
    BondMargins,
    Precision,
    bond_orders,
    bond_table,
)

__all__ = ["StabilityResult", "atom_valences", "stability", "wilson_interval"]

_Z95 = 1.959963984540054  # Phi^{-1}(0.975)
_CHUNK_PAIRS = 2_000_000  # molecules x M^2 per vectorised block (bounds memory to ~100 MB)


def wilson_interval(k: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (default 95%).

    .. math:: \\frac{\\hat p + z^2/2n \\pm z\\sqrt{\\hat p(1-\\hat p)/n + z^2/4n^2}}{1 + z^2/n}
    """
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exact endpoints at k = 0 and k = n
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)


@dataclass(frozen=True)
class StabilityResult:
    """Per-molecule and per-atom stability plus pooled aggregates.

    Attributes:
        molecule_stable: bool [S].
        atom_stable: bool [A], in the set's atom order.
        valences: int [A], the sum of bond orders of each atom.
        n_atoms: int [S].
    """

    molecule_stable: np.ndarray
    atom_stable: np.ndarray
    valences: np.ndarray
    n_atoms: np.ndarray

    @property
    def n_molecules(self) -> int:
        return len(self.molecule_stable)

    @property
    def n_stable_molecules(self) -> int:
        return int(self.molecule_stable.sum())

    @property
    def n_total_atoms(self) -> int:
        return len(self.atom_stable)

    @property
    def n_stable_atoms(self) -> int:
        return int(self.atom_stable.sum())

    @property
    def molecule_stability(self) -> float:
        """Stable molecules / molecules."""
        return self.n_stable_molecules / max(self.n_molecules, 1)

    @property
    def atom_stability(self) -> float:
        """Stable atoms / atoms, pooled over molecules."""
        return self.n_stable_atoms / max(self.n_total_atoms, 1)

    @property
    def molecule_interval(self) -> tuple[float, float]:
        return wilson_interval(self.n_stable_molecules, self.n_molecules)

    @property
    def atom_interval(self) -> tuple[float, float]:
        return wilson_interval(self.n_stable_atoms, self.n_total_atoms)

    def stable_atoms_per_molecule(self) -> np.ndarray:
        """int [S]: the number of stable atoms in each molecule."""
        offsets = np.concatenate([[0], np.cumsum(self.n_atoms)])
        return (
            np.add.reduceat(self.atom_stable.astype(np.int64), offsets[:-1])
            if len(self.n_atoms)
            else np.zeros(0, np.int64)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able aggregates (no per-atom arrays)."""
        return {
            "n_molecules": self.n_molecules,
            "n_stable_molecules": self.n_stable_molecules,
            "molecule_stability": self.molecule_stability,
            "molecule_stability_wilson95": list(self.molecule_interval),
            "n_atoms": self.n_total_atoms,
            "n_stable_atoms": self.n_stable_atoms,
            "atom_stability": self.atom_stability,
            "atom_stability_wilson95": list(self.atom_interval),
        }


def atom_valences(
    positions: np.ndarray,
    types: np.ndarray,
    elements: ElementSet,
    precision: Precision = "float64",
    margins: BondMargins = DEFAULT_MARGINS,
) -> np.ndarray:
    """Valences [..., M] of same-size molecules [..., M, 3]: row sums of the bond-order matrix."""
    return bond_orders(positions, types, elements, precision, margins).sum(axis=-1, dtype=np.int64)


def stability(
    molecules: Any,
    elements: ElementSet | None = None,
    precision: Precision = "float64",
    margins: BondMargins = DEFAULT_MARGINS,
) -> StabilityResult:
    """Atom and molecule stability of a set of molecules, bit-compatible with the official code.

    Args:
        molecules: a :class:`MoleculeSet`, a packed or padded batch, or ``(positions, types)``
            pairs.
        elements: the element set (taken from a ``MoleculeSet``; default QM9 with H otherwise).
        precision: ``"float64"`` distances (default) or ``"float32"`` (the official pipeline). The
            QM9 golden numbers are identical in both.
        margins: bond-length margins in pm (official 10, 5, 3).

    Returns:
        A :class:`StabilityResult`. Work is vectorised per molecule size, in chunks.

    Example:
        >>> r = stability(load_qm9(split="test"))  # doctest: +SKIP
        >>> r.n_stable_molecules, r.n_stable_atoms  # doctest: +SKIP
        (12457, 234336)
    """
    ms: MoleculeSet = as_molecule_set(molecules, elements, func="stability")
    if precision not in ("float32", "float64"):
        raise ValueError(f"stability: precision must be 'float32' or 'float64', got {precision!r}")
    table = bond_table(ms.elements, margins)
    valences = np.zeros(ms.n_total_atoms, dtype=np.int64)
    types64 = ms.types.astype(np.intp)
    for m in np.unique(ms.n_atoms):
        mols = np.flatnonzero(ms.n_atoms == m)
        step = max(1, _CHUNK_PAIRS // int(m * m))
        for lo in range(0, len(mols), step):
            chunk = mols[lo : lo + step]
            rows = ms.offsets[chunk][:, None] + np.arange(m)[None, :]
            v = atom_valences(ms.positions[rows], types64[rows], ms.elements, precision, margins)
            valences[rows.reshape(-1)] = v.reshape(-1)
    capped = np.minimum(valences, table.allowed.shape[1] - 1)
    atom_stable = table.allowed[types64, capped] & (valences < table.allowed.shape[1])
    n_stable = (
        np.add.reduceat(atom_stable.astype(np.int64), ms.offsets[:-1])
        if len(ms)
        else np.zeros(0, np.int64)
    )
    return StabilityResult(
        molecule_stable=n_stable == ms.n_atoms,
        atom_stable=atom_stable,
        valences=valences,
        n_atoms=ms.n_atoms.copy(),
    )
