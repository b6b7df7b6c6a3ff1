"""Plausibility: is a sample one connected molecule with a physical geometry?

RDKit validity (:mod:`.chem`, the official definition) sanitises the bond graph and then keeps
the *largest fragment*; an atom without bonds gets implicit hydrogens. So a sample of 19 nitrogen
atoms scattered over ±2000 Å is "valid" (19 ammonia fragments), although nothing about it is a
molecule. This module reports, under its own name, the share of samples that are

1. **one fragment**: the bond graph (bonds from the EDM lookup, order > 0) is connected;
2. **fully bonded**: every atom has at least one bonded neighbour (a lone atom is not a molecule);
3. **not too close**: every pair of atoms is at least ``min_distance`` (0.7 Å, below the
   shortest covalent bond, H-H 0.74 Å) apart;
4. **not exploded**: no atom lies farther than ``explode_radius`` (30 Å) from the molecule's
   centroid; exploded coordinates are also counted on their own, since they signal a diverged
   sampler or network.

The limits are our defaults (neither the paper nor the official code defines this metric). On the
first 1,000 QM9 molecules 999 are plausible (closest pair 0.96 Å, largest radius 5.0 Å); Index 271
has a bond longer than the lookup's single-bond limit and splits into two fragments (it is not
stable either). Every stable molecule there is plausible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from diff_edm3d.data.molecules import MoleculeSet, as_molecule_set
from diff_edm3d.elements import ElementSet
from diff_edm3d.metrics.bonds import DEFAULT_MARGINS, BondMargins, Precision, bond_orders
from diff_edm3d.metrics.stability import wilson_interval

__all__ = ["MIN_DISTANCE", "EXPLODE_RADIUS", "PlausibilityResult", "plausibility"]

#: Closest allowed approach of two atoms in Å (our default; below H-H, 0.74 Å).
MIN_DISTANCE = 0.7
#: Distance from the centroid in Å beyond which a sample counts as exploded (our default).
EXPLODE_RADIUS = 30.0
_CHUNK_PAIRS = 2_000_000


@dataclass(frozen=True)
class PlausibilityResult:
    """Per-molecule geometry checks and their aggregates.

    Attributes:
        n_fragments: int [S], connected components of the bond graph.
        all_bonded: bool [S], every atom has a bonded neighbour.
        min_distance: float [S], the closest pair in Å (inf for a single atom).
        radius: float [S], the largest distance of an atom from the centroid in Å.
        limits: the ``min_distance`` and ``explode_radius`` used.
    """

    n_fragments: np.ndarray
    all_bonded: np.ndarray
    min_distance: np.ndarray
    radius: np.ndarray
    limits: dict[str, float]

    @property
    def single_fragment(self) -> np.ndarray:
        return self.n_fragments == 1

    @property
    def too_close(self) -> np.ndarray:
        return self.min_distance < self.limits["min_distance"]

    @property
    def exploded(self) -> np.ndarray:
        """bool [S]: an atom lies beyond ``explode_radius`` from the centroid (or is not finite)."""
        return ~(self.radius <= self.limits["explode_radius"])

    @property
    def plausible(self) -> np.ndarray:
        """bool [S]: one fragment, every atom bonded, no pair too close, not exploded."""
        return self.single_fragment & self.all_bonded & ~self.too_close & ~self.exploded

    @property
    def n_molecules(self) -> int:
        return len(self.n_fragments)

    @property
    def n_plausible(self) -> int:
        return int(self.plausible.sum())

    @property
    def plausible_fraction(self) -> float:
        """Plausible molecules / molecules."""
        return self.n_plausible / max(self.n_molecules, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able aggregates (no per-molecule arrays)."""
        finite = self.radius[np.isfinite(self.radius)]
        return {
            "n_molecules": self.n_molecules,
            "n_plausible": self.n_plausible,
            "plausible": self.plausible_fraction,
            "plausible_wilson95": list(wilson_interval(self.n_plausible, self.n_molecules)),
            "n_single_fragment": int(self.single_fragment.sum()),
            "n_all_atoms_bonded": int(self.all_bonded.sum()),
            "n_too_close": int(self.too_close.sum()),
            "n_exploded": int(self.exploded.sum()),
            "max_radius_angstrom": float(finite.max()) if finite.size else None,
            "min_distance_angstrom": self.limits["min_distance"],
            "explode_radius_angstrom": self.limits["explode_radius"],
        }


def _components(bonded: np.ndarray) -> np.ndarray:
    """Connected components of boolean adjacency matrices [B, M, M] -> int [B]."""
    m = bonded.shape[-1]
    reach = (bonded | np.eye(m, dtype=bool)).astype(np.float32)
    for _ in range(max(1, math.ceil(math.log2(max(m, 2))))):
        reach = (np.matmul(reach, reach) > 0).astype(np.float32)
    # an atom starts a component when no lower-indexed atom reaches it
    first = (reach > 0).argmax(axis=-1)
    return (first == np.arange(m)).sum(axis=-1)


def plausibility(
    molecules: Any,
    elements: ElementSet | None = None,
    min_distance: float = MIN_DISTANCE,
    explode_radius: float = EXPLODE_RADIUS,
    precision: Precision = "float64",
    margins: BondMargins = DEFAULT_MARGINS,
) -> PlausibilityResult:
    """The share of molecules that are one connected, fully bonded molecule with sane distances.

    Args:
        molecules: a :class:`MoleculeSet`, a packed or padded batch, or ``(positions, types)``
            pairs (positions in Å).
        elements: the element set (taken from a ``MoleculeSet``; default QM9 with H otherwise).
        min_distance: the closest two atoms may be, in Å.
        explode_radius: the farthest an atom may be from the centroid, in Å.
        precision, margins: as for :func:`~diff_edm3d.metrics.stability` (bonds from the lookup).

    Returns:
        A :class:`PlausibilityResult`; ``.plausible_fraction`` is the headline number.

    Example:
        >>> far = [(np.array([[2000.0 * (-1) ** i, 0, 0] for i in range(19)]), np.full(19, 2))]
        >>> plausibility(far).n_plausible  # RDKit validity calls these 19 N atoms valid
        0
    """
    func = "plausibility"
    for name, v in (("min_distance", min_distance), ("explode_radius", explode_radius)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < math.inf):
            raise ValueError(f"{func}: {name} must be a positive finite number (Å), got {v!r}")
    ms: MoleculeSet = as_molecule_set(molecules, elements, func=func)
    s = len(ms)
    n_fragments = np.zeros(s, dtype=np.int64)
    all_bonded = np.zeros(s, dtype=bool)
    closest = np.full(s, np.inf)
    radius = np.zeros(s)
    types = ms.types.astype(np.intp)
    for m in np.unique(ms.n_atoms):
        mols = np.flatnonzero(ms.n_atoms == m)
        step = max(1, _CHUNK_PAIRS // int(m * m))
        for lo in range(0, len(mols), step):
            chunk = mols[lo : lo + step]
            rows = ms.offsets[chunk][:, None] + np.arange(m)[None, :]
            pos = ms.positions[rows].astype(np.float64)
            centred = pos - pos.mean(axis=1, keepdims=True)
            radius[chunk] = np.sqrt((centred**2).sum(-1)).max(-1)
            bonded = bond_orders(pos, types[rows], ms.elements, precision, margins) > 0
            all_bonded[chunk] = bonded.any(-1).all(-1)
            n_fragments[chunk] = _components(bonded)
            if m > 1:
                diff = pos[:, :, None, :] - pos[:, None, :, :]
                d = np.sqrt((diff**2).sum(-1))
                d[:, np.arange(m), np.arange(m)] = np.inf
                closest[chunk] = d.min(axis=(-1, -2))
    radius[~np.isfinite(radius)] = np.inf
    return PlausibilityResult(
        n_fragments=n_fragments,
        all_bonded=all_bonded,
        min_distance=closest,
        radius=radius,
        limits={"min_distance": float(min_distance), "explode_radius": float(explode_radius)},
    )
